#!/usr/bin/env bash
# Runs N `python -m hypercut_jax.main` processes on this machine, joined by
# `jax.distributed.initialize()` over 127.0.0.1, each with K fake CPU devices.
#
# This is the multi-host code path of a TPU pod or a GPU cluster (one mesh
# over N*K devices, per-process data shards, process-0-only files, orbax
# checkpoints written by all processes) on one CPU machine, for tests and
# debugging. See launch/README.md.
#
#   launch/local_multiprocess.sh -n 2 -k 2 -- \
#       --config=configs/synthetic.py:smoke --workdir=/tmp/hc_2proc
#
# Ranks reach jax through the variables of its SLURM auto-detection
# (SLURM_NTASKS / SLURM_PROCID / SLURM_LOCALID, with SLURM_JOB_ID and
# SLURM_STEP_NODELIST set to mark the environment) plus
# JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>: `jax.distributed.initialize()`
# without arguments reads the process count and id from nowhere else.
# JAX_LOCAL_DEVICE_IDS lists all K devices so that no device is hidden.
#
# Each process logs to <log-dir>/process_<i>.log (appended); process 0's log
# is streamed to stdout. If one process fails or is killed, the others get
# SIGTERM, then SIGKILL after --grace seconds (a lone process would otherwise
# wait in a collective until the coordination heartbeat times out). Exit
# status: 0 when all processes succeed, else the first failure's status.
set -euo pipefail

PROG="launch/local_multiprocess.sh"
USAGE="usage: ${PROG} [-n N] [-k K] [--port PORT] [--log-dir DIR] [--timeout SEC] [--grace SEC] [--python PY] [--dry-run] -- --config=CFG --workdir=DIR [hypercut_jax.main flags]"

usage() {
  cat <<EOF
${USAGE}

  -n, --num-processes N   processes to start (default 2, >= 1)
  -k, --devices-per-process K
                          fake CPU devices per process (default 2, >= 1);
                          sets XLA_FLAGS=--xla_force_host_platform_device_count=K
  --port PORT             coordinator port on 127.0.0.1 (default: a free one)
  --log-dir DIR           per-process logs (default: <workdir>/launch_logs)
  --timeout SEC           stop all processes after SEC seconds (default 0: none)
  --grace SEC             seconds between SIGTERM and SIGKILL (default 10)
  --python PY             interpreter (default: \$PYTHON or python3)
  --dry-run               print the commands and exit
  -h, --help              this help

Everything after '--' goes to every 'python -m hypercut_jax.main';
--config and --workdir are required there.
EOF
}

# die, need_value, quote, quote_all and main_flags:
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

num_processes=2
devices_per_process=2
port=""
log_dir=""
timeout_s=0
grace_s=10
python_bin="${PYTHON:-python3}"
dry_run=0
main_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--num-processes) need_value "$1" $#; num_processes="$2"; shift 2 ;;
    --num-processes=*) num_processes="${1#*=}"; shift ;;
    -k|--devices-per-process) need_value "$1" $#; devices_per_process="$2"; shift 2 ;;
    --devices-per-process=*) devices_per_process="${1#*=}"; shift ;;
    --port) need_value "$1" $#; port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --log-dir) need_value "$1" $#; log_dir="$2"; shift 2 ;;
    --log-dir=*) log_dir="${1#*=}"; shift ;;
    --timeout) need_value "$1" $#; timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    --grace) need_value "$1" $#; grace_s="$2"; shift 2 ;;
    --grace=*) grace_s="${1#*=}"; shift ;;
    --python) need_value "$1" $#; python_bin="$2"; shift 2 ;;
    --python=*) python_bin="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; main_args=("$@"); break ;;
    *) die "unknown option '$1' (flags for hypercut_jax.main go after '--')" ;;
  esac
done

# ------------------------------------------------------------ validation ---
{ is_uint "${num_processes}" && ((num_processes >= 1)); } ||
  die "-n/--num-processes must be an integer >= 1, got '${num_processes}'"
{ is_uint "${devices_per_process}" && ((devices_per_process >= 1)); } ||
  die "-k/--devices-per-process must be an integer >= 1, got '${devices_per_process}'"
is_uint "${timeout_s}" || die "--timeout must be an integer >= 0, got '${timeout_s}'"
is_uint "${grace_s}" || die "--grace must be an integer >= 0, got '${grace_s}'"
if [[ -n "${port}" ]]; then
  { is_uint "${port}" && ((port >= 1024 && port <= 65535)); } ||
    die "--port must be an integer in [1024, 65535], got '${port}'"
fi

workdir=""  # set by main_flags
main_flags "${main_args[@]+"${main_args[@]}"}"
[[ "${workdir}" != *://* ]] ||
  die "--workdir=${workdir}: this launcher runs on one machine; use a local path"
log_dir="${log_dir:-${workdir}/launch_logs}"

if [[ -z "${port}" ]]; then
  if ((dry_run)); then
    port="<free-port>"
  else
    port="$("${python_bin}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')" || die "could not run '${python_bin}' to pick a free port"
  fi
fi

device_ids="$(seq -s, 0 $((devices_per_process - 1)))"
# A fixed fake job id: only marks the SLURM environment for jax's detection.
fake_job_id=4242

process_env() {  # process_env RANK -> one env assignment per line
  local rank="$1"
  printf '%s\n' \
    "JAX_PLATFORMS=cpu" \
    "XLA_FLAGS=--xla_force_host_platform_device_count=${devices_per_process}" \
    "HYPERCUT_DISTRIBUTED=1" \
    "JAX_COORDINATOR_ADDRESS=127.0.0.1:${port}" \
    "JAX_LOCAL_DEVICE_IDS=${device_ids}" \
    "SLURM_JOB_ID=${fake_job_id}" \
    "SLURM_STEP_NODELIST=localhost" \
    "SLURM_NTASKS=${num_processes}" \
    "SLURM_PROCID=${rank}" \
    "SLURM_LOCALID=${rank}"
}

command_line() {  # command_line RANK -> the shell-quoted command
  local rank="$1" envs=()
  mapfile -t envs < <(process_env "${rank}")
  local cmd=(env "${envs[@]}" "${python_bin}" -m hypercut_jax.main "${main_args[@]}")
  printf '%s >> %s 2>&1\n' "$(quote_all "${cmd[@]}")" "$(quote "${log_dir}/process_${rank}.log")"
}

echo "${PROG}: ${num_processes} processes x ${devices_per_process} CPU devices, coordinator 127.0.0.1:${port}"
for ((rank = 0; rank < num_processes; rank++)); do
  echo "+ $(command_line "${rank}")"
done
if ((dry_run)); then
  exit 0
fi

# ------------------------------------------------------------------ run ---
mkdir -p "${log_dir}"
pids=()
exited=()
stream_pid=""

alive() { kill -0 "$1" 2>/dev/null; }

stop_all() {  # SIGTERM every live process, SIGKILL what is left after grace.
  local pid waited=0
  for pid in "${pids[@]+"${pids[@]}"}"; do
    if alive "${pid}"; then kill -TERM "${pid}" 2>/dev/null || true; fi
  done
  while ((waited < grace_s * 10)); do
    local any=0
    for pid in "${pids[@]+"${pids[@]}"}"; do
      if alive "${pid}"; then any=1; fi
    done
    ((any)) || break
    sleep 0.1
    waited=$((waited + 1))
  done
  for pid in "${pids[@]+"${pids[@]}"}"; do
    if alive "${pid}"; then
      echo "${PROG}: process pid ${pid} ignored SIGTERM for ${grace_s}s; SIGKILL" >&2
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
}

finish() {
  local rc="$1" pid
  if [[ -n "${stream_pid}" ]]; then
    sleep 0.2
    kill "${stream_pid}" 2>/dev/null || true
    wait "${stream_pid}" 2>/dev/null || true
  fi
  for pid in "${pids[@]+"${pids[@]}"}"; do
    wait "${pid}" 2>/dev/null || true
  done
  exit "${rc}"
}

# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
  echo "${PROG}: got $1; stopping all processes" >&2
  stop_all
  finish 130
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

log0="${log_dir}/process_0.log"
offset=0
if [[ -f "${log0}" ]]; then offset="$(wc -c < "${log0}")"; fi

for ((rank = 0; rank < num_processes; rank++)); do
  log="${log_dir}/process_${rank}.log"
  echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) ${PROG} rank ${rank}/${num_processes} ===" >> "${log}"
  mapfile -t envs < <(process_env "${rank}")
  env "${envs[@]}" "${python_bin}" -m hypercut_jax.main "${main_args[@]}" >> "${log}" 2>&1 &
  pids+=("$!")
  exited+=(0)
  echo "${PROG}: rank ${rank} pid $! log ${log}"
  echo "$!" > "${log_dir}/process_${rank}.pid"
done
tail -c "+$((offset + 1))" -f "${log0}" &
stream_pid=$!

start_s=${SECONDS}
status=0
remaining=${num_processes}
while ((remaining > 0)); do
  for ((rank = 0; rank < num_processes; rank++)); do
    pid="${pids[rank]}"
    if ((exited[rank])) || alive "${pid}"; then continue; fi
    rc=0
    wait "${pid}" || rc=$?
    exited[rank]=1
    remaining=$((remaining - 1))
    echo "${PROG}: rank ${rank} (pid ${pid}) exited with status ${rc}"
    if ((rc != 0 && status == 0)); then
      status=${rc}
      if ((remaining > 0)); then
        echo "${PROG}: rank ${rank} failed; stopping the other processes" >&2
        stop_all
      fi
    fi
  done
  if ((timeout_s > 0 && SECONDS - start_s >= timeout_s && remaining > 0)); then
    echo "${PROG}: --timeout ${timeout_s}s reached; stopping all processes" >&2
    ((status != 0)) || status=124
    stop_all
  fi
  sleep 0.2
done
finish "${status}"

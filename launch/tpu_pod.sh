#!/usr/bin/env bash
# HyperCUT on a Cloud TPU VM slice (single host or pod): create the slice,
# copy and install this checkout on every worker, copy prepared data, run
# `python -m hypercut_jax.main` on all workers at once, follow the logs,
# stop, delete. See launch/README.md for the whole recipe.
#
#   launch/tpu_pod.sh all --tpu hc-v4-32 --zone us-central2-b \
#       --accelerator-type v4-32 -- \
#       --config=configs/synthetic.py --workdir=/mnt/shared/hc_synth
#   launch/tpu_pod.sh logs --tpu hc-v4-32 --zone us-central2-b
#   launch/tpu_pod.sh delete --tpu hc-v4-32 --zone us-central2-b
#
# Every worker runs the same command with HYPERCUT_DISTRIBUTED=1, so
# `jax.distributed.initialize()` finds the coordinator (worker 0), the
# process count and this worker's id from the TPU VM metadata. The workdir
# must be the same shared storage on every worker (orbax writes one
# checkpoint from all processes).
set -euo pipefail

PROG="launch/tpu_pod.sh"
COMMANDS="create|setup|data|train|logs|stop|delete|all"
USAGE="usage: ${PROG} {${COMMANDS}} --tpu NAME --zone ZONE [--project P] [options] [--dry-run] [-- --config=CFG --workdir=/shared/DIR [hypercut_jax.main flags]]"

usage() {
  cat <<EOF
${USAGE}

Commands:
  create   create the TPU VM slice (needs --accelerator-type)
  setup    copy this checkout to every worker and pip-install it with jax[tpu]
  data     copy a prepared TFDS data dir (--data-src gs://...) to --data-dir
           on every worker's local disk
  train    run 'python -m hypercut_jax.main' on all workers (flags after --);
           streams every worker's output, or with --detach runs in the
           background and logs to ~/hypercut_train.log on each worker
  logs     follow ~/hypercut_train.log on --worker (default 0)
  stop     SIGTERM the detached training on all workers (it saves a
           checkpoint at the next step boundary and exits)
  delete   delete the slice (teardown; the TPU is billed until then)
  all      create, setup, data (when --data-src is given), train

Options:
  --tpu NAME               TPU VM name (required)
  --zone ZONE              zone, e.g. us-central2-b (required)
  --project PROJECT        GCP project (default: gcloud's configured one)
  --accelerator-type TYPE  e.g. v4-8, v4-32, v5litepod-16 (create)
  --version VERSION        TPU software version (default tpu-ubuntu2204-base)
  --spot                   create a Spot (preemptible) slice
  --remote-dir DIR         checkout location on the workers, relative to
                           the home directory (default hypercut_jax)
  --jax-spec SPEC          pip spec of jax for TPU (default 'jax[tpu]==0.10.2')
  --data-src URL           prepared TFDS data_dir to copy (gs://...)
  --data-dir DIR           absolute destination on every worker
  --detach                 train in the background (nohup), see 'logs'/'stop'
  --worker N               worker for 'logs' (default 0)
  --dry-run                print the commands instead of running them
  -h, --help               this help
EOF
}

# die, need_value, quote, quote_all and main_flags:
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -gt 0 ]] || die "missing command"
case "$1" in
  -h|--help) usage; exit 0 ;;
  create|setup|data|train|logs|stop|delete|all) command="$1"; shift ;;
  *) die "unknown command '$1' (one of ${COMMANDS})" ;;
esac

tpu=""
zone=""
project=""
accelerator_type=""
version="tpu-ubuntu2204-base"
spot=0
remote_dir="hypercut_jax"
jax_spec="jax[tpu]==0.10.2"
data_src=""
data_dir=""
detach=0
worker=0
dry_run=0
main_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) need_value "$1" $#; tpu="$2"; shift 2 ;;
    --tpu=*) tpu="${1#*=}"; shift ;;
    --zone) need_value "$1" $#; zone="$2"; shift 2 ;;
    --zone=*) zone="${1#*=}"; shift ;;
    --project) need_value "$1" $#; project="$2"; shift 2 ;;
    --project=*) project="${1#*=}"; shift ;;
    --accelerator-type) need_value "$1" $#; accelerator_type="$2"; shift 2 ;;
    --accelerator-type=*) accelerator_type="${1#*=}"; shift ;;
    --version) need_value "$1" $#; version="$2"; shift 2 ;;
    --version=*) version="${1#*=}"; shift ;;
    --spot) spot=1; shift ;;
    --remote-dir) need_value "$1" $#; remote_dir="$2"; shift 2 ;;
    --remote-dir=*) remote_dir="${1#*=}"; shift ;;
    --jax-spec) need_value "$1" $#; jax_spec="$2"; shift 2 ;;
    --jax-spec=*) jax_spec="${1#*=}"; shift ;;
    --data-src) need_value "$1" $#; data_src="$2"; shift 2 ;;
    --data-src=*) data_src="${1#*=}"; shift ;;
    --data-dir) need_value "$1" $#; data_dir="$2"; shift 2 ;;
    --data-dir=*) data_dir="${1#*=}"; shift ;;
    --detach) detach=1; shift ;;
    --worker) need_value "$1" $#; worker="$2"; shift 2 ;;
    --worker=*) worker="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; main_args=("$@"); break ;;
    *) die "unknown option '$1' (flags for hypercut_jax.main go after '--')" ;;
  esac
done

# ------------------------------------------------------------ validation ---
name_re='^[a-z]([-a-z0-9]*[a-z0-9])?$'
[[ -n "${tpu}" ]] || die "missing --tpu NAME"
[[ "${tpu}" =~ ${name_re} ]] ||
  die "--tpu '${tpu}': lower-case letters, digits and '-', starting with a letter"
[[ -n "${zone}" ]] || die "missing --zone ZONE"
[[ "${zone}" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] ||
  die "--zone '${zone}' is not a zone name like us-central2-b"
[[ "${worker}" =~ ^[0-9]+$ ]] || die "--worker must be an integer >= 0, got '${worker}'"
[[ "${remote_dir}" =~ ^[A-Za-z0-9._][A-Za-z0-9._/-]*$ && "${remote_dir}" != *..* ]] ||
  die "--remote-dir '${remote_dir}': a plain path relative to the home directory"

wants() {  # wants STEP: does ${command} include STEP?
  [[ "${command}" == "$1" ]] || [[ "${command}" == all && "$1" != logs && "$1" != stop && "$1" != delete ]]
}

if wants create; then
  [[ -n "${accelerator_type}" ]] || die "'${command}' needs --accelerator-type (e.g. v4-32)"
  [[ "${accelerator_type}" =~ ^v[0-9][a-z0-9]*-[0-9]+$ ]] ||
    die "--accelerator-type '${accelerator_type}' is not like v4-32 or v5litepod-16"
fi
if [[ "${command}" == data ]] || { [[ "${command}" == all ]] && [[ -n "${data_src}" ]]; }; then
  [[ "${data_src}" == gs://?* ]] || die "--data-src must be a gs:// URL, got '${data_src}'"
  [[ "${data_dir}" == /?* ]] || die "--data-dir must be an absolute path on the workers, got '${data_dir}'"
fi

workdir=""  # set by main_flags
if wants train; then
  main_flags "${main_args[@]+"${main_args[@]}"}"
  # Every worker must see one workdir: a shared mount at the same absolute
  # path (Filestore NFS, gcsfuse). hypercut_jax.train.loop writes it with
  # os/open, so a gs:// URL is not accepted yet (see launch/README.md).
  [[ "${workdir}" == /?* ]] ||
    die "--workdir '${workdir}' must be an absolute path on storage shared by all workers"
elif ((${#main_args[@]})); then
  die "'${command}' takes no hypercut_jax.main flags"
fi

# ------------------------------------------------------------- commands ---
gcloud_tpu=(gcloud compute tpus tpu-vm)
location=("--zone=${zone}")
if [[ -n "${project}" ]]; then location+=("--project=${project}"); fi

run() {  # Prints the command, then runs it unless --dry-run.
  echo "+ $(quote_all "$@")"
  if ((dry_run)); then return 0; fi
  "$@"
}

on_workers() {  # on_workers WORKER REMOTE_COMMAND
  run "${gcloud_tpu[@]}" ssh "${tpu}" "${location[@]}" "--worker=$1" "--command=$2"
}

# Home-relative paths on the workers: the remote shell expands the '~'.
# shellcheck disable=SC2088
log_file='~/hypercut_train.log'
# shellcheck disable=SC2088
pid_file='~/hypercut_train.pid'

do_create() {
  local extra=()
  if ((spot)); then extra+=(--spot); fi
  run "${gcloud_tpu[@]}" create "${tpu}" "${location[@]}" \
    "--accelerator-type=${accelerator_type}" "--version=${version}" \
    "${extra[@]+"${extra[@]}"}"
}

do_setup() {
  local repo tarball
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  tarball="${TMPDIR:-/tmp}/hypercut_jax_${tpu}.tar.gz"
  if git -C "${repo}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # The tracked and untracked-but-not-ignored files of this checkout.
    echo "+ (cd $(quote "${repo}") && git ls-files -z --cached --others --exclude-standard | tar --null -T - -czf $(quote "${tarball}"))"
    if ! ((dry_run)); then
      (cd "${repo}" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -czf "${tarball}")
    fi
  else
    run tar -C "${repo}" --exclude=.git --exclude='*.egg-info' \
      --exclude=__pycache__ -czf "${tarball}" .
  fi
  run "${gcloud_tpu[@]}" scp "${tarball}" "${tpu}:hypercut_jax.tar.gz" \
    "${location[@]}" --worker=all
  local remote
  remote="set -euo pipefail; rm -rf $(quote "${remote_dir}"); mkdir -p $(quote "${remote_dir}")"
  remote+="; tar -xzf hypercut_jax.tar.gz -C $(quote "${remote_dir}")"
  remote+="; python3 -m pip install -q -U $(quote "${jax_spec}")"
  remote+="; python3 -m pip install -q -e $(quote "${remote_dir}")"
  remote+="; python3 -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
  on_workers all "${remote}"
}

do_data() {
  local remote
  remote="set -euo pipefail; mkdir -p $(quote "${data_dir}")"
  remote+="; gcloud storage rsync --recursive $(quote "${data_src}") $(quote "${data_dir}")"
  on_workers all "${remote}"
}

do_train() {
  local cmd remote
  cmd="HYPERCUT_DISTRIBUTED=1 python3 -m hypercut_jax.main $(quote_all "${main_args[@]}")"
  remote="cd $(quote "${remote_dir}")"
  if ((detach)); then
    remote+=" && nohup env ${cmd} >> ${log_file} 2>&1 < /dev/null & echo \$! > ${pid_file}"
    remote+="; echo \"worker \$(hostname): pid \$(cat ${pid_file}), log ${log_file}\""
  else
    remote="set -o pipefail; ${remote} && ${cmd} 2>&1 | tee -a ${log_file}"
  fi
  on_workers all "${remote}"
}

do_logs() {
  on_workers "${worker}" "tail -n 200 -F ${log_file}"
}

do_stop() {
  on_workers all "if [ -f ${pid_file} ]; then kill -TERM \"\$(cat ${pid_file})\" && echo \"\$(hostname): SIGTERM sent\"; else echo \"\$(hostname): no ${pid_file}\"; fi"
}

do_delete() {
  run "${gcloud_tpu[@]}" delete "${tpu}" "${location[@]}" --quiet
}

if ! ((dry_run)) && ! command -v gcloud >/dev/null 2>&1; then
  echo "${PROG}: error: gcloud not found (install the Google Cloud CLI, then 'gcloud auth login')" >&2
  exit 1
fi

case "${command}" in
  create) do_create ;;
  setup) do_setup ;;
  data) do_data ;;
  train) do_train ;;
  logs) do_logs ;;
  stop) do_stop ;;
  delete) do_delete ;;
  all)
    do_create
    do_setup
    if [[ -n "${data_src}" ]]; then do_data; fi
    do_train
    if ((detach)); then
      echo "${PROG}: training in the background; follow it with: ${PROG} logs --tpu ${tpu} --zone ${zone}"
    fi
    echo "${PROG}: when done, tear down with: ${PROG} delete --tpu ${tpu} --zone ${zone}"
    ;;
esac

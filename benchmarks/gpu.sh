#!/usr/bin/env bash
# The benchmarks.run table on an accelerator (GPU or TPU), float32 and
# bfloat16, in under 5 minutes.
#
#   bash benchmarks/gpu.sh                  # run; results in $OUT (see below)
#   bash benchmarks/gpu.sh --dry-run        # print the commands, run nothing
#   bash benchmarks/gpu.sh --no-generators  # H step only (about 2 minutes)
#
# Environment: PYTHON (default: python), OUT (default:
# benchmark_results/<kind>_<date>), H_TIMEOUT / GEN_TIMEOUT seconds (default
# 200 / 90: the budget stays under 5 minutes even when a step hangs).
# The H step runs for crops 128 and 256 at batch 8, both precisions
# interleaved in one process, with XLA's convolutions (conv_impl=xla, the fast
# path off the CPU); PyTorch runs on CUDA when this torch build has it (else
# the torch columns stay empty: a CPU torch is no comparison for a GPU).
# Host-memory children are skipped (--nomemory): on an accelerator the
# column that matters is XLA's buffer assignment ('XLA MiB'). MFU uses the
# chip's dense peak from benchmarks/run.py (H100/H200/A100) or
# PEAK_TFLOPS=<number> for another chip. Needs this repository installed on
# that machine with an accelerator build of jax (pip install -e . plus e.g.
# jax[cuda12]).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }

dry=0
gens=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --no-generators) gens=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python}
H_TIMEOUT=${H_TIMEOUT:-200}
GEN_TIMEOUT=${GEN_TIMEOUT:-90}
OUT=${OUT:-benchmark_results/accel_$(date +%Y%m%d_%H%M%S)}

torch_flag="--notorch"
if [ "$dry" -eq 0 ] && "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  torch_flag="--torch_device=cuda"
fi
peak_flag=""
if [ -n "${PEAK_TFLOPS:-}" ]; then
  peak_flag="--peak_tflops=${PEAK_TFLOPS}"
fi

cmds=(
  "$PY -c 'import jax; print(jax.__version__, jax.devices())'"
  "timeout $H_TIMEOUT $PY -m benchmarks.run --parts=h --sizes=128,256 --batch_size=8 --precisions=float32,bfloat16 --impls=xla --reps=20 --nomemory $torch_flag $peak_flag --json=$OUT/h.json"
)
if [ "$gens" -eq 1 ]; then
  cmds+=("timeout $GEN_TIMEOUT $PY -m benchmarks.run --parts=generators --batch_size=8 --generator_size=128 --precisions=float32 --reps=10 --json=$OUT/generators.json")
fi

if [ "$dry" -eq 1 ]; then
  echo "# gpu.sh --dry-run: would write to $OUT and run (the torch flag is"
  echo "# probed at run time: --torch_device=cuda if torch sees CUDA, else --notorch):"
  printf '%s\n' "${cmds[@]}"
  exit 0
fi

mkdir -p "$OUT"
start=$(date +%s)
for cmd in "${cmds[@]}"; do
  echo "+ $cmd"
  bash -c "$cmd" | tee -a "$OUT/table.md"
done
echo "# gpu.sh: done in $(( $(date +%s) - start )) s; tables in $OUT/table.md"

#!/usr/bin/env bash
# The benchmarks.run table on an accelerator (GPU or TPU), float32 and
# bfloat16, in under 5 minutes.
#
#   bash benchmarks/gpu.sh                  # run; results in $OUT (see below)
#   bash benchmarks/gpu.sh --dry-run        # print the commands, run nothing
#   bash benchmarks/gpu.sh --no-generators  # H step only (about 1.5 minutes)
#
# Environment: PYTHON (default: python), OUT (default:
# benchmark_results/<kind>_<date>), H_TIMEOUT / JIN_TIMEOUT / PUROHIT_TIMEOUT
# seconds (default 100 / 120 / 70: the whole script stays under 5 minutes
# even when a compile or a step hangs; each line prints its table rows as
# soon as its child finishes, so a timeout loses only that line).
# The H step runs for crops 128 and 256 at batch 8, both precisions
# interleaved in one process, with XLA's convolutions (conv_impl=xla, the fast
# path off the CPU); then each generator's step (+0.2 R_hyp through H) at
# batch 8, 120x120 (jin2018: the multiple of 20 nearest 128) and 128x128
# (purohit2019), float32 and bfloat16 interleaved in one process per
# generator. PyTorch (float32, eager) runs on CUDA when this torch build has
# it, interleaved with the JAX variants (else the torch columns stay empty:
# a CPU torch is no comparison for a GPU).
# Host-memory children are skipped (--nomemory): on an accelerator the
# column that matters is XLA's buffer assignment ('XLA MiB'). MFU uses the
# chip's dense peak from benchmarks/run.py (H100/H200/A100) or
# PEAK_TFLOPS=<number> for another chip. Needs this repository on that
# machine (installed, or run from its root) with an accelerator build of jax,
# flax, optax, orbax-checkpoint, chex, numpy, and three packages the
# trainer's modules import at top level: dm-pix (hypercut_jax.metrics, for
# the H step), ml-collections and grain (hypercut_jax.train.generator ->
# train.checkpoint, for the generator steps; grain has a compiled part: carry
# its cp3XX manylinux wheel). A preflight checks them first and names what
# is missing (exit 3) before any device time is spent.
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
H_TIMEOUT=${H_TIMEOUT:-100}
JIN_TIMEOUT=${JIN_TIMEOUT:-120}
PUROHIT_TIMEOUT=${PUROHIT_TIMEOUT:-70}
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
  for g in jin2018:$JIN_TIMEOUT purohit2019:$PUROHIT_TIMEOUT; do
    cmds+=("timeout ${g#*:} $PY -m benchmarks.run --parts=generators --generators=${g%%:*} --generator_size=128 --batch_size=8 --precisions=float32,bfloat16 --reps=10 --nomemory $torch_flag $peak_flag --json=$OUT/${g%%:*}.json")
  done
fi

if [ "$dry" -eq 1 ]; then
  echo "# gpu.sh --dry-run: would write to $OUT and run (the torch flag is"
  echo "# probed at run time: --torch_device=cuda if torch sees CUDA, else --notorch):"
  printf '%s\n' "${cmds[@]}"
  exit 0
fi

missing=$("$PY" - "$gens" <<'PYEOF'
import importlib.util
import sys
need = ['jax', 'flax', 'optax', 'orbax.checkpoint', 'chex', 'numpy', 'absl',
        'dm_pix']
if sys.argv[1] == '1':    # the generator lines
  need += ['ml_collections', 'grain']
def absent(name):
  try:
    return importlib.util.find_spec(name) is None
  except (ImportError, ValueError):
    return True
print(' '.join(m for m in need if absent(m)))
PYEOF
)
if [ -n "$missing" ]; then
  echo "gpu.sh: missing Python modules: $missing (pip install dm-pix" >&2
  echo "ml-collections grain: the first two are pure Python, grain has" >&2
  echo "manylinux wheels per Python version)" >&2
  exit 3
fi

mkdir -p "$OUT"
start=$(date +%s)
failed=0
for cmd in "${cmds[@]}"; do
  echo "+ $cmd"
  if ! bash -c "$cmd" | tee -a "$OUT/table.md"; then
    echo "# gpu.sh: failed or timed out (exit 124 = timeout): $cmd" | tee -a "$OUT/table.md"
    failed=1
  fi
done
echo "# gpu.sh: done in $(( $(date +%s) - start )) s; tables in $OUT/table.md"
exit "$failed"

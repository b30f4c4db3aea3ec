#!/usr/bin/env bash
# The benchmarks.run table on an accelerator (GPU or TPU), float32 and
# bfloat16, each invocation under 5 minutes.
#
#   bash benchmarks/gpu.sh                      # all lines (see the budget below)
#   bash benchmarks/gpu.sh --only=h             # H step only (about 1.5 minutes)
#   bash benchmarks/gpu.sh --only=jin2018       # one generator, its own 5 minutes
#   bash benchmarks/gpu.sh --only=purohit2019
#   bash benchmarks/gpu.sh --dry-run [--only=...]   # print the commands only
#   bash benchmarks/gpu.sh --no-generators      # = --only=h
#
# Lines: (1) jax.devices(); (2) the H step for crops 128 and 256 at batch 8,
# float32 and bfloat16 interleaved in one process, with XLA's convolutions
# (conv_impl=xla, the fast path off the CPU); (3, 4) each generator's step
# (+0.2 R_hyp through H) at batch 8, 120x120 (jin2018: the multiple of 20
# nearest 128) and 128x128 (purohit2019), the GEN_PRECISIONS interleaved in
# one process per generator. PyTorch (float32, eager) runs on CUDA when this
# torch build has it, interleaved with the JAX variants (else the torch
# columns stay empty: a CPU torch is no comparison for a GPU).
#
# Budget: every line runs under `timeout`, prints its rows as soon as its
# child finishes and writes its own JSON, so a timeout loses that line only
# (the script goes on and exits 1 at the end). Defaults: H_TIMEOUT 70 s,
# JIN_TIMEOUT / PUROHIT_TIMEOUT 110 s each when all lines run (4.9 minutes
# at most in all), 280 s for a generator run alone with --only. Compiling
# the generator steps dominates on a GPU: on an H200 (jax 0.11.2) jin2018's
# float32 step compiled in 55 s and purohit2019's took over 150 s, so the
# generator lines only fit one at a time (--only=...), or with
# GEN_PRECISIONS=float32 (one compile per line instead of two).
#
# Environment: PYTHON (default: python), OUT (default:
# benchmark_results/accel_<date>), H_TIMEOUT, JIN_TIMEOUT, PUROHIT_TIMEOUT
# (seconds), GEN_PRECISIONS (default float32,bfloat16), PEAK_TFLOPS (for a
# chip not in benchmarks/run.py's table), JAX_CACHE (a directory: turns on
# jax's persistent compilation cache, so a rerun on the same machine skips
# the compiles; its compile columns then show cache loads).
# Host-memory children are skipped (--nomemory): on an accelerator the
# column that matters is XLA's buffer assignment ('XLA MiB'). Needs this
# repository on that machine (installed, or run from its root) with an
# accelerator build of jax, flax, optax, orbax-checkpoint, chex, numpy, and
# three packages the trainer's modules import at top level: dm-pix
# (hypercut_jax.metrics, for the H step), ml-collections and grain
# (hypercut_jax.train.generator -> train.checkpoint, for the generator
# steps; grain has a compiled part: carry its cp3XX manylinux wheel). A
# preflight checks them first and names what is missing (exit 3) before any
# device time is spent.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }

dry=0
only=all
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --no-generators) only=h ;;
    --only=h|--only=jin2018|--only=purohit2019) only=${arg#--only=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python}
gen_default=110
if [ "$only" != all ]; then
  gen_default=280
fi
H_TIMEOUT=${H_TIMEOUT:-70}
JIN_TIMEOUT=${JIN_TIMEOUT:-$gen_default}
PUROHIT_TIMEOUT=${PUROHIT_TIMEOUT:-$gen_default}
GEN_PRECISIONS=${GEN_PRECISIONS:-float32,bfloat16}
OUT=${OUT:-benchmark_results/accel_$(date +%Y%m%d_%H%M%S)}
if [ -n "${JAX_CACHE:-}" ]; then
  export JAX_COMPILATION_CACHE_DIR="$JAX_CACHE"
fi

torch_flag="--notorch"
if [ "$dry" -eq 0 ] && "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  torch_flag="--torch_device=cuda"
fi
peak_flag=""
if [ -n "${PEAK_TFLOPS:-}" ]; then
  peak_flag="--peak_tflops=${PEAK_TFLOPS}"
fi

cmds=("$PY -c 'import jax; print(jax.__version__, jax.devices())'")
if [ "$only" = all ] || [ "$only" = h ]; then
  cmds+=("timeout $H_TIMEOUT $PY -m benchmarks.run --parts=h --sizes=128,256 --batch_size=8 --precisions=float32,bfloat16 --impls=xla --reps=20 --nomemory $torch_flag $peak_flag --json=$OUT/h.json")
fi
gens=0
for g in jin2018:$JIN_TIMEOUT purohit2019:$PUROHIT_TIMEOUT; do
  name=${g%%:*}
  if [ "$only" = all ] || [ "$only" = "$name" ]; then
    gens=1
    cmds+=("timeout ${g#*:} $PY -m benchmarks.run --parts=generators --generators=$name --generator_size=128 --batch_size=8 --precisions=$GEN_PRECISIONS --generator_reps=10 --nomemory $torch_flag $peak_flag --json=$OUT/$name.json")
  fi
done

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

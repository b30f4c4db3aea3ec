# shellcheck shell=bash
# Sets config and workdir (SC2034), reads PROG and USAGE (SC2154):
# shellcheck disable=SC2034,SC2154
# Helpers of launch/local_multiprocess.sh and launch/tpu_pod.sh, which source
# this file from beside themselves; it is not a script of its own. The
# sourcing script defines PROG (its name in messages) and USAGE (its one-line
# usage) first. launch/slurm_gpu.sbatch keeps its own copies: sbatch runs a
# spooled copy of the script, away from this folder.

die() {
  echo "${PROG}: error: $*" >&2
  echo "${USAGE}" >&2
  exit 2
}

need_value() {  # need_value OPTION ARGC
  [[ "$2" -ge 2 ]] || die "$1 needs a value"
}

quote() {  # Shell-quotes one word for display (single quotes when needed).
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

quote_all() {  # quote_all WORD... -> one line, words separated by spaces.
  local word sep=""
  for word in "$@"; do
    printf '%s' "${sep}"
    quote "${word}"
    sep=" "
  done
}

main_flags() {  # main_flags ARG...: sets config and workdir from the
  # hypercut_jax.main flags ARG... (--config=CFG or --config CFG, the last
  # wins); a usage error when either is missing.
  local arg prev=""
  config=""
  workdir=""
  for arg in "$@"; do
    case "${prev}" in
      --config) config="${arg}" ;;
      --workdir) workdir="${arg}" ;;
    esac
    case "${arg}" in
      --config=*) config="${arg#*=}" ;;
      --workdir=*) workdir="${arg#*=}" ;;
    esac
    prev="${arg}"
  done
  [[ -n "${config}" ]] || die "missing --config=CFG after '--'"
  [[ -n "${workdir}" ]] || die "missing --workdir=DIR after '--'"
}

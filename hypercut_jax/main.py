r"""Train HyperCUT: the ordering network H, a generator, or both.

Usage (from the repository root):

  python -m hypercut_jax.main --config=configs/synthetic.py --workdir=/tmp/hc
  python -m hypercut_jax.main --config=configs/rb2v.py:subset=face,smoke \
      --workdir=/tmp/rb2v --config.optim.lr=3e-4

--config   a config file `configs/<name>.py[:arg]`; the text after ':' is
           parsed by that file's `get_config(arg)` (see its docstring).
           Any field can be overridden with `--config.<field>=<value>`; a
           misspelt field or a value of the wrong type is an error before
           anything is built.
--workdir  where checkpoints (`checkpoints/`), `metrics.jsonl`, TensorBoard
           events (`tb/`), `config.json`, example strips and `results.md`
           go. Rerunning the same command with the same workdir resumes
           from the latest complete checkpoint.

SIGTERM saves a checkpoint at the next step boundary and exits cleanly.
Multi-host: set HYPERCUT_DISTRIBUTED=1 (or pass --distributed) to call
`jax.distributed.initialize()` (coordinator from the environment, as on a
TPU pod or a SLURM/Kubernetes GPU cluster) before anything touches devices.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/synthetic.py[:arg].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and results.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', None,
    'Call jax.distributed.initialize() first (default: env '
    'HYPERCUT_DISTRIBUTED=1).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0 for jax.distributed.initialize (default: '
    'JAX_COORDINATOR_ADDRESS or cluster auto-detection). Implies '
    '--distributed.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None,
    'Processes in the job (default: auto-detected on TPU/SLURM/Open MPI). '
    'Implies --distributed.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None,
    'This process, 0..num_processes-1 (default: auto-detected).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO chatter of orbax and grain (one line per save/restore step);
  their warnings and errors still show. `--verbosity=1` shows everything."""

  def filter(self, record):
    if record.levelno >= logging.logging.WARNING or logging.get_verbosity() > 0:
      return True
    path = record.pathname.replace('\\', '/')
    return '/orbax/' not in path and '/grain/' not in path


def _want_distributed() -> bool:
  if _DISTRIBUTED.value is not None:
    return _DISTRIBUTED.value
  if _COORDINATOR.value is not None or _NUM_PROCESSES.value is not None:
    return True
  return os.environ.get('HYPERCUT_DISTRIBUTED', '0').lower() in ('1', 'true')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax  # pylint: disable=g-import-not-at-top
  if _want_distributed():
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from hypercut_jax.train import loop  # pylint: disable=g-import-not-at-top
  logging.info('process %d/%d, %d local / %d devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(),
               jax.device_count())
  try:
    loop.validate(_CONFIG.value)
  except (ValueError, FileNotFoundError) as e:
    # One clear line naming the field, before anything is built.
    print(f'{type(e).__name__}: {e}', file=sys.stderr)
    sys.exit(2)
  loop.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)

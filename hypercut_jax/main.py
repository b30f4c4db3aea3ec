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

SIGTERM saves a checkpoint at the next step boundary and exits with status
75 (EX_TEMPFAIL, "try again"): rerun the same command to resume. A scheduler
can requeue on it (launch/README.md).

Exit status: 0 finished; 75 preempted (checkpoint saved, rerun to resume);
2 a user error (flags, config file or values, data paths, a workdir trained
under another config); 1 a failure while running (no checkpoint of the
workdir verifies, a non-finite loss, an I/O error). Errors print one line
`error: ...` on stderr; `--verbose` shows the traceback as well.

A rerun into a workdir made under another config (model, optimiser, data,
durations, or for a generator the frozen H) stops before touching it and
names the fields that differ; `--config.resume=override` continues on
purpose. A checkpoint that fails its checksums is moved to
`checkpoints.corrupt/` and the run resumes from the newest step that
verifies, saying so in one line.
Multi-host: set HYPERCUT_DISTRIBUTED=1 (or pass --distributed) to call
`jax.distributed.initialize()` (coordinator from the environment, as on a
TPU pod or a SLURM/Kubernetes GPU cluster) before anything touches devices.
"""
import ast
import os
import sys
import traceback

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
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'On an error, print the traceback as well (default: '
    'one line).')
flags.mark_flags_as_required(['config', 'workdir'])

EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_PREEMPTED = 75   # sysexits.h EX_TEMPFAIL: rerun the same command


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return f'{type(e).__name__}: {text}' if text else type(e).__name__


def _fail(e: BaseException, status: int, verbose: bool):
  """Ends the process with one line on stderr (and the traceback if asked)."""
  if verbose:
    traceback.print_exception(e)
  hint = '' if verbose else ' (--verbose for the traceback)'
  print(f'error: {_one_line(e)}{hint}', file=sys.stderr, flush=True)
  sys.exit(status)


def _flag_error(e: Exception, argv) -> Exception:
  """A flag-parsing failure as a readable one-line error.

  ml_collections reports a misspelt field as an AttributeError whose text is
  the repr of a KeyError, and a config file that raised as a message holding
  the whole traceback: keep the reason and name the flag.
  """
  text = str(e)
  if isinstance(e, (AttributeError, KeyError)):
    if text[:1] in '"\'' and text[-1:] == text[:1]:
      try:
        text = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        pass
    key = text.split('\n')[0].strip('\'"')
    named = [a.split('=')[0] for a in argv[1:]
             if a.startswith('--config.') and key in a.split('=')[0]]
    where = f'{named[0]}: ' if named else ''
    return ValueError(f'{where}no such config field {key!r}. '
                      + ' '.join(text.split('\n')[1:]))
  if 'Traceback (most recent call last)' in text:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    head = text.split(':', 2)[:2] if text.startswith('flag ') else []
    where = ':'.join(head).removeprefix('flag ') + ': ' if head else ''
    return ValueError(f'{where}{lines[-1]}')
  return e


def _parse_flags(argv):
  """absl's flag parsing, with every failure as one line and status 2.

  A config file that fails to execute, a misspelt `--config.<field>` or a
  value of the wrong type end here.
  """
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    _fail(_flag_error(e, argv), EXIT_USER_ERROR, '--verbose' in argv)


def _loaded_config():
  """The --config value; a file that could not be read is a user error."""
  config = _CONFIG.value
  try:
    config.lock()   # ml_collections' stand-in for an unreadable file raises
  except OSError as e:
    cause = e.__cause__ or e
    raise FileNotFoundError(
        f'--config={flags.FLAGS["config"].serialize().split("=", 1)[-1]}: '
        f'cannot load the config file ({_one_line(cause)})') from None
  return config


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
  from hypercut_jax.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  verbose = _VERBOSE.value
  try:
    config = _loaded_config()
    # One clear line naming the field, before anything is built.
    loop.validate(config)
    results = loop.run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, NotADirectoryError,
          PermissionError) as e:
    _fail(e, EXIT_USER_ERROR, verbose)
  except (ckpt_lib.CheckpointError, FloatingPointError, OSError) as e:
    _fail(e, EXIT_FAILURE, verbose)
  if any(r.preempted for r in results.values()):
    print('preempted: a checkpoint is saved; rerun the same command to '
          f'resume (exit status {EXIT_PREEMPTED})', file=sys.stderr,
          flush=True)
    sys.exit(EXIT_PREEMPTED)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)

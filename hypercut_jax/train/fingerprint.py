"""Config fingerprints: a workdir remembers the config that shaped its state.

Each stage workdir holds `fingerprint.json`:

  {"fields": {"optim.lr": 0.001, ...},   the stage config, flattened
   "digest": "<sha256 of fields>",
   "h": {"digest": ..., "step": ...} | null}   (generator) the frozen H

`fields` is the stage config without what does not shape the trained state
(`NOT_FINGERPRINTED`: logging, evaluation, checkpoint cadence and retention,
sharding, worker counts, data and checkpoint paths). A generator also records
which H it was trained against: the digest of H's own fingerprint and the H
step it loaded (`h_identity`), so a retrained or extended H invalidates it.

`check(cfg, workdir, override=...)` compares a rerun's config with what the
workdir recorded and raises `ConfigDriftError` (a ValueError) naming every
differing field, before anything is touched; `config.resume='override'`
continues on purpose (and records the new fingerprint). A workdir without a
fingerprint (new, or made before fingerprints existed) passes.
"""
import hashlib
import json
import os

from absl import logging

from hypercut_jax.train import checkpoint as ckpt_lib

FILE = 'fingerprint.json'
RESUME_MODES = ('check', 'override')
# Stage-config fields (and subtrees) that do not shape the trained state.
NOT_FINGERPRINTED = (
    'log_steps', 'keep', 'async_checkpoint', 'sharding', 'resume', 'eval',
    'matmul_precision',
    'eval_steps', 'eval_epochs', 'ckpt_steps', 'ckpt_epochs', 'best_metric',
    'input.eval_batch_size', 'input.eval_crop', 'input.worker_count',
    'data.num_test', 'data.data_dir', 'hypercut.checkpoint',
    'model.centre_checkpoint')
_MAX_LISTED = 8


class ConfigDriftError(ValueError):
  """A rerun's config differs from the one its workdir was trained with."""


def _excluded(key: str) -> bool:
  return any(key == k or key.startswith(k + '.') for k in NOT_FINGERPRINTED)


def _flatten(tree, prefix='') -> dict:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def _canonical(value):
  """JSON-able form of a config value (tuples as lists)."""
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def fields(cfg) -> dict:
  """The fingerprinted fields of a stage config: {'a.b': value}."""
  tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
  return {k: _canonical(v) for k, v in sorted(_flatten(tree).items())
          if not _excluded(k)}


def digest(flat: dict) -> str:
  return hashlib.sha256(
      json.dumps(flat, sort_keys=True).encode('utf-8')).hexdigest()


def _stage_dir(path: str) -> str:
  """A stage workdir from a workdir or its `checkpoints/` folder."""
  path = os.path.abspath(path.rstrip('/'))
  if os.path.basename(path) == 'checkpoints':
    return os.path.dirname(path)
  return path


def read(workdir: str) -> dict | None:
  path = os.path.join(workdir, FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
    if not isinstance(record, dict) or not isinstance(record.get('fields'),
                                                      dict):
      raise ValueError('no "fields" object')
  except ValueError as e:
    raise ConfigDriftError(
        f'{path} is unreadable ({e}); it records the config this workdir was '
        'trained with: restore it, or delete it to accept the current config'
    ) from None
  return record


def h_identity(cfg) -> dict | None:
  """Which frozen H a generator trains against (None without one)."""
  hc = cfg.get('hypercut') if hasattr(cfg, 'get') else None
  path = hc.get('checkpoint') if hc is not None else None
  if not path:
    return None
  recorded = read(_stage_dir(path))
  return {'digest': recorded['digest'] if recorded else None,
          'step': _latest_committed_step(path)}


def _latest_committed_step(path: str) -> int | None:
  """The newest committed step under `path`, from the file system only.

  Orbax renames a step's temporary folder to `<step>` once it is complete.
  No checkpoint manager is opened: that is a collective on several
  processes, and processes check fingerprints at different moments.
  """
  folder = ckpt_lib.checkpoints_dir(path)
  if not os.path.isdir(folder):
    return None
  steps = [int(n) for n in os.listdir(folder)
           if n.isdigit() and os.path.isdir(os.path.join(folder, n))]
  return max(steps, default=None)


def record_of(cfg) -> dict:
  flat = fields(cfg)
  return {'fields': flat, 'digest': digest(flat), 'h': h_identity(cfg)}


def _show(value) -> str:
  return '(absent)' if value is _ABSENT else json.dumps(value)


_ABSENT = object()


def differences(old: dict, new: dict) -> list[str]:
  """'field: old -> new' for every field (and the frozen H) that differs."""
  out = []
  a, b = old.get('fields', {}), new['fields']
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
    if va != vb:
      out.append(f'{key}: {_show(va)} -> {_show(vb)}')
  if old.get('h') != new.get('h') and (old.get('h') or new.get('h')):
    out.append(f'the frozen H (hypercut.checkpoint): {json.dumps(old.get("h"))}'
               f' -> {json.dumps(new.get("h"))}')
  return out


def check(cfg, workdir: str, *, override: bool = False) -> dict:
  """Raises ConfigDriftError when `workdir` was trained under another config.

  Returns the record of `cfg` (for `write`). With `override`, a drift is
  logged in one line and accepted.
  """
  new = record_of(cfg)
  old = read(workdir)
  if old is None:
    return new
  diff = differences(old, new)
  if not diff:
    return new
  shown = '; '.join(diff[:_MAX_LISTED]) + (
      f'; and {len(diff) - _MAX_LISTED} more' if len(diff) > _MAX_LISTED
      else '')
  if override:
    logging.warning('%s: continuing under a changed config '
                    '(config.resume=override): %s', workdir, shown)
    return new
  raise ConfigDriftError(
      f'{workdir} was trained with another config ({shown}); use a new '
      '--workdir, or pass --config.resume=override to continue under the new '
      'config')


def write(workdir: str, record: dict) -> None:
  """Writes the record atomically (temporary file, then rename)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, FILE)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)

"""Orbax checkpoints: train state + grain iterator + config, atomic, async,
verified.

Layout (`workdir/checkpoints/<step>/`):
  state/      the whole train state (params, optimiser state, step, and for
              stage 1 the fixed hyperplane), `ocp.args.StandardSave`
  data/       the grain iterator state, one JSON file per process
              (`grain.checkpoint.CheckpointSave`)
  config/     the run's config as JSON (`ocp.args.JsonSave`)
  integrity/  checksums of the three items above as JSON (`ocp.args.JsonSave`)

Orbax writes each step into `<step>.orbax-checkpoint-tmp-*` and renames it
when complete, so a step directory that a crash left half-written is never
listed by `latest_step()` (and is cleaned up when the manager opens).
Retention: the last `keep` steps plus the best one by `best_metric`
(ordered by `best_mode`), among steps saved with metrics.

Integrity. `save` records, next to the items it writes:
  state   per leaf (keyed by its path, e.g. 'params/stem/conv/kernel'): its
          shape, dtype and a 64-bit checksum computed on device by a jitted
          integer reduction (the leaf's bits as uint32 words times odd
          position-dependent weights, summed with wrap-around). Integer sums
          do not depend on the reduction order, so the value is the same
          under any sharding, device count or number of hosts. Any change of
          one word changes it.
  data    per process, the sha256 of the iterator's `get_state()` (canonical
          JSON, or its bytes).
  config  the sha256 of the canonical JSON (`sort_keys=True`).
  self    the sha256 of the record itself, so a damaged record is caught.
Every read here (`restore`, `restore_latest_verified`, `restore_state`,
`read_config`, and `inference.load` through `verify_state`) checks what it
reads against that record. A step that cannot be read (missing or truncated
file, missing `_METADATA`, garbage JSON) or fails a checksum raises
`CheckpointError`, one line naming the directory, the step, the item and the
reason; nothing corrupt is returned silently. Steps saved before checksums
existed (no `integrity/`) are read without verification.

`restore_latest_verified` (resuming training) falls back instead: it tries
the steps newest first and moves each bad one newer than the first step that
verifies to `<checkpoints>.corrupt/<step>` (a sibling, so orbax never lists
it again; nothing is deleted), logging one line per bad step. When no step
verifies it moves nothing and raises `CheckpointError`.
"""
import contextlib
import hashlib
import json
import os
import shutil
import sys
from typing import Any, Callable, Iterator

from absl import logging
import grain
import jax
from jax import lax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from hypercut_jax.train import report

STATE, DATA, CONFIG, INTEGRITY = 'state', 'data', 'config', 'integrity'
CORRUPT_SUFFIX = '.corrupt'
_RECORD_FORMAT = 1
_SELF = 'self'
# Seeds of the two 32-bit checksum lanes (64 bits per leaf in all).
_LANE_SEEDS = (0x243F6A88, 0xB7E15162)
_MAX_REASON = 240


class CheckpointError(RuntimeError):
  """A checkpoint step that cannot be read or fails its checksums."""


class _BadStep(Exception):
  """One step's item is unreadable or fails its checksum (`reason` says)."""

  def __init__(self, item: str, what: str):
    super().__init__(f'{item}: {what}')
    self.reason = f'{item}: {what}'


# ------------------------------------------------------------- managers ---
def _item_handlers() -> dict:
  return {STATE: ocp.StandardCheckpointHandler(),
          DATA: grain.checkpoint.CheckpointHandler(),
          CONFIG: ocp.JsonCheckpointHandler(),
          INTEGRITY: ocp.JsonCheckpointHandler()}


def make_manager(directory: str, *, keep: int = 2,
                 best_metric: str | None = None, best_mode: str = 'max',
                 async_save: bool = True) -> ocp.CheckpointManager:
  """CheckpointManager in `directory` keeping the last `keep` + the best."""
  if best_mode not in ('max', 'min'):
    raise ValueError(f'best_mode={best_mode!r}; known: (\'max\', \'min\')')
  if keep < 1:
    raise ValueError(f'config.keep={keep}; must be >= 1')
  policies = [ocm.LatestN(n=keep)]
  if best_metric:
    policies.append(ocm.BestN(
        get_metric_fn=lambda metrics: metrics[best_metric],
        reverse=best_mode == 'min', n=1,
        keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocm.AnyPreservationPolicy(policies),
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
      create=True)
  return ocp.CheckpointManager(
      os.path.abspath(directory), options=options,
      item_handlers=_item_handlers())


def checkpoints_dir(directory: str) -> str:
  """`directory/checkpoints` when it exists, else `directory` itself."""
  sub = os.path.join(directory, 'checkpoints')
  return sub if os.path.isdir(sub) else directory


def open_read_only(directory: str) -> ocp.CheckpointManager:
  """Read-only manager on `directory` (a workdir or its checkpoints/)."""
  path = checkpoints_dir(directory)
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f'checkpoint directory {directory!r} does not exist')
  options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                         save_interval_steps=0,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(
      os.path.abspath(path), options=options,
      item_handlers=_item_handlers())


def latest_step(directory: str) -> int | None:
  """Latest complete step in `directory`, None when there is none."""
  try:
    mngr = open_read_only(directory)
  except FileNotFoundError:
    return None
  try:
    return mngr.latest_step()
  finally:
    mngr.close()


# ------------------------------------------------------------ checksums ---
def _words(x: jax.Array) -> jax.Array:
  """x's bits as uint32 words: narrower types widened, 64-bit ones split."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  floating = jnp.issubdtype(x.dtype, jnp.floating)
  bits = (jnp.finfo(x.dtype) if floating else jnp.iinfo(x.dtype)).bits
  if bits < 8:   # int4, float4...: every value is exact in 32 bits
    x = x.astype(jnp.float32 if floating else jnp.int32)
    bits = 32
  if bits == 8:
    return lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
  if bits == 16:
    return lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
  return lax.bitcast_convert_type(x, jnp.uint32)   # 32 bits; 64 -> [..., 2]


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """uint32 row-major position of each element (mod 2**32)."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in range(len(shape) - 1, -1, -1):
    index += (lax.broadcasted_iota(jnp.uint32, shape, axis)
              * np.uint32(stride % 2**32))
    stride *= shape[axis]
  return index


def _odd_weight(index: jax.Array, seed: int) -> jax.Array:
  """A well-mixed odd uint32 weight per position (murmur3 finaliser)."""
  h = index * np.uint32(0x9E3779B1) + np.uint32(seed)
  h ^= h >> 16
  h *= np.uint32(0x85EBCA6B)
  h ^= h >> 13
  h *= np.uint32(0xC2B2AE35)
  h ^= h >> 16
  return h | np.uint32(1)


def _leaf_sums(x: jax.Array) -> jax.Array:
  """u32[2]: sum(word * weight) mod 2**32 for each lane.

  The weights are odd, so changing any single word changes every lane; the
  sum is exact, hence independent of how the reduction is split.
  """
  words = _words(x)
  index = _flat_index(words.shape)
  return jnp.stack([jnp.sum(words * _odd_weight(index, seed),
                            dtype=jnp.uint32) for seed in _LANE_SEEDS])


@jax.jit
def _tree_sums(leaves: list) -> jax.Array:
  return jnp.stack([_leaf_sums(x) for x in leaves])


def _to_host(x: jax.Array) -> np.ndarray:
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _device_group(x) -> tuple:
  if isinstance(x, jax.Array):
    return tuple(sorted(d.id for d in x.sharding.device_set))
  return ()   # host values: on the default device


def _sums(leaves: list) -> list[np.ndarray]:
  """u32[2] per leaf; one jitted call per set of devices the leaves are on."""
  groups = {}
  for i, x in enumerate(leaves):
    groups.setdefault(_device_group(x), []).append(i)
  out = [None] * len(leaves)
  for indices in groups.values():
    try:
      sums = _to_host(_tree_sums([leaves[i] for i in indices]))
    except ValueError:   # same devices in different mesh orders: one by one
      sums = [_to_host(_tree_sums([leaves[i]]))[0] for i in indices]
    for i, s in zip(indices, sums):
      out[i] = s
  return out


def _keyed_leaves(tree) -> list[tuple[str, Any]]:
  """[(path 'a/b/0/c', leaf)], the same for dicts, dataclasses and tuples."""
  return [(jax.tree_util.keystr(path, simple=True, separator='/'), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def checksums(tree) -> dict[str, str]:
  """{leaf path: 16 hex digits}, a checksum of each leaf's exact bits.

  Computed on the devices holding each leaf; identical for the same values
  whatever their sharding, device count or number of processes.
  """
  keyed = _keyed_leaves(tree)
  sums = _sums([leaf for _, leaf in keyed])
  return {key: f'{int(s[0]):08x}{int(s[1]):08x}'
          for (key, _), s in zip(keyed, sums)}


def _meta(leaf) -> tuple[list[int], str]:
  dtype = getattr(leaf, 'dtype', None)
  dtype = jnp.result_type(leaf) if dtype is None else dtype
  return [int(n) for n in np.shape(leaf)], str(dtype)


def _state_record(state) -> dict:
  sums = checksums(state)
  record = {}
  for key, leaf in _keyed_leaves(state):
    shape, dtype = _meta(leaf)
    record[key] = {'shape': shape, 'dtype': dtype, 'sum': sums[key]}
  return record


def _canonical(obj) -> bytes:
  return json.dumps(obj, sort_keys=True, separators=(',', ':')).encode()


def _sha256(blob: bytes) -> str:
  return hashlib.sha256(blob).hexdigest()


def _config_digest(config: dict) -> str:
  """sha256 of `config` as JsonSave writes and JsonRestore reads it back."""
  return _sha256(_canonical(json.loads(json.dumps(config))))


def _iterator_digest(data_iter) -> str:
  state = data_iter.get_state()
  if isinstance(state, (bytes, bytearray)):
    try:
      state = json.loads(bytes(state))
    except ValueError:
      return _sha256(bytes(state))
  return _sha256(_canonical(state))


def _process_key() -> str:
  return f'process_{jax.process_index()}-of-{jax.process_count()}'


def _data_record(data_iter) -> dict[str, str]:
  """{process_<i>-of-<n>: sha256 of its iterator state}, for every process."""
  digest = _iterator_digest(data_iter)
  n = jax.process_count()
  if n == 1:
    return {_process_key(): digest}
  mine = np.frombuffer(bytes.fromhex(digest), np.uint8)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(n, -1)
  return {f'process_{i}-of-{n}': every[i].tobytes().hex() for i in range(n)}


def _sealed(record: dict) -> dict:
  record = dict(record, format=_RECORD_FORMAT)
  record[_SELF] = _sha256(_canonical(record))
  return record


# ----------------------------------------------------------------- save ---
def save(mngr: ocp.CheckpointManager, step: int, state, *, data_iter=None,
         config=None, metrics: dict | None = None) -> bool:
  """Starts an (async) save of step `step`; returns whether one started.

  Also writes the `integrity` item (checksums of state, data and config, see
  the module docstring); computing it reads the state on device and blocks
  until it is computed, which orbax's own device-to-host copy does anyway.
  """
  items = {STATE: ocp.args.StandardSave(state)}
  record = {STATE: _state_record(state)}
  if data_iter is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iter)
    record[DATA] = _data_record(data_iter)
  if config is not None:
    config = report.config_dict(config)
    items[CONFIG] = ocp.args.JsonSave(config)
    record[CONFIG] = _config_digest(config)
  items[INTEGRITY] = ocp.args.JsonSave(_sealed(record))
  return mngr.save(int(step), args=ocp.args.Composite(**items),
                   metrics=metrics, force=True)


# ----------------------------------------------------------- verification ---
def _short(error: BaseException) -> str:
  """One line: the innermost cause of `error` (orbax wraps the real one)."""
  seen = {id(error)}
  while True:
    inner = error.__cause__ or (None if error.__suppress_context__
                                else error.__context__)
    if inner is None or id(inner) in seen or not str(inner).strip():
      break
    seen.add(id(inner))
    error = inner
  text = ' '.join(f'{type(error).__name__}: {error}'.split())
  return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + '...'


def _listing(label: str, items: list[str], limit: int = 4) -> str:
  more = f' and {len(items) - limit} more' if len(items) > limit else ''
  return f'{label} {", ".join(items[:limit])}{more}'


def _corrupt_message(directory, step: int, reason: str) -> str:
  return f'checkpoint step {step} in {directory} is corrupt ({reason})'


def _step_dir(mngr: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(os.fspath(mngr.directory), str(int(step)))


def _quiet_closed_loop_noise() -> None:
  """Drops the late 'Event loop is closed' reports of a failed read.

  When one array of a step fails to read, orbax's event loop ends while
  tensorstore still completes the other reads; each completion then reports
  RuntimeError('Event loop is closed') (through sys.unraisablehook or
  sys.excepthook, depending on the thread that completes it), a traceback
  each, some after our one-line error. They carry no information
  (the failure is already reported), so the hook installed here drops
  exactly those and passes everything else on. Installed once, before the
  first read (the reports can come before the failure reaches us).
  """
  previous = sys.unraisablehook
  if getattr(previous, '_drops_closed_loop_noise', False):
    return

  def hook(info):
    if (info.exc_type is RuntimeError
        and str(info.exc_value) == 'Event loop is closed'):
      return
    previous(info)

  def excepthook(kind, value, tb):
    if kind is RuntimeError and str(value) == 'Event loop is closed':
      return
    previous_excepthook(kind, value, tb)

  previous_excepthook = sys.excepthook
  hook._drops_closed_loop_noise = True  # pylint: disable=protected-access
  sys.unraisablehook = hook
  sys.excepthook = excepthook


def _restore_item(mngr: ocp.CheckpointManager, step: int, item: str, args,
                  *, file: str | None = None):
  """One item of `step`; _BadStep when it is missing or cannot be read."""
  if not os.path.isdir(os.path.join(_step_dir(mngr, step), item)):
    raise _BadStep(item, 'missing')
  _quiet_closed_loop_noise()
  try:
    out = mngr.restore(int(step), args=ocp.args.Composite(**{item: args}))
    return out[item]
  except Exception as e:  # pylint: disable=broad-exception-caught
    what = f'cannot read {file}' if file else 'cannot read'
    raise _BadStep(item, f'{what}: {_short(e)}') from e


def _read_record(mngr: ocp.CheckpointManager, step: int) -> dict | None:
  """The step's integrity record, None for a step saved without one."""
  if not os.path.isdir(os.path.join(_step_dir(mngr, step), INTEGRITY)):
    return None
  record = _restore_item(mngr, step, INTEGRITY, ocp.args.JsonRestore())
  if not isinstance(record, dict):
    raise _BadStep(INTEGRITY, 'not a JSON object')
  body = {k: v for k, v in record.items() if k != _SELF}
  if record.get(_SELF) != _sha256(_canonical(body)):
    raise _BadStep(INTEGRITY, 'the record fails its own checksum')
  return record


def _state_mismatches(saved: dict, tree) -> list[str]:
  """Leaf paths of `tree` whose checksum differs from `saved` (its record).

  A leaf restored with another dtype than saved (a cast asked for by the
  restore target) cannot be compared and is skipped.
  """
  keyed = [(k, leaf) for k, leaf in _keyed_leaves(tree)
           if k not in saved or _meta(leaf)[1] == saved[k].get('dtype')]
  sums = checksums({k: leaf for k, leaf in keyed if k in saved})
  bad = [f'{k} (no checksum saved)' for k, _ in keyed if k not in saved]
  return bad + [k for k, s in sums.items() if s != saved[k].get('sum')]


def _check_state(saved: dict, tree) -> None:
  bad = _state_mismatches(saved, tree)
  if bad:
    raise _BadStep(STATE, _listing('checksum mismatch in', bad))


def _check_layout(directory, step: int, saved: dict, abstract_state) -> None:
  """ValueError when `abstract_state` is not the layout that was saved.

  Not corruption: the caller asks for another state (e.g. a changed model
  or optimiser), so no step is moved for it.
  """
  want = {k: _meta(leaf)[0] for k, leaf in _keyed_leaves(abstract_state)}
  have = {k: list(v.get('shape', [])) for k, v in saved.items()}
  parts = []
  missing = sorted(set(want) - set(have))
  unexpected = sorted(set(have) - set(want))
  shapes = sorted(f'{k} {tuple(have[k])} != {tuple(want[k])}'
                  for k in set(want) & set(have) if have[k] != want[k])
  for label, items in (('missing', missing), ('unexpected', unexpected),
                       ('shape mismatch', shapes)):
    if items:
      parts.append(_listing(f'{label}:', items))
  if parts:
    raise ValueError(f'checkpoint step {step} in {directory} holds another '
                     f'state than the one restored into; {"; ".join(parts)}')


def _read_step(mngr: ocp.CheckpointManager, step: int, *,
               abstract_state=None, config: bool = False,
               data_iter_fn: Callable[[], Any] | None = None
               ) -> tuple[dict, bool]:
  """Reads the asked items of `step` and checks them against its record.

  Returns ({item: value}, whether a record was there to check against).
  Raises _BadStep (unreadable or wrong bytes), ValueError (see
  `_check_layout`), FileNotFoundError (no such step).
  """
  directory = os.fspath(mngr.directory)
  if not os.path.isdir(_step_dir(mngr, step)):
    raise FileNotFoundError(f'no checkpoint step {step} in {directory}')
  record = _read_record(mngr, step)
  out = {}
  if abstract_state is not None:
    if record is not None and STATE in record:
      _check_layout(directory, step, record[STATE], abstract_state)
    out[STATE] = _restore_item(mngr, step, STATE,
                               ocp.args.StandardRestore(abstract_state))
    if record is not None and STATE in record:
      _check_state(record[STATE], out[STATE])
  if config:
    out[CONFIG] = _restore_item(mngr, step, CONFIG, ocp.args.JsonRestore())
    if record is not None and CONFIG in record:
      if _config_digest(out[CONFIG]) != record[CONFIG]:
        raise _BadStep(CONFIG, 'checksum mismatch')
  if data_iter_fn is not None:
    data_iter = data_iter_fn()
    key = _process_key()
    out[DATA] = _restore_item(mngr, step, DATA,
                              grain.checkpoint.CheckpointRestore(data_iter),
                              file=f'{key}.json')
    saved = (record or {}).get(DATA) or {}
    if saved and key not in saved:
      raise _BadStep(DATA, f'no checksum saved for {key}')
    if key in saved and _iterator_digest(out[DATA]) != saved[key]:
      raise _BadStep(DATA, f'checksum mismatch ({key}.json)')
  return out, record is not None


def _any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (all processes must call this)."""
  if jax.process_count() == 1:
    return flag
  flags = multihost_utils.process_allgather(np.asarray([int(flag)], np.int32))
  return bool(np.any(np.asarray(flags)))


def _unverified_message(directory, step: int) -> str:
  return (f'checkpoint step {step} in {directory} has no integrity record '
          '(saved before checksums existed); read without verification')


@contextlib.contextmanager
def read_guard(directory, step: int, item: str) -> Iterator[None]:
  """Turns any error while reading `item` of `step` into CheckpointError.

  For readers outside this module (`inference.load`) that read a step's
  files themselves: the error is one line naming the directory, the step,
  the item and the cause.
  """
  _quiet_closed_loop_noise()
  try:
    yield
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise CheckpointError(_corrupt_message(
        directory, step, f'{item}: cannot read: {_short(e)}')) from e


def verify_state(directory: str, step: int, tree) -> bool:
  """Checks restored leaves of step `step`'s state against its checksums.

  tree: any part of the saved state, with the saved paths (e.g.
  {'params': ..., 'hyperplane': ...} of a stage-1 state). Returns False
  when the step has no integrity record (nothing to check), True when every
  leaf matches; raises CheckpointError naming the step and the leaves that
  do not.
  """
  mngr = open_read_only(directory)
  try:
    try:
      record = _read_record(mngr, step)
      if record is not None and STATE in record:
        _check_state(record[STATE], tree)
    except _BadStep as e:
      raise CheckpointError(_corrupt_message(mngr.directory, step,
                                             e.reason)) from None
  finally:
    mngr.close()
  return record is not None


# -------------------------------------------------------------- restore ---
def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, *,
            data_iter=None):
  """Reads step `step` back into the layout of `abstract_state`, verified.

  abstract_state: pytree of `jax.ShapeDtypeStruct` carrying shardings
  (`sharding.with_shardings`), so arrays come back already distributed.
  data_iter: the fresh grain iterator to set to the saved position.
  Returns (state, data_iter). Raises CheckpointError when the step cannot be
  read or fails its checksums (`data_iter` may then have been set to the
  damaged position: discard it), ValueError when `abstract_state` is not the
  saved layout. Use `restore_latest_verified` to fall back instead.
  """
  fn = None if data_iter is None else lambda: data_iter
  try:
    out, verified = _read_step(mngr, step, abstract_state=abstract_state,
                               data_iter_fn=fn)
  except _BadStep as e:
    raise CheckpointError(_corrupt_message(mngr.directory, step,
                                           e.reason)) from None
  if not verified:
    logging.warning(_unverified_message(mngr.directory, step))
  return out[STATE], out.get(DATA)


def _corrupt_dir(directory: str) -> str:
  return os.path.normpath(directory) + CORRUPT_SUFFIX


def _aside_path(directory: str, step: int) -> str:
  """`<directory>.corrupt/<step>`, or `<step>.<n>` when that is taken."""
  base = os.path.join(_corrupt_dir(directory), str(step))
  path, n = base, 0
  while os.path.lexists(path):
    n += 1
    path = f'{base}.{n}'
  return path


def _move_aside(directory: str, step: int) -> str:
  """Moves step `step` out of `directory` (process 0 only); its new path."""
  dest = _aside_path(directory, step)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.move(os.path.join(directory, str(step)), dest)
  return dest


def _close(data_iter) -> None:
  close = getattr(data_iter, 'close', None)
  if close is not None:
    try:
      close()
    except Exception:  # pylint: disable=broad-exception-caught
      pass


def restore_latest_verified(
    directory: str, abstract_state, *,
    data_iter_fn: Callable[[], Any] | None = None,
    log: Callable[[str], None] | None = None):
  """(state, data_iter, step) of the newest step that verifies, or None.

  Call it before opening a writable manager on `directory`: it moves steps.

  Args:
    directory: the checkpoints directory (or a workdir holding
      `checkpoints/`); may not exist yet.
    abstract_state: pytree of `jax.ShapeDtypeStruct` with shardings, as for
      `restore`.
    data_iter_fn: makes a fresh grain iterator; called once for each step
      whose state verifies, and the iterator is restored to that step's
      position. A restore that fails may have moved an iterator to a damaged
      position, so each try gets a new one (failed ones are closed). None:
      the data item is not read and None is returned in its place.
    log: receives one line per bad step (default: absl logging.warning),
      e.g. 'checkpoint step 600 in D is corrupt (state: checksum mismatch in
      params/...); moved to D.corrupt/600; resuming from step 300', and one
      line when the step used has no integrity record (saved before
      checksums existed; it is used unverified).

  Returns:
    None when `directory` holds no complete step, else (state, data_iter,
    step) of the newest step whose state, config (when saved) and data
    (with `data_iter_fn`) read back and match their checksums.
    Each bad step newer than it is moved to `<directory>.corrupt/<step>`.

  Raises:
    CheckpointError: steps exist but none verifies; one line naming the
      directory and each step with its reason. Nothing is moved then.
    ValueError: `abstract_state` is not the layout a step's record holds
      (another model or optimiser); nothing is moved.
  """
  log = log or logging.warning
  path = os.path.abspath(checkpoints_dir(directory))
  # Agreed by every process before any of them goes on (process 0 creates
  # the directory as soon as it opens its writable manager).
  if _any_process(not os.path.isdir(path)):
    return None
  bad, made = [], []

  def fresh_iterator():
    made.append(data_iter_fn())
    return made[-1]

  found = None
  mngr = open_read_only(path)
  try:
    for step in sorted(mngr.all_steps(), reverse=True):
      reason = None
      try:
        out, verified = _read_step(
            mngr, step, abstract_state=abstract_state,
            config=os.path.isdir(os.path.join(_step_dir(mngr, step), CONFIG)),
            data_iter_fn=None if data_iter_fn is None else fresh_iterator)
      except _BadStep as e:
        reason = e.reason
      if _any_process(reason is not None):
        bad.append((step, reason or 'bad on another process'))
        while made:
          _close(made.pop())
        continue
      found = (out[STATE], out.get(DATA), int(step), verified)
      break
  finally:
    mngr.close()
    if found is None:   # an error, or no step verifies: close what we made
      for data_iter in made:
        _close(data_iter)
  if found is None:
    if not bad:
      return None
    steps = '; '.join(f'step {s} ({r})' for s, r in bad)
    raise CheckpointError(f'no checkpoint in {path} verifies: {steps}; '
                          'nothing was moved (move or delete these steps to '
                          'start over)')
  state, data_iter, step, verified = found
  for bad_step, reason in bad:
    dest = _move_aside(path, bad_step)
    log(f'{_corrupt_message(path, bad_step, reason)}; moved to {dest}; '
        f'resuming from step {step}')
  if bad and jax.process_count() > 1:
    multihost_utils.sync_global_devices('hypercut_jax checkpoint moved aside')
  if not verified:
    log(_unverified_message(path, step))
  return state, data_iter, step


def _read_one(directory: str, step: int | None, **what) -> tuple[dict, int]:
  """Verified items of `step` (default: latest) in a read-only manager."""
  mngr = open_read_only(directory)
  try:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no complete checkpoint in {directory!r}')
    try:
      out, verified = _read_step(mngr, step, **what)
    except _BadStep as e:
      raise CheckpointError(_corrupt_message(mngr.directory, step,
                                             e.reason)) from None
    if not verified:
      logging.warning(_unverified_message(mngr.directory, step))
    return out, int(step)
  finally:
    mngr.close()


def read_config(directory: str, step: int | None = None) -> tuple[dict, int]:
  """(config dict, step) saved with `step` (default: latest) in `directory`.

  directory: a stage workdir (holding `checkpoints/`) or the checkpoints
  directory itself. FileNotFoundError names it when nothing is there;
  CheckpointError when the config cannot be read or fails its checksum.
  """
  out, step = _read_one(directory, step, config=True)
  return out[CONFIG], step


def restore_state(directory: str, abstract_state, step: int | None = None
                  ) -> tuple[Any, int]:
  """(state, step) from `directory` (default: latest step), without data.

  Used to load a frozen model (stage-1 H for stage 2) or final params.
  Verified: CheckpointError (one line naming the step and the item) when the
  state cannot be read or fails its checksums; there is no fallback.
  """
  out, step = _read_one(directory, step, abstract_state=abstract_state)
  return out[STATE], step

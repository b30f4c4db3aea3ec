"""Orbax checkpoints: train state + grain iterator + config, atomic, async.

Layout (`workdir/checkpoints/<step>/`):
  state/   the whole train state (params, optimiser state, step, and for
           stage 1 the fixed hyperplane), `ocp.args.StandardSave`
  data/    the grain iterator state, one JSON file per process
           (`grain.checkpoint.CheckpointSave`)
  config/  the run's config as JSON (`ocp.args.JsonSave`)

Orbax writes each step into `<step>.orbax-checkpoint-tmp-*` and renames it
when complete, so a step directory that a crash left half-written is never
listed by `latest_step()` (and is cleaned up when the manager opens).
Retention: the last `keep` steps plus the best one by `best_metric`
(ordered by `best_mode`), among steps saved with metrics.
"""
import os
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

STATE, DATA, CONFIG = 'state', 'data', 'config'


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
      item_handlers={STATE: ocp.StandardCheckpointHandler(),
                     DATA: grain.checkpoint.CheckpointHandler(),
                     CONFIG: ocp.JsonCheckpointHandler()})


def _config_dict(config) -> dict:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  return dict(config)


def save(mngr: ocp.CheckpointManager, step: int, state, *, data_iter=None,
         config=None, metrics: dict | None = None) -> bool:
  """Starts an (async) save of step `step`; returns whether one started."""
  items = {STATE: ocp.args.StandardSave(state)}
  if data_iter is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iter)
  if config is not None:
    items[CONFIG] = ocp.args.JsonSave(_config_dict(config))
  return mngr.save(int(step), args=ocp.args.Composite(**items),
                   metrics=metrics, force=True)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, *,
            data_iter=None):
  """Reads step `step` back into the layout of `abstract_state`.

  abstract_state: pytree of `jax.ShapeDtypeStruct` carrying shardings
  (`sharding.with_shardings`), so arrays come back already distributed.
  data_iter: the fresh grain iterator to set to the saved position.
  Returns (state, data_iter).
  """
  items = {STATE: ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items[DATA] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = mngr.restore(int(step), args=ocp.args.Composite(**items))
  it = restored[DATA] if data_iter is not None else None
  return restored[STATE], it


def read_config(directory: str, step: int | None = None) -> tuple[dict, int]:
  """(config dict, step) saved with `step` (default: latest) in `directory`.

  directory: a stage workdir (holding `checkpoints/`) or the checkpoints
  directory itself. FileNotFoundError names it when nothing is there.
  """
  mngr = open_read_only(directory)
  try:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no complete checkpoint in {directory!r}')
    cfg = mngr.restore(step, args=ocp.args.Composite(
        **{CONFIG: ocp.args.JsonRestore()}))[CONFIG]
    return cfg, step
  finally:
    mngr.close()


def checkpoints_dir(directory: str) -> str:
  """`directory/checkpoints` when it exists, else `directory` itself."""
  sub = os.path.join(directory, 'checkpoints')
  return sub if os.path.isdir(sub) else directory


def open_read_only(directory: str) -> ocp.CheckpointManager:
  path = checkpoints_dir(directory)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'checkpoint directory {directory!r} does not exist')
  options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                         save_interval_steps=0,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(
      os.path.abspath(path), options=options,
      item_handlers={STATE: ocp.StandardCheckpointHandler(),
                     CONFIG: ocp.JsonCheckpointHandler()})


def restore_state(directory: str, abstract_state, step: int | None = None
                  ) -> tuple[Any, int]:
  """(state, step) from `directory` (default: latest step), without data.

  Used to load a frozen model (stage-1 H for stage 2) or final params.
  """
  mngr = open_read_only(directory)
  try:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no complete checkpoint in {directory!r}')
    out = mngr.restore(step, args=ocp.args.Composite(
        **{STATE: ocp.args.StandardRestore(abstract_state)}))
    return out[STATE], step
  finally:
    mngr.close()


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

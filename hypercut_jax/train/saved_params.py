"""Trained parameters read from a checkpoint, without the optimiser.

What inference, the frozen centre net of purohit2019 and `reproduce` need:
find the checkpoint a path means (`resolve`), read the layout of a step's
saved state (`state_layout`) and restore some of its top-level entries
(`restore_entries`, e.g. `params` and `hyperplane`), verified against the
checksums the trainer saved with the step (`checkpoint.verify_state`). The
optimiser state is never read, so it may have any layout.

`path` for `resolve` may be:
  - a stage workdir (holding `checkpoints/`),
  - its `checkpoints/` directory,
  - one step directory (`checkpoints/<step>/`), which pins that step,
  - a `stage='both'` workdir (holding `ordering/` and `generator/`) when
    `expect` says which stage to take,
  - the output directory of `python -m hypercut_jax.convert` (a stage-1
    checkpoint at step 0).
"""
import os

import jax
import orbax.checkpoint as ocp

from hypercut_jax.train import checkpoint as ckpt_lib


def _is_step_dir(path: str) -> bool:
  return (os.path.basename(os.path.normpath(path)).isdigit()
          and os.path.isdir(os.path.join(path, 'state')))


def _has_steps(path: str) -> bool:
  return any(n.isdigit() and os.path.isdir(os.path.join(path, n))
             for n in os.listdir(path))


def resolve(path: str, expect: str | None = None) -> tuple[str, int | None]:
  """(checkpoints directory, pinned step or None) for `path` (see module)."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint {path}: no such directory')
  if not os.path.isdir(path):
    hint = (' (an official PyTorch file? convert it first: python -m '
            'hypercut_jax.convert --torch_checkpoint=FILE --output=DIR)'
            if path.endswith(('.pth', '.pt', '.ckpt', '.tar')) else '')
    raise ValueError(f'checkpoint {path}: is a file; expected a checkpoint '
                     f'directory{hint}')
  if _is_step_dir(path):
    return os.path.dirname(path), int(os.path.basename(path))
  sub = os.path.join(path, 'checkpoints')
  if os.path.isdir(sub):
    return sub, None
  if expect is not None and os.path.isdir(os.path.join(path, expect,
                                                       'checkpoints')):
    return os.path.join(path, expect, 'checkpoints'), None
  if _has_steps(path):
    return path, None
  raise FileNotFoundError(
      f'checkpoint {path}: no checkpoint found (expected a workdir holding '
      'checkpoints/, a checkpoints/ directory or a step directory)')


def state_layout(directory: str, step: int) -> dict:
  """The saved state's tree of array metadata (shape, dtype) at `step`.

  CheckpointError (one line) when it cannot be read.
  """
  mngr = ckpt_lib.open_read_only(directory)
  try:
    state_dir = os.path.join(str(mngr.directory), str(step), ckpt_lib.STATE)
    with ckpt_lib.read_guard(directory, step, ckpt_lib.STATE):
      tree = mngr.item_metadata(step)[ckpt_lib.STATE]
      if tree is None and os.path.isdir(state_dir):
        # Orbax logs and returns None when _METADATA is missing or damaged.
        raise FileNotFoundError(f'no readable _METADATA in {state_dir}')
  finally:
    mngr.close()
  return tree.tree if hasattr(tree, 'tree') else tree


def restore_entries(directory: str, step: int, layout: dict, *,
                    sharding=None) -> dict:
  """{name: tree} of the state entries in `layout`, read and verified.

  layout: {name: metadata tree} (a sub-dict of `state_layout`), e.g.
  {'params': ..., 'hyperplane': ...}. sharding: where the arrays go
  (default: the first device). CheckpointError when the bytes cannot be
  read or do not match the step's checksums.
  """
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  item = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
      layout)
  restore_args = jax.tree.map(
      lambda _: ocp.ArrayRestoreArgs(sharding=sharding), item)
  state_dir = os.path.join(ckpt_lib.checkpoints_dir(directory), str(step),
                           ckpt_lib.STATE)
  with ckpt_lib.read_guard(directory, step, ckpt_lib.STATE):
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
      out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
          item=item, restore_args=restore_args, partial_restore=True))
  out = {name: out[name] for name in layout}
  ckpt_lib.verify_state(directory, step, out)
  return out

"""Load a trained model from a checkpoint for inference (no optimiser).

`load(path, expect=...)` reads what the trainer (`train/checkpoint.py`)
wrote: the config item (model name and fields) and, from the `state` item,
only `params`, `step` and, for H, the fixed `hyperplane`. The optimiser
state is never read, so the optimiser config does not matter and a
checkpoint loads even when its optimiser changed. Parameter shapes are
checked against the model the config describes.

`path` may be any form `train/saved_params.resolve` accepts (a stage
workdir, its `checkpoints/`, a step directory, which pins that step, a
`stage='both'` workdir with `expect`, a `convert` output directory).
Otherwise the latest complete step is taken.

The config and the params (and hyperplane) read are checked against the
checksums the trainer saved with the step (`train/checkpoint.py`); a step
saved before checksums existed is read unverified.

Errors name the path: FileNotFoundError (nothing there), ValueError (a
checkpoint of the wrong kind, a config that does not describe a known model,
parameters that do not fit it), `checkpoint.CheckpointError` (one line naming
the step and the item: the step cannot be read or its bytes do not match its
checksums; there is no fallback to another step here).
"""
import dataclasses
from typing import Any

import jax
import optax

from hypercut_jax import data as data_lib
from hypercut_jax import models
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import saved_params

KINDS = ('ordering', 'generator')
_WHAT = {'ordering': 'an ordering network H (stage 1, or a converted '
                     'official checkpoint)',
         'generator': 'a generator (stage 2)'}


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A model ready for `apply`.

  kind: 'ordering' | 'generator'; model: the linen module rebuilt from the
  saved config; params: its params tree; hyperplane: f32[D+1] for H, None
  for a generator; config: the saved config (dict); step: the step read;
  directory: the checkpoints directory read.
  """
  kind: str
  model: Any
  params: Any
  hyperplane: Any
  config: dict
  step: int
  directory: str


# Checkpoint paths: the forms listed in the module docstring.
resolve = saved_params.resolve


def saved_kind(config: dict) -> str | None:
  """'ordering' | 'generator' from a saved config (None when unknown)."""
  stage = config.get('stage')
  if stage in KINDS:
    return stage
  model = config.get('model') or {}
  if isinstance(model, dict) and model.get('name') == 'hypercut':
    return 'ordering'
  return None


def json_tuples(x):
  """JSON lists -> tuples (hashable linen fields), recursively."""
  if isinstance(x, (list, tuple)):
    return tuple(json_tuples(v) for v in x)
  if isinstance(x, dict):
    return {k: json_tuples(v) for k, v in x.items()}
  return x


def build_model(kind: str, config: dict, precision: str | None = None):
  """(model, init(key) -> state with the params/hyperplane shapes).

  The init functions are the trainer's, so shapes match what it saves.
  """
  model_cfg = config.get('model') or {}
  kwargs = json_tuples(dict(model_cfg.get('kwargs') or {}))
  precision = precision or config.get('precision') or 'float32'
  crop = int((config.get('input') or {}).get('crop') or 64)
  tx = optax.identity()
  if kind == 'ordering':
    model = ordering_lib.make_model(kwargs, precision)
    crop = max(crop, ordering_model.min_side(model.n_down))
    return model, ordering_lib.make_init(model, tx, crop)
  name = model_cfg.get('name')
  if not isinstance(name, str):
    raise ValueError(f'config.model.name={name!r} is not a generator name')
  model = generator_lib.make_model(name, kwargs, precision)
  data = config.get('data') or {}
  # Same rule as the trainer: data with guidance, or a model that needs it.
  with_guidance = data_lib.has_guidance(data) or name in models.NEEDS_GUIDANCE
  multiple = int(getattr(model, 'size_multiple', 1))
  crop = max(multiple, crop - crop % multiple)
  return model, generator_lib.make_init(model, tx, crop, with_guidance)


def _flat(tree) -> dict:
  return {jax.tree_util.keystr(k): v
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_shapes(path: str, saved, expected) -> None:
  saved_f, expected_f = _flat(saved), _flat(expected)
  missing = sorted(set(expected_f) - set(saved_f))
  unknown = sorted(set(saved_f) - set(expected_f))
  bad = sorted(f'{k} {tuple(saved_f[k].shape)} != {tuple(expected_f[k].shape)}'
               for k in set(saved_f) & set(expected_f)
               if tuple(saved_f[k].shape) != tuple(expected_f[k].shape))
  if missing or unknown or bad:
    parts = []
    for label, items in (('missing', missing), ('unexpected', unknown),
                         ('shape mismatch', bad)):
      if items:
        more = f' and {len(items) - 8} more' if len(items) > 8 else ''
        parts.append(f'{label}: {", ".join(items[:8])}{more}')
    raise ValueError(f'checkpoint {path}: parameters do not fit the model '
                     f'its config describes; {"; ".join(parts)}')


def load(path: str, *, expect: str | None = None, step: int | None = None,
         sharding=None, precision: str | None = None) -> Loaded:
  """Model + params (+ hyperplane) from a checkpoint (see module docstring).

  expect: 'ordering' | 'generator' | None; a checkpoint of the other kind
  raises ValueError naming both. step: a step to read (default: the pinned
  step of a step directory, else the latest). sharding: where the arrays go
  (default: the first device; pass a replicated NamedSharding for a mesh).
  precision: compute dtype of the rebuilt model (default: the saved one).
  A step that cannot be read or fails its checksums raises
  `checkpoint.CheckpointError` naming the step (no fallback to another).
  """
  if expect is not None and expect not in KINDS:
    raise ValueError(f'expect={expect!r}; known: {KINDS}')
  directory, pinned = resolve(path, expect)
  step = pinned if step is None else step
  try:
    config, step = ckpt_lib.read_config(directory, step)
  except FileNotFoundError:
    raise FileNotFoundError(f'checkpoint {path}: no complete checkpoint '
                            'step in it') from None
  except (KeyError, ValueError) as e:
    raise ValueError(f'checkpoint {path}: cannot read its config item '
                     f'({" ".join(str(e).split())[:200]})') from None
  kind = saved_kind(config)
  if kind is None:
    raise ValueError(f'checkpoint {path}: its config has no stage '
                     f'(stage={config.get("stage")!r}); not a hypercut_jax '
                     'checkpoint?')
  if expect is not None and kind != expect:
    name = (config.get('model') or {}).get('name')
    raise ValueError(f'checkpoint {path} holds {_WHAT[kind]} (model '
                     f'{name!r}); this needs {_WHAT[expect]}')
  model, init = build_model(kind, config, precision)
  expected = jax.eval_shape(init, jax.random.key(0))
  tree = saved_params.state_layout(directory, step)
  if tree is None or 'params' not in tree:
    raise ValueError(f'checkpoint {path}: step {step} has no params in its '
                     'state item')
  names = ['params'] + (['hyperplane'] if kind == 'ordering' else [])
  missing = [n for n in names if n not in tree]
  if missing:
    raise ValueError(f'checkpoint {path}: state of step {step} lacks '
                     f'{missing} (saved as {kind} by its config)')
  _check_shapes(path, tree['params'], expected.params)
  if kind == 'ordering':
    _check_shapes(path, {'hyperplane': tree['hyperplane']},
                  {'hyperplane': expected.hyperplane})
  out = saved_params.restore_entries(
      directory, step, {n: tree[n] for n in names}, sharding=sharding)
  return Loaded(kind=kind, model=model, params=out['params'],
                hyperplane=out.get('hyperplane'), config=config,
                step=int(step), directory=directory)


def load_ordering(path: str, **kw) -> Loaded:
  """`load(path, expect='ordering')`: H, its params and its hyperplane."""
  return load(path, expect='ordering', **kw)


def load_generator(path: str, **kw) -> Loaded:
  """`load(path, expect='generator')`: a generator and its params."""
  return load(path, expect='generator', **kw)


"""Config helpers shared by the loop and the stage modules.

Names and defaults (`STAGES`, `SHARED_FIELDS`, `BEST_MODES`, ...), durations
(`steps_of`), one stage's config out of a `stage='both'` config
(`stage_config`, `stage_workdirs`, `chained`), and the field checks that
name the field, its value and what is allowed (`field`, `choice`,
`validate_common`). The stage-specific checks live in the stage modules
(`train/ordering.py`, `train/generator.py`, `train/animation.py`).
"""
import contextlib
import os

import jax
import jax.numpy as jnp
import ml_collections

from hypercut_jax import data as data_lib
from hypercut_jax.train import evaluators
from hypercut_jax.train import optim as optim_lib

STAGES = ('ordering', 'generator', 'predictor', 'both')
PRECISIONS = ('float32', 'bfloat16')
BEST_MODES = {'hit': 'max', 'hit_first': 'max', 'con@2': 'max',
              'con@3': 'max', 'ppsnr': 'max', 'pssim': 'max', 'plpips': 'min',
              # guidance predictor (stage 'predictor', train/animation.py)
              'acc_rec': 'max', 'acc_sample': 'max', 'acc_best': 'max'}
# Shared fields; everything else is per stage (`config.ordering/generator`
# when stage == 'both').
SHARED_FIELDS = ('stage', 'seed', 'precision', 'sharding', 'data', 'keep',
                 'async_checkpoint', 'log_steps', 'prng_impl', 'resume',
                 'matmul_precision')
# config.prng_impl (optional; None = jax's default, threefry2x32): the PRNG
# of the init and train keys. 'rbg' compiles far faster on XLA:CPU.
PRNG_IMPLS = ('threefry2x32', 'rbg', 'unsafe_rbg')
# config.matmul_precision (optional; None = jax's default: TF32 / bf16
# passes for float32 convolutions and matmuls on recent GPUs and TPUs, exact
# float32 on CPU): the precision every conv and matmul of the stage is
# traced with (`matmul_precision_scope`). 'highest' = full float32, as the
# official PyTorch code computes (slower on GPU/TPU).
MATMUL_PRECISIONS = ('default', 'high', 'highest')


def matmul_precision_scope(precision):
  """Context for tracing under config.matmul_precision (None: no change)."""
  if precision is None:
    return contextlib.nullcontext()
  choice(precision, MATMUL_PRECISIONS, 'config.matmul_precision')
  return jax.default_matmul_precision(precision)


def compute_dtype(precision: str):
  """config.precision -> the models' compute dtype: 'float32' -> None (the
  module default), 'bfloat16' -> jnp.bfloat16."""
  return jnp.bfloat16 if precision == 'bfloat16' else None


def steps_of(what: str, cfg, steps_per_epoch: int):
  """`cfg.<what>_steps` or `cfg.<what>_epochs` in steps (None when unset).

  Epoch values may be fractional; they round to the nearest step (>= 1).
  A tuple/list value (e.g. `milestones_epochs`) converts element-wise.
  """
  s = cfg.get(f'{what}_steps') if hasattr(cfg, 'get') else None
  e = cfg.get(f'{what}_epochs') if hasattr(cfg, 'get') else None
  if s is not None and e is not None:
    raise ValueError(f'{what}_steps={s!r} and {what}_epochs={e!r} are both '
                     'set; set only one of them')
  if s is None and e is None:
    return None
  def convert(value, per):
    if isinstance(value, (list, tuple)):
      return tuple(convert(v, per) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f'{what}: expected a number, got {value!r}')
    if value < 0:
      raise ValueError(f'{what}: must be >= 0, got {value!r}')
    return int(value) if per is None else max(1, int(round(value * per)))
  return convert(s, None) if s is not None else convert(e, steps_per_epoch)


def stage_config(config, stage: str) -> ml_collections.ConfigDict:
  """The one-stage config of `stage` (shared fields + that stage's fields)."""
  if config.stage != 'both':
    if stage != config.stage:
      raise ValueError(f'config.stage={config.stage!r} has no {stage!r} stage')
    return ml_collections.ConfigDict(config.to_dict())
  if stage not in config:
    raise ValueError(f'config.stage=\'both\' needs a config.{stage} section')
  full = config.to_dict()
  out = {k: full[k] for k in SHARED_FIELDS if k in full}
  out.update(full[stage])
  out['stage'] = stage
  return ml_collections.ConfigDict(out)


def stage_workdirs(config, workdir: str) -> list[tuple[str, str]]:
  """[(stage, stage workdir)] in the order they run.

  Stage 'both': ordering then generator; with a `config.predictor` section
  (Animation-from-Blur) ordering, predictor, then the generator.
  """
  if config.stage == 'both':
    stages = ['ordering'] + (['predictor'] if 'predictor' in config else [])
    return [(s, os.path.join(workdir, s)) for s in stages + ['generator']]
  return [(config.stage, workdir)]


def field(cfg, path: str, types, *, positive=False, nonneg=False,
           optional=False, prefix='config'):
  """cfg[path] checked against `types`; ValueError names the field."""
  node = cfg
  for part in path.split('.'):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      if optional:
        return None
      raise ValueError(f'{prefix}.{path} is missing')
    node = node[part]
  value = node
  if value is None and optional:
    return None
  ok = isinstance(value, types) and not (isinstance(value, bool)
                                         and bool not in as_tuple(types))
  if not ok:
    names = '/'.join(t.__name__ for t in as_tuple(types))
    raise ValueError(f'{prefix}.{path}={value!r} has type '
                     f'{type(value).__name__}; expected {names}')
  if positive and not value > 0:
    raise ValueError(f'{prefix}.{path}={value!r}; must be > 0')
  if nonneg and not value >= 0:
    raise ValueError(f'{prefix}.{path}={value!r}; must be >= 0')
  return value


def as_tuple(types):
  return types if isinstance(types, tuple) else (types,)


def choice(value, choices, name: str):
  """ValueError naming `name` unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(f'{name}={value!r}; known: {sorted(choices)}')


def eval_crop_field(cfg, prefix) -> None:
  """input.eval_crop: None, a positive int or a positive (H, W) pair."""
  value = cfg.input.get('eval_crop') if 'input' in cfg else None
  if value is None:
    return
  pair = (value, value) if isinstance(value, int) else value
  if (isinstance(value, bool) or not isinstance(pair, (tuple, list))
      or len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                               or v < 1 for v in pair)):
    raise ValueError(f'{prefix}.input.eval_crop={value!r}; expected None, a '
                     'positive int or a positive (H, W) pair')


def validate_common(cfg, *, prefix: str, devices=None) -> None:
  """The checks every stage shares: run, data, input, optimiser, durations.

  Stage modules check the rest (`<module>.validate`).
  """
  field(cfg, 'seed', int, nonneg=True)
  choice(field(cfg, 'precision', str), PRECISIONS, 'config.precision')
  field(cfg, 'sharding.fsdp', bool)
  field(cfg, 'keep', int, positive=True)
  field(cfg, 'log_steps', int, positive=True)
  field(cfg, 'async_checkpoint', bool)
  # Data.
  name = field(cfg, 'data.name', str)
  choice(name, data_lib.NAMES, 'config.data.name')
  if name != 'synthetic':
    data_dir = field(cfg, 'data.data_dir', str)
    if not os.path.isdir(os.path.expanduser(data_dir)):
      raise FileNotFoundError(
          f'config.data.data_dir={data_dir!r} does not exist (prepared TFDS '
          f'data for {name!r}; see datasets/{name}/README.md)')
  # Input.
  n_dev = len(devices) if devices is not None else jax.device_count()
  for name in ('batch_size', 'eval_batch_size'):
    bs = field(cfg, f'input.{name}', int, positive=True, prefix=prefix)
    if bs % n_dev:
      raise ValueError(
          f'{prefix}.input.{name}={bs} is not divisible by the {n_dev} '
          f'data-parallel devices; use a multiple of {n_dev}')
  field(cfg, 'input.crop', int, positive=True, prefix=prefix)
  eval_crop_field(cfg, prefix)
  field(cfg, 'input.worker_count', int, nonneg=True, prefix=prefix)
  # Optimiser and durations.
  choice(field(cfg, 'optim.name', str, prefix=prefix), optim_lib.OPTIMIZERS,
          f'{prefix}.optim.name')
  field(cfg, 'optim.lr', (int, float), positive=True, prefix=prefix)
  choice(cfg.optim.get('schedule', 'constant'), optim_lib.SCHEDULES,
          f'{prefix}.optim.schedule')
  field(cfg, 'optim.warmup_steps', int, nonneg=True, optional=True,
         prefix=prefix)
  for what, node in (('total', cfg), ('eval', cfg), ('ckpt', cfg),
                     ('decay_every', cfg.optim), ('milestones', cfg.optim)):
    try:
      steps_of(what, node, 1)
    except ValueError as e:
      raise ValueError(f'{prefix}: {e}') from None
  if steps_of('total', cfg, 1) is None:
    raise ValueError(f'{prefix}.total_steps or {prefix}.total_epochs must '
                     'be set')
  field(cfg, 'best_metric', str, prefix=prefix)
  field(cfg, 'model.name', str, prefix=prefix)
  evaluators.check_specs(cfg.get('eval', {}).get('extra'), prefix)


def chained(config, stage: str, stage_dirs: dict) -> ml_collections.ConfigDict:
  """`stage_config`, with stage='both' wiring the earlier stages' workdirs
  into the generator (the frozen H, and the predictor for P_n)."""
  cfg = stage_config(config, stage)
  if config.stage == 'both' and stage == 'generator':
    cfg.hypercut.checkpoint = stage_dirs['ordering']
    if 'predictor' in stage_dirs:
      cfg.eval.predictor_checkpoint = stage_dirs['predictor']
  return cfg


def override(cfg) -> bool:
  """config.resume == 'override': continue under a changed config."""
  return cfg.get('resume', 'check') == 'override'

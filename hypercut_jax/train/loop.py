"""The training loop: `run(config, workdir)` for stage 1, stage 2 or both.

Read top to bottom in stages (big_vision train.py style):
  validate -> mesh -> input -> model/optimiser -> state (restored or born
  sharded) -> jitted step -> loop (log, eval, checkpoint, preemption) -> end.

Durations: every `<what>_steps | <what>_epochs` pair of the config resolves
to an integer number of steps in `steps_of` (both set: ValueError).
Randomness: one root key from `config.seed`, split once into (init, train);
steps fold `state.step` into the train key, so a resumed run draws the same
numbers without saving any RNG. The data order is grain's, restored from the
checkpoint's iterator state.

`config.stage = 'both'`: stage 1 into `workdir/ordering`, stage 2 into
`workdir/generator` with H frozen from `workdir/ordering`, then the results
table in `workdir/results.md`. With a `config.predictor` section
(Animation-from-Blur) the guidance predictor trains in between, into
`workdir/predictor`, and the zhong2022 generator's P_n evaluation uses it.
Stage 'predictor' alone and the zhong2022 generator are built in
`train/animation.py`. Rerunning the same command resumes whichever
stage was interrupted; a finished stage is only re-evaluated.
"""
import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from typing import Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import fingerprint as fingerprint_lib
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import sharding as sharding_lib

STAGES = ('ordering', 'generator', 'predictor', 'both')
PRECISIONS = ('float32', 'bfloat16')
DATASETS = ('synthetic', 'rb2v', 'reds', 'baist')
BEST_MODES = {'hit': 'max', 'hit_first': 'max', 'con@2': 'max',
              'con@3': 'max', 'ppsnr': 'max', 'pssim': 'max', 'plpips': 'min',
              # guidance predictor (stage 'predictor', train/animation.py)
              'acc_rec': 'max', 'acc_sample': 'max', 'acc_best': 'max'}
# Shared fields; everything else is per stage (`config.ordering/generator`
# when stage == 'both').
SHARED_FIELDS = ('stage', 'seed', 'precision', 'sharding', 'data', 'keep',
                 'async_checkpoint', 'log_steps', 'prng_impl', 'resume')
# config.prng_impl (optional; None = jax's default, threefry2x32): the PRNG
# of the init and train keys. 'rbg' compiles far faster on XLA:CPU.
PRNG_IMPLS = ('threefry2x32', 'rbg', 'unsafe_rbg')


# =============================================================================
# Config helpers.
# =============================================================================
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


def _field(cfg, path: str, types, *, positive=False, nonneg=False,
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
                                         and bool not in _as_tuple(types))
  if not ok:
    names = '/'.join(t.__name__ for t in _as_tuple(types))
    raise ValueError(f'{prefix}.{path}={value!r} has type '
                     f'{type(value).__name__}; expected {names}')
  if positive and not value > 0:
    raise ValueError(f'{prefix}.{path}={value!r}; must be > 0')
  if nonneg and not value >= 0:
    raise ValueError(f'{prefix}.{path}={value!r}; must be >= 0')
  return value


def _as_tuple(types):
  return types if isinstance(types, tuple) else (types,)


def _choice(value, choices, field):
  if value not in choices:
    raise ValueError(f'{field}={value!r}; known: {sorted(choices)}')


def validate(config, *, devices=None) -> None:
  """Checks the whole config before anything is built or compiled.

  Raises ValueError / FileNotFoundError naming the field, its value and
  what is allowed.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f'config must be an ml_collections.ConfigDict, got '
                     f'{type(config).__name__}')
  _choice(_field(config, 'stage', str), STAGES, 'config.stage')
  if config.get('prng_impl') is not None:
    _choice(config.prng_impl, PRNG_IMPLS, 'config.prng_impl')
  _choice(config.get('resume', 'check'), fingerprint_lib.RESUME_MODES,
          'config.resume')
  stages = [s for s, _ in stage_workdirs(config, '')]
  for stage in stages:
    prefix = f'config.{stage}' if config.stage == 'both' else 'config'
    _validate_stage(stage_config(config, stage), stage, prefix=prefix,
                    devices=devices, auto_h=config.stage == 'both')


def _eval_crop_field(cfg, prefix) -> None:
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


def _validate_stage(cfg, stage, *, prefix, devices, auto_h) -> None:
  from hypercut_jax import losses  # pylint: disable=g-import-not-at-top
  _field(cfg, 'seed', int, nonneg=True)
  _choice(_field(cfg, 'precision', str), PRECISIONS, 'config.precision')
  _field(cfg, 'sharding.fsdp', bool)
  _field(cfg, 'keep', int, positive=True)
  _field(cfg, 'log_steps', int, positive=True)
  _field(cfg, 'async_checkpoint', bool)
  # Data.
  name = _field(cfg, 'data.name', str)
  _choice(name, DATASETS, 'config.data.name')
  if name != 'synthetic':
    data_dir = _field(cfg, 'data.data_dir', str)
    if not os.path.isdir(os.path.expanduser(data_dir)):
      raise FileNotFoundError(
          f'config.data.data_dir={data_dir!r} does not exist (prepared TFDS '
          f'data for {name!r}; see datasets/{name}/README.md)')
  # Input.
  n_dev = len(devices) if devices is not None else jax.device_count()
  for field in ('batch_size', 'eval_batch_size'):
    bs = _field(cfg, f'input.{field}', int, positive=True, prefix=prefix)
    if bs % n_dev:
      raise ValueError(
          f'{prefix}.input.{field}={bs} is not divisible by the {n_dev} '
          f'data-parallel devices; use a multiple of {n_dev}')
  crop = _field(cfg, 'input.crop', int, positive=True, prefix=prefix)
  _eval_crop_field(cfg, prefix)
  _field(cfg, 'input.worker_count', int, nonneg=True, prefix=prefix)
  # Optimiser and durations.
  _choice(_field(cfg, 'optim.name', str, prefix=prefix), optim_lib.OPTIMIZERS,
          f'{prefix}.optim.name')
  _field(cfg, 'optim.lr', (int, float), positive=True, prefix=prefix)
  _choice(cfg.optim.get('schedule', 'constant'), optim_lib.SCHEDULES,
          f'{prefix}.optim.schedule')
  _field(cfg, 'optim.warmup_steps', int, nonneg=True, optional=True,
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
  best = _field(cfg, 'best_metric', str, prefix=prefix)
  # Stage-specific.
  model_name = _field(cfg, 'model.name', str, prefix=prefix)
  if stage == 'ordering':
    from hypercut_jax.models import ordering as ordering_model  # pylint: disable=g-import-not-at-top
    from hypercut_jax.train import ordering as ordering_lib  # pylint: disable=g-import-not-at-top
    _choice(model_name, (ordering_lib.MODEL_NAME,), f'{prefix}.model.name')
    kwargs = dict(cfg.model.get('kwargs', None) or {})
    unknown = sorted(set(kwargs) - set(ordering_lib.MODEL_FIELDS))
    if unknown:
      raise ValueError(f'{prefix}.model.kwargs has unknown OrderingNet fields '
                       f'{unknown}; known: {list(ordering_lib.MODEL_FIELDS)}')
    _choice(_field(cfg, 'loss.form', str, prefix=prefix), losses.FORMS,
            f'{prefix}.loss.form')
    lo = ordering_model.min_side(kwargs.get('n_down', 5))
    if crop < lo:
      raise ValueError(f'{prefix}.input.crop={crop}; H needs >= {lo} px')
    _choice(best, ('hit', 'hit_first', 'con@2', 'con@3'),
            f'{prefix}.best_metric')
  elif stage == 'predictor':
    from hypercut_jax.train import animation  # pylint: disable=g-import-not-at-top
    animation.validate_predictor(cfg, prefix)
  else:
    from hypercut_jax import models  # pylint: disable=g-import-not-at-top
    from hypercut_jax.train import generator as generator_lib  # pylint: disable=g-import-not-at-top
    _choice(model_name, tuple(models.REGISTRY), f'{prefix}.model.name')
    multiple = int(getattr(models.REGISTRY[model_name], 'size_multiple', 1))
    if crop % multiple:
      raise ValueError(f'{prefix}.input.crop={crop} is not a multiple of '
                       f'{model_name}.size_multiple={multiple}')
    _choice(_field(cfg, 'loss.deblur', str, prefix=prefix),
            losses.DEBLUR_LOSSES, f'{prefix}.loss.deblur')
    _field(cfg, 'loss.flow_weight', (int, float), nonneg=True, prefix=prefix)
    _choice(cfg.loss.get('space', 'official'), generator_lib.LOSS_SPACES,
            f'{prefix}.loss.space')
    _field(cfg, 'hypercut.alpha', (int, float), nonneg=True, prefix=prefix)
    _choice(_field(cfg, 'hypercut.reg_form', str, prefix=prefix),
            losses.FORMS, f'{prefix}.hypercut.reg_form')
    path = _field(cfg, 'hypercut.checkpoint', str, optional=True,
                  prefix=prefix)
    if _field(cfg, 'hypercut.order_targets', bool, optional=True,
              prefix=prefix):
      if path is None and not auto_h:
        raise ValueError(f'{prefix}.hypercut.order_targets=True needs '
                         f'{prefix}.hypercut.checkpoint (the frozen H that '
                         'orders the targets)')
      if model_name == 'zhong2022':
        raise ValueError(f'{prefix}.hypercut.order_targets=True is not '
                         'supported for zhong2022 (its motion guidance '
                         'encodes the stored order)')
    if path is not None and not auto_h and not os.path.isdir(path):
      raise FileNotFoundError(
          f'{prefix}.hypercut.checkpoint={path!r} does not exist (a stage-1 '
          'workdir or its checkpoints/ directory)')
    _choice(best, tuple(k for k in BEST_MODES if k.startswith('p')),
            f'{prefix}.best_metric')
    _field(cfg, 'eval.lpips', bool, prefix=prefix)
    # Middle frame: model kwargs, centre checkpoint, evaluation mode.
    try:
      model = generator_lib.make_model(
          model_name, cfg.model.get('kwargs', None), cfg.precision)
    except ValueError as e:
      raise ValueError(f'{prefix}.model.kwargs: {e}') from None
    centre = _field(cfg, 'model.centre_checkpoint', str, optional=True,
                    prefix=prefix)
    if centre is not None:
      if not generator_lib.has_middle_net(model):
        raise ValueError(
            f'{prefix}.model.centre_checkpoint={centre!r} needs a model with '
            f'a middle-frame network; {model_name} with model.kwargs '
            f'{dict(cfg.model.get("kwargs", None) or {})} has none')
      if not os.path.isdir(os.path.expanduser(centre)):
        raise FileNotFoundError(
            f'{prefix}.model.centre_checkpoint={centre!r} does not exist (a '
            'stage-2 workdir of a jin2018 run)')
    middle = _field(cfg, 'eval.middle', str, optional=True, prefix=prefix)
    try:
      generator_lib.resolve_eval_middle(model, middle, centre)
    except ValueError as e:
      raise ValueError(str(e).replace('config.', f'{prefix}.', 1)) from None
    if model_name == 'zhong2022':
      from hypercut_jax.train import animation  # pylint: disable=g-import-not-at-top
      animation.validate_decomposer(cfg, prefix, chained=auto_h)


# =============================================================================
# Stage parts: what differs between the ordering and the generator stage.
# =============================================================================
@dataclasses.dataclass
class StageParts:
  """init(key) -> state; step(state, batch, key, *extra) -> (state, metrics);
  extra: frozen arrays after the key (H for stage 2), extra_shardings theirs;
  evaluate(state, step) -> (metrics dict, examples dict or None)."""
  init: Callable
  step: Callable
  extra: tuple
  extra_shardings: tuple
  make_evaluate: Callable
  table_stage: str


def _ordering_parts(cfg, tx, schedule, mesh) -> StageParts:
  from hypercut_jax.train import evaluators  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import ordering as ordering_lib  # pylint: disable=g-import-not-at-top
  model = ordering_lib.make_model(cfg.model.get('kwargs', None), cfg.precision)
  score_fn = ordering_lib.make_score_fn(model)

  def make_evaluate(batches_fn):
    evaluator = evaluators.OrderingEvaluator(
        batches_fn, score_fn, data_sharding=sharding_lib.batch_sharding(mesh))
    def evaluate(state):
      return evaluator.run(state.params, state.hyperplane), None
    return evaluate

  return StageParts(
      init=ordering_lib.make_init(model, tx, cfg.input.crop),
      step=ordering_lib.make_train_step(model, tx, loss_form=cfg.loss.form,
                                        schedule=schedule),
      extra=(), extra_shardings=(), make_evaluate=make_evaluate,
      table_stage='ordering')


def _generator_parts(cfg, tx, schedule, mesh) -> StageParts:
  from hypercut_jax.models import ordering as ordering_model  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import evaluators  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import generator as generator_lib  # pylint: disable=g-import-not-at-top
  model = generator_lib.make_model(cfg.model.name, cfg.model.get('kwargs'),
                                   cfg.precision)
  repl = sharding_lib.replicated(mesh)
  # Middle frame (Purohit): trained centre net, evaluation mode.
  centre_dir = cfg.model.get('centre_checkpoint')
  centre = None
  if centre_dir:
    centre, centre_step = generator_lib.load_centre_checkpoint(
        os.path.expanduser(centre_dir), model, sharding=repl)
    logging.info('Centre net (middle-frame estimate) from the jin2018 run '
                 '%s, step %d', centre_dir, centre_step)
  eval_middle = generator_lib.resolve_eval_middle(
      model, cfg.eval.get('middle'), centre_dir)
  if eval_middle == 'estimate' and not centre_dir:
    logging.warning('eval.middle=\'estimate\' without '
                    'model.centre_checkpoint: the centre net is untrained '
                    'unless the state was restored with trained weights')
  middle_note = {'gt': 'the ground-truth middle frame',
                 'estimate': 'the centre net\'s middle-frame estimate'
                 }.get(eval_middle)
  if middle_note:
    logging.info('[generator] evaluation uses %s (eval.middle=%r)',
                 middle_note, eval_middle)
  h_dir = cfg.hypercut.get('checkpoint')
  h_model = h_params = hyperplane = None
  if h_dir:
    h_model, h_params, hyperplane, h_step = generator_lib.load_hypercut(
        h_dir, mesh, cfg.precision)
    logging.info('Frozen H from %s (step %d), alpha=%g', h_dir, h_step,
                 cfg.hypercut.alpha)
  elif cfg.hypercut.alpha:
    logging.info('No config.hypercut.checkpoint: baseline without R_hyp.')
  if h_model is not None and cfg.hypercut.get('order_targets'):
    logging.info('hypercut.order_targets: the deblur loss sees each target '
                 'sequence in H\'s order')
  batch_sh = sharding_lib.batch_sharding(mesh)
  predict = jax.jit(generator_lib.make_predict_fn(model),
                    out_shardings=batch_sh)

  score_fn = None
  if h_model is not None:
    def score_fn(frames):
      return ordering_model.pair_scores(h_model, h_params, hyperplane, frames)

  if cfg.model.name == 'zhong2022':   # Animation-from-Blur: train/animation.py
    from hypercut_jax.train import animation  # pylint: disable=g-import-not-at-top
    return animation.decomposer_parts(
        cfg, tx, schedule, mesh, model=model,
        h=(h_model, h_params, hyperplane), score_fn=score_fn)

  def predict_fn(params, batch):
    blur = jax.make_array_from_process_local_data(batch_sh,
                                                  np.asarray(batch['blur']))
    if eval_middle != 'gt':
      return predict(params, blur)
    middle = jax.make_array_from_process_local_data(
        batch_sh, np.asarray(batch['sharp'])[:, generator_lib.MIDDLE])
    return predict(params, blur, middle)

  def make_evaluate(batches_fn):
    evaluator = evaluators.GeneratorEvaluator(
        batches_fn, predict_fn, score_fn=score_fn, lpips=cfg.eval.lpips,
        num_examples_to_keep=cfg.eval.get('num_examples', 4),
        data_sharding=batch_sh)
    def evaluate(state):
      values, examples = evaluator.run(state.params)
      if middle_note:  # logged with every evaluation: 1 = ground truth
        values = {**values, 'middle_gt': float(eval_middle == 'gt')}
        logging.info('[generator] evaluated with %s', middle_note)
      return values, examples
    return evaluate

  with_guidance = cfg.data.name == 'baist' or cfg.data.get('guidance') is True
  step = generator_lib.make_train_step(
      model, tx, loss_name=cfg.loss.deblur,
      flow_weight=float(cfg.loss.get('flow_weight', 0.0)), h_model=h_model,
      alpha=float(cfg.hypercut.alpha), reg_form=cfg.hypercut.reg_form,
      order_targets=bool(cfg.hypercut.get('order_targets')),
      space=cfg.loss.get('space', 'official'), schedule=schedule)
  if h_model is not None:
    extra = (h_params, hyperplane)
    extra_sh = (jax.tree.map(lambda _: repl, h_params), repl)
  else:
    extra, extra_sh = (None, None), (None, None)
  return StageParts(
      init=generator_lib.make_init(model, tx, cfg.input.crop, with_guidance,
                                   centre=centre),
      step=step, extra=extra, extra_shardings=extra_sh,
      make_evaluate=make_evaluate, table_stage='generator')


# =============================================================================
# Input.
# =============================================================================
def _sources(cfg):
  # pylint: disable=g-import-not-at-top
  from hypercut_jax import data
  from hypercut_jax.data import pipeline
  # pylint: enable=g-import-not-at-top
  train = data.get_source(cfg.data, 'train')
  test = data.get_source(cfg.data, 'test')
  limit = cfg.eval.get('max_examples')
  if limit is not None:
    test = pipeline.Prefix(test, limit)
  if len(train) < 1 or len(test) < 1:
    raise ValueError(f'config.data={cfg.data.name!r} gives {len(train)} train '
                     f'and {len(test)} test examples; need >= 1 each')
  _check_crops(cfg, train, test)
  return train, test


def _check_crops(cfg, train, test) -> None:
  """input.crop / input.eval_crop fit the records (read from record 0)."""
  for field, source in (('crop', train), ('eval_crop', test)):
    crop = cfg.input.get(field)
    if crop is None:
      continue
    ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    h, w = np.shape(source[0]['blur'])[:2]
    if ch > h or cw > w:
      raise ValueError(
          f'input.{field}={crop!r} ({cfg.stage} stage) is larger than the '
          f'{cfg.data.name!r} records ({h}x{w}); use a crop of at most '
          f'{min(h, w)}')


def _train_iterator(cfg, source):
  from hypercut_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  per_process = cfg.input.batch_size // jax.process_count()
  augment = cfg.input.get('augment')
  kwargs = dict(batch_size=per_process, crop=cfg.input.crop, seed=cfg.seed,
                worker_count=cfg.input.get('worker_count', 0))
  if augment:
    kwargs['augment'] = augment.to_dict() if hasattr(augment, 'to_dict') else dict(augment)
  return pipeline.make_train_iterator(source, **kwargs)


def _eval_batches_fn(cfg, source):
  from hypercut_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  per_process = cfg.input.eval_batch_size // jax.process_count()
  crop = cfg.input.get('eval_crop')
  return lambda: pipeline.make_eval_batches(source, batch_size=per_process,
                                            crop=crop)


# =============================================================================
# Preemption.
# =============================================================================
@contextlib.contextmanager
def _sigterm_flag():
  """Yields an Event set by SIGTERM (the handler does nothing else)."""
  flag = threading.Event()
  if (threading.current_thread() is not threading.main_thread()
      or jax.process_count() > 1):
    # Several processes: jax's preemption service (started by
    # jax.distributed.initialize) owns SIGTERM and picks the stop step.
    yield flag
    return
  previous = signal.getsignal(signal.SIGTERM)
  signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def _should_stop(stop_flag, step: int) -> bool:
  """Preempted? The same answer on every process, at the same step.

  One process: our SIGTERM flag. Several: a SIGTERM to any of them reaches
  jax's preemption service, which picks one step for all (each process
  acting on its own signal deadlocks: one saves while the others run the
  next step's collectives).
  """
  if jax.process_count() == 1:
    return stop_flag.is_set()
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.reached_preemption_sync_point(step)


# =============================================================================
# One stage.
# =============================================================================
@dataclasses.dataclass
class StageResult:
  metrics: dict
  step: int
  preempted: bool
  table: str


def _paper_row(cfg, table_stage) -> dict:
  """markdown_table's `dataset=` for the paper's reference row, if any."""
  if table_stage != 'ordering' or cfg.data.name == 'synthetic':
    return {}
  if cfg.data.name == 'rb2v':
    return {'dataset': cfg.data.get('subset') or 'street'}
  return {'dataset': cfg.data.name}


def _mean_metrics(pending) -> dict:
  host = jax.device_get([m for _, m in pending])
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}, host


def _check_finite(pending, host, mngr, ckpt_dir) -> None:
  for (step, _), values in zip(pending, host):
    loss = float(values['train/loss'])
    if not math.isfinite(loss):
      raise FloatingPointError(
          f'train/loss={loss} at step {step}: stopping. The last good '
          f'checkpoint is step {mngr.latest_step()} in {ckpt_dir} (the '
          'non-finite state was not saved).')


def train_stage(cfg, workdir: str, *, devices=None, stop_flag=None
                ) -> StageResult:
  """Trains one stage into `workdir`, resuming from its checkpoints."""
  from hypercut_jax.train import report  # pylint: disable=g-import-not-at-top
  stage = cfg.stage
  stop_flag = stop_flag or threading.Event()
  # Nothing is written before the data and the workdir's config are checked.
  train_src, test_src = _sources(cfg)
  record = fingerprint_lib.check(cfg, workdir, override=_override(cfg))
  os.makedirs(workdir, exist_ok=True)

  # ---------------------------------------------------------------- mesh ---
  mesh = sharding_lib.make_mesh(devices)
  sharding_lib.check_batch_size(cfg.input.batch_size, mesh, 'input.batch_size')
  batch_sh = sharding_lib.batch_sharding(mesh)
  repl = sharding_lib.replicated(mesh)

  # --------------------------------------------------------------- input ---
  steps_per_epoch = max(1, len(train_src) // cfg.input.batch_size)
  total = steps_of('total', cfg, steps_per_epoch)
  eval_every = steps_of('eval', cfg, steps_per_epoch)
  ckpt_every = steps_of('ckpt', cfg, steps_per_epoch)
  log_every = int(cfg.log_steps)
  eval_batches = _eval_batches_fn(cfg, test_src)

  # ------------------------------------------------------ model + optim ---
  schedule = optim_lib.make_schedule(
      cfg.optim, steps_of=lambda w: steps_of(w, cfg.optim, steps_per_epoch),
      total_steps=total)
  tx = optim_lib.make_optimizer(cfg.optim, schedule)
  if stage == 'predictor':
    from hypercut_jax.train import animation  # pylint: disable=g-import-not-at-top
    parts = animation.predictor_parts(cfg, schedule, mesh,
                                      steps_per_epoch=steps_per_epoch,
                                      total_steps=total)
  else:
    parts = (_ordering_parts if stage == 'ordering' else _generator_parts)(
        cfg, tx, schedule, mesh)

  # --------------------------------------------------------------- state ---
  init_key, train_key = jax.random.split(
      jax.random.key(cfg.seed, impl=cfg.get('prng_impl')))
  abstract = jax.eval_shape(parts.init, init_key)
  state_sh = sharding_lib.tree_shardings(abstract, mesh,
                                         fsdp=cfg.sharding.fsdp)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  best = cfg.best_metric
  # The newest step that verifies (newer damaged ones are moved aside to
  # checkpoints.corrupt/, one warning line each), before the manager opens.
  restored = ckpt_lib.restore_latest_verified(
      ckpt_dir, sharding_lib.with_shardings(abstract, state_sh),
      data_iter_fn=lambda: _train_iterator(cfg, train_src),
      log=lambda line: logging.warning('[%s] %s', stage, line))
  mngr = ckpt_lib.make_manager(ckpt_dir, keep=cfg.keep,
                               best_metric=f'eval/{best}',
                               best_mode=BEST_MODES[best],
                               async_save=cfg.async_checkpoint)
  if restored is not None:
    state, train_it, latest = restored
    logging.info('[%s] resumed from step %d in %s', stage, latest, ckpt_dir)
  else:
    train_it = _train_iterator(cfg, train_src)
    state = jax.jit(parts.init, out_shardings=state_sh)(init_key)
  train_key = jax.jit(lambda k: k, out_shardings=repl)(train_key)  # multi-host safe
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  logging.info('[%s] %d params, %d steps (%d per epoch), %d devices', stage,
               n_params, total, steps_per_epoch, mesh.size)

  # ---------------------------------------------------------------- step ---
  step_fn = jax.jit(
      parts.step,
      in_shardings=(state_sh, batch_sh, repl, *parts.extra_shardings),
      out_shardings=(state_sh, repl), donate_argnums=0)
  evaluate = parts.make_evaluate(eval_batches)

  # ---------------------------------------------------------------- loop ---
  writer = report.MetricWriter(workdir)
  start = int(jax.device_get(state.step))
  dropped = writer.rewind(start, drop_eval_at_step=start >= total)
  if dropped:
    logging.info('[%s] metrics.jsonl: dropped %d row(s) past step %d',
                 stage, dropped, start)
  writer.write_config(cfg)
  if jax.process_index() == 0:
    fingerprint_lib.write(workdir, record)
  metrics, table, preempted, step = {}, '', False, start
  last_eval_step = None

  def run_eval(step):
    nonlocal metrics, table, last_eval_step
    t0 = time.time()
    values, examples = evaluate(state)
    metrics = {f'eval/{k}': float(v) for k, v in values.items()}
    metrics['eval/seconds'] = time.time() - t0
    writer.write(step, metrics)
    table = report.markdown_table(metrics, parts.table_stage,
                                  **_paper_row(cfg, parts.table_stage))
    bar.write(f'[{stage}] step {step} eval:\n{table}')
    if examples and jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, 'examples'), exist_ok=True)
      report.save_examples(
          os.path.join(workdir, 'examples', f'step_{step:07d}'),
          examples['blur'], examples['pred'], examples['gt'])
    last_eval_step = step
    return metrics

  bar = report.ProgressBar(total, initial=start, desc=stage)
  pending = []
  t_last = time.time()
  try:
    for step in range(start + 1, total + 1):
      host_batch = next(train_it)
      with jax.transfer_guard('disallow'):
        batch = sharding_lib.put_batch(host_batch, batch_sh)
        state, step_metrics = step_fn(state, batch, train_key, *parts.extra)
      pending.append((step, step_metrics))
      stop = _should_stop(stop_flag, step)
      is_end = step == total
      is_eval = is_end or bool(eval_every and step % eval_every == 0)
      is_ckpt = (is_end or is_eval or stop
                 or bool(ckpt_every and step % ckpt_every == 0))
      if step % log_every == 0 or is_ckpt:
        means, host = _mean_metrics(pending)
        _check_finite(pending, host, mngr, ckpt_dir)
        now = time.time()
        means['train/steps_per_sec'] = len(pending) / max(now - t_last, 1e-9)
        t_last = now
        writer.write(step, means)
        bar.update(step, means)
        pending = []
      eval_metrics = run_eval(step) if is_eval else None
      if is_ckpt:
        ckpt_lib.save(mngr, step, state, data_iter=train_it, config=cfg,
                      metrics=eval_metrics)
        t_last = time.time()
      if stop and not is_end:
        mngr.wait_until_finished()
        preempted = True
        bar.write(f'[{stage}] preempted: saved step {step}; rerun the same '
                  'command to resume.')
        break
    if step_fn._cache_size() > 1:  # pylint: disable=protected-access
      logging.warning('[%s] the train step compiled %d times',
                      stage, step_fn._cache_size())  # pylint: disable=protected-access
    if not preempted and last_eval_step != step:
      run_eval(step)  # finished earlier: evaluate the final state again
  finally:
    bar.close()
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return StageResult(metrics=metrics, step=step, preempted=preempted,
                     table=table)


# =============================================================================
# Entry point.
# =============================================================================
def run(config, workdir: str, *, devices=None) -> dict:
  """Validates `config`, trains its stage(s) in `workdir`, writes results.

  Returns {stage: StageResult}. For stage 'both' (and single stages) the
  final markdown table goes to stdout and `workdir/results.md`.
  """
  validate(config, devices=devices)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  stage_dirs = dict(stage_workdirs(config, workdir))
  # Every stage's data and recorded config first: a drift in a later stage
  # stops the run before an earlier one is touched.
  for stage, stage_dir in stage_dirs.items():
    cfg = _chained(config, stage, stage_dirs)
    _sources(cfg)
    fingerprint_lib.check(cfg, stage_dir, override=_override(cfg))
  results = {}
  with _sigterm_flag() as stop_flag:
    for stage, stage_dir in stage_dirs.items():
      cfg = _chained(config, stage, stage_dirs)
      result = train_stage(cfg, stage_dir, devices=devices,
                           stop_flag=stop_flag)
      results[stage] = result
      if result.preempted:
        return results
  text = _results_markdown(config, results)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
      f.write(text + '\n')
    print(text, flush=True)
  return results


def _chained(config, stage: str, stage_dirs: dict) -> ml_collections.ConfigDict:
  """`stage_config`, with stage='both' wiring the earlier stages' workdirs
  into the generator (the frozen H, and the predictor for P_n)."""
  cfg = stage_config(config, stage)
  if config.stage == 'both' and stage == 'generator':
    cfg.hypercut.checkpoint = stage_dirs['ordering']
    if 'predictor' in stage_dirs:
      cfg.eval.predictor_checkpoint = stage_dirs['predictor']
  return cfg


def _override(cfg) -> bool:
  """config.resume == 'override': continue under a changed config."""
  return cfg.get('resume', 'check') == 'override'


def _results_markdown(config, results) -> str:
  """The final results.md: each stage's table; for generators, the verdict
  line against "copy the blur" under the table (`report.blur_verdict`)."""
  from hypercut_jax.train import report  # pylint: disable=g-import-not-at-top
  parts = [f'# Results ({config.data.name})']
  if 'ordering' in results:
    r = results['ordering']
    parts.append(f'## Ordering network H (test split, step {r.step})\n\n'
                 f'{r.table}')
  if 'predictor' in results:
    r = results['predictor']
    parts.append('## Guidance predictor (BicycleGAN, test split, step '
                 f'{r.step})\n\n{r.table}')
  if 'generator' in results:
    r = results['generator']
    cfg = stage_config(config, 'generator')
    with_h = bool(cfg.hypercut.alpha) and (
        config.stage == 'both' or cfg.hypercut.get('checkpoint'))
    name = cfg.model.name + (f' + HyperCUT (alpha={cfg.hypercut.alpha:g})'
                             if with_h else ' (baseline)')
    parts.append(f'## Generator {name} (test split, step {r.step})\n\n'
                 f'{r.table}')
    verdict = report.blur_verdict(r.metrics)
    if verdict:
      parts.append(verdict)
  return '\n\n'.join(parts)

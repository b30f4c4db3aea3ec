"""Stage 2: train a generator (blur -> 7 frames), optionally with HyperCUT.

Loss = L_D + alpha * R_hyp:
  L_D    `losses.deblur_loss(name, frames, sharp)`, or for models that return
         a 'pyramid' (Purohit) `losses.multiscale_deblur_loss(name, pyramid,
         sharp)` + `flow_weight * losses.flow_smoothness(flows)`; the
         frames, pyramid and targets enter the deblur loss mapped into
         `config.loss.space` (`loss_space`): 'official' (default) = the
         ImageNet-normalised tensors the official trainer's losses see
         (OpenCV BGR frames, `(x - mean_c) / std_c` with the RGB-order
         statistics applied to B, G, R as is), 'unit' = the [0,1] frames.
         The flow penalty (pixels) and R_hyp are not mapped;
  R_hyp  `losses.hyperplane_reg(forward_scores(H, frames), reg_form)` with H
         frozen: its params and hyperplane are separate, replicated, non-donated
         arguments of the step, loaded from a stage-1 checkpoint; they never
         enter the optimiser or this stage's checkpoint. alpha = 0 or no H
         checkpoint is the baseline.
Purohit receives the ground-truth middle frame `sharp[:, 3]` in training;
every generator ignores the keyword inputs it does not use.

Middle frame outside training (models with `uses_middle`, i.e. Purohit):
  config.model.centre_checkpoint  a stage-2 workdir of a `jin2018` run; its
                                  trained centre net is copied into the
                                  model's `centre` sub-tree at init
                                  (`load_centre_checkpoint`, `make_init`).
  config.eval.middle              'gt' (evaluate with the ground-truth
                                  middle frame, as the HyperCUT
                                  reimplementation does) | 'estimate' (the
                                  centre net's estimate, as at inference) |
                                  None = 'estimate' with a centre checkpoint,
                                  else 'gt' (`resolve_eval_middle`).
"""
import dataclasses
import os
from typing import Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from hypercut_jax import data as data_lib
from hypercut_jax import losses
from hypercut_jax import metrics as metrics_lib
from hypercut_jax import models
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.models import purohit2019
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import config as config_lib
from hypercut_jax.train import evaluators
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import saved_params
from hypercut_jax.train import sharding as sharding_lib
from hypercut_jax.train import state as state_lib

MIDDLE = 3
EVAL_MIDDLE = ('gt', 'estimate')
# Where the deblur losses are computed (`loss_space`, config.loss.space).
LOSS_SPACES = ('official', 'unit')
# Per-generator translation of JSON-able `config.model.kwargs` into fields.
_CONFIG_KWARGS = {'purohit2019': purohit2019.config_kwargs}


def _field_names(cls) -> set:
  try:
    return {f.name for f in dataclasses.fields(cls)}
  except TypeError:
    return set()


def make_model(name: str, kwargs: dict | None, precision: str = 'float32'):
  """`models.get(name)(**kwargs)`, with the compute dtype when it has one.

  kwargs: the JSON-able `config.model.kwargs`; a generator with a config
  translation applies it first (purohit2019: `middle='jin_centre'|'none'`,
  `middle_kwargs={...}` -> `middle_net`). ValueError names bad kwargs.
  """
  cls = models.get(name)
  kwargs = dict(kwargs or {})
  if name in _CONFIG_KWARGS:
    kwargs = _CONFIG_KWARGS[name](kwargs)
  dtype = config_lib.compute_dtype(precision)
  if dtype is not None and 'dtype' in _field_names(cls) and 'dtype' not in kwargs:
    kwargs['dtype'] = dtype
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise ValueError(f'config.model.kwargs={kwargs} do not fit '
                     f'{cls.__name__}: {e}') from e


def takes_middle(model) -> bool:
  """Whether the generator uses a `middle` frame (class attr `uses_middle`)."""
  return bool(getattr(model, 'uses_middle', False))


def has_middle_net(model) -> bool:
  """Whether the generator can estimate its middle frame itself."""
  return takes_middle(model) and getattr(model, 'middle_net', None) is not None


def resolve_eval_middle(model, eval_middle: str | None,
                        centre_checkpoint: str | None) -> str | None:
  """'gt' | 'estimate' for models that take a middle frame, else None.

  eval_middle: `config.eval.middle` ('gt' | 'estimate' | None = automatic:
  'estimate' when a centre checkpoint is given, else 'gt').
  """
  if eval_middle is not None and eval_middle not in EVAL_MIDDLE:
    raise ValueError(f'config.eval.middle={eval_middle!r}; known: '
                     f'{list(EVAL_MIDDLE)}')
  if not takes_middle(model):
    return None
  if eval_middle is None:
    eval_middle = 'estimate' if centre_checkpoint else 'gt'
  if eval_middle == 'estimate' and not has_middle_net(model):
    raise ValueError('config.eval.middle=\'estimate\' needs a middle-frame '
                     'network; this model has none (model.kwargs.middle='
                     '\'none\'); use eval.middle=\'gt\'')
  return eval_middle


def load_centre_checkpoint(path: str, model, sharding=None):
  """Trained centre-net params of a jin2018 run, checked against `model`.

  path: a stage-2 workdir (or checkpoints/step dir) of a `jin2018` run;
  model: the generator (with `middle_net`) that will receive them;
  sharding: where the arrays go (e.g. replicated over the mesh).
  Returns (centre params tree, step). Raises ValueError when the checkpoint
  is not a jin2018 run or its centre shapes differ from `model`'s (naming
  both shapes); FileNotFoundError when nothing is there.
  """
  if not has_middle_net(model):
    raise ValueError(f'config.model.centre_checkpoint={path!r} needs a model '
                     'with a middle-frame network (purohit2019 with '
                     'model.kwargs.middle=\'jin_centre\')')
  directory, step = saved_params.resolve(path, 'generator')
  config, step = ckpt_lib.read_config(directory, step)
  name = (config.get('model') or {}).get('name')
  layout = saved_params.state_layout(directory, step)
  params = (layout or {}).get('params') or {}
  if name != 'jin2018' or 'centre' not in params:
    raise ValueError(f'config.model.centre_checkpoint={path!r} holds a '
                     f'{name!r} run; it must be a jin2018 generator run')
  centre = saved_params.restore_entries(
      directory, step, {'params': {'centre': params['centre']}},
      sharding=sharding)['params']['centre']
  # Shapes only (no compute); 240 is a multiple of any usual size multiple.
  x = jax.ShapeDtypeStruct((1, 240, 240, 3), jnp.float32)
  expected = jax.eval_shape(
      lambda x: model.middle_net().init(jax.random.key(0), x), x)['params']
  purohit2019.check_centre(
      expected, centre,
      what=f'the jin2018 centre in config.model.centre_checkpoint={path!r}')
  return centre, step


def make_init(model, tx: optax.GradientTransformation, image_size: int,
              with_guidance: bool = False, centre=None) -> Callable:
  """init(key) -> TrainState at step 0.

  centre: optional trained centre-net params (`load_centre_checkpoint`),
  copied into the params' `centre` sub-tree (`purohit2019.load_centre`)
  before the optimiser state is built.
  """
  def init(key):
    blur = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    kw = {'middle': blur}
    if with_guidance:
      kw['guidance'] = jnp.zeros((1, image_size, image_size), jnp.int32)
    params = model.init({'params': key}, blur, train=False, **kw)['params']
    if centre is not None:
      params = purohit2019.load_centre(params, centre)
    return state_lib.create(params, tx)
  return init


# ---------------------------------------------------------------- frozen H ---
def load_hypercut(directory: str, mesh, precision: str = 'float32'):
  """Frozen H from a stage-1 workdir or checkpoint dir.

  Reads H's model config and optimiser config from the checkpoint's config
  item, rebuilds the abstract stage-1 state, and restores it replicated on
  `mesh`. Returns (model, params, hyperplane f32[D+1], step).
  """
  saved, _ = ckpt_lib.read_config(directory)
  saved = ml_collections.ConfigDict(saved)
  model = ordering_lib.make_model(saved.model.get('kwargs', {}), precision)
  tx = optim_lib.make_optimizer(saved.optim, optax.constant_schedule(0.0))
  crop = int(saved.input.crop)
  abstract = jax.eval_shape(ordering_lib.make_init(model, tx, crop),
                            jax.random.key(0))
  target = sharding_lib.with_shardings(
      abstract, jax.tree.map(lambda _: sharding_lib.replicated(mesh), abstract))
  state, step = ckpt_lib.restore_state(directory, target)
  return model, state.params, state.hyperplane, step


# --------------------------------------------------------------- loss space ---
def check_loss_space(space: str) -> str:
  """`space` if it is one of LOSS_SPACES, else ValueError naming the field."""
  if space not in LOSS_SPACES:
    raise ValueError(f'config.loss.space={space!r}; known: {list(LOSS_SPACES)}')
  return space


def loss_space(x, space: str = 'official'):
  """RGB frames f32[..., 3] in [0,1] -> the space the deblur losses see.

  'official': the official trainer's loss tensors. It reads frames with
  OpenCV (BGR) and normalises channel c (B, G, R) with the RGB-order ImageNet
  statistics as is: `(x_c - mean[c]) / std[c]`. On our RGB arrays that is
  R: (0.406, 0.225), G: (0.456, 0.224), B: (0.485, 0.229), i.e. the
  statistics reversed; the result keeps the RGB channel order (every deblur
  loss treats channels alike). The constants are H's
  (`models.ordering.IMAGENET_MEAN` / `IMAGENET_STD`, its
  `channel_order='bgr'`). Computed in at least float32.
  'unit': x as is.
  Returns an array of x's shape.
  """
  check_loss_space(space)
  if space == 'unit':
    return x
  x = jnp.asarray(x)
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  mean = jnp.asarray(ordering_model.IMAGENET_MEAN[::-1], dtype)
  std = jnp.asarray(ordering_model.IMAGENET_STD[::-1], dtype)
  return (x.astype(dtype) - mean) / std


# --------------------------------------------------------------------- step ---
def deblur_terms(out: dict, sharp, loss_name: str, flow_weight: float,
                 space: str = 'official'):
  """L_D of the generator outputs against sharp f32[B,7,H,W,3] in [0,1].

  out: the generator's dict ('frames' f32[B,7,H,W,3] in [0,1]; optional
  'pyramid' [f32[B,7,H_s,W_s,3]] and 'flows'). The deblur loss runs on the
  frames / pyramid and sharp mapped by `loss_space(., space)` (per-pixel,
  so it commutes with the pyramid's subsampling of sharp); the flow penalty
  on the raw flows. Returns (total f32[], {'deblur'[, 'flow']}).
  """
  terms = {}
  to_space = lambda x: loss_space(x, space)
  if out.get('pyramid') is not None:
    terms['deblur'] = losses.multiscale_deblur_loss(
        loss_name, [to_space(p) for p in out['pyramid']], to_space(sharp))
  else:
    terms['deblur'] = losses.deblur_loss(loss_name, to_space(out['frames']),
                                         to_space(sharp))
  total = terms['deblur']
  if out.get('flows') is not None and flow_weight:
    terms['flow'] = losses.flow_smoothness(out['flows'])
    total = total + flow_weight * terms['flow']
  return total, terms


def _frozen_forward_scores(h_model, h_params, hyperplane, frames):
  """f32[B,3] forward-pair scores under H, no gradient into H or the plane."""
  return ordering_model.forward_scores(
      h_model, jax.lax.stop_gradient(h_params),
      jax.lax.stop_gradient(hyperplane), frames)


def hypercut_terms(h_model, h_params, hyperplane, frames: jax.Array,
                   reg_form: str = 'official') -> dict[str, jax.Array]:
  """R_hyp of predicted frames under a frozen H: {'r_hyp', 'pred_sign_neg'}.

  frames: f32[B,7,H,W,3] in [0,1], the generator's output (gradients flow
  into it; H's parameters and the hyperplane are stop-gradient).
  'r_hyp' = `losses.hyperplane_reg` of the forward-order pair scores (the
  term a stage adds as `alpha * r_hyp`); 'pred_sign_neg' = the share of
  those scores below 0 (the side R_hyp drives them to), a diagnostic.
  """
  scores = _frozen_forward_scores(h_model, h_params, hyperplane, frames)
  return {'r_hyp': losses.hyperplane_reg(scores, form=reg_form),
          'pred_sign_neg': jnp.mean((scores < 0).astype(jnp.float32))}


def with_r_hyp(loss, terms: dict, alpha: float, h, frames: jax.Array,
               reg_form: str = 'official'):
  """(loss + alpha * R_hyp, terms with 'r_hyp' and 'pred_sign_neg').

  The HyperCUT regulariser every generator stage adds to its deblurring
  loss. h: (h_model, h_params, hyperplane) of the frozen H.
  """
  terms = {**terms, **hypercut_terms(*h, frames, reg_form)}
  return loss + alpha * terms['r_hyp'], terms


def hypercut_order(h_model, h_params, hyperplane,
                   frames: jax.Array) -> jax.Array:
  """Each sequence in H's order: itself or its time reversal (stop-gradient).

  frames: f32[B,7,H,W,3] in [0,1], ground truth. A sequence whose forward
  pair scores s([x_k, x_{6-k}]) sum above 0 is reversed, so every target
  lies on the side R_hyp drives predictions to (s < 0): the explicit order
  HyperCUT assigns to each sequence (config `hypercut.order_targets`).
  """
  frames = jax.lax.stop_gradient(frames)
  scores = _frozen_forward_scores(h_model, h_params, hyperplane, frames)
  flip = jnp.sum(scores, axis=-1) > 0
  return jnp.where(flip[:, None, None, None, None], frames[:, ::-1], frames)


def make_train_step(model, tx: optax.GradientTransformation, *,
                    loss_name: str = 'order_invariant',
                    flow_weight: float = 0.0, h_model=None, alpha: float = 0.0,
                    reg_form: str = 'official', order_targets: bool = False,
                    space: str = 'official',
                    schedule: optax.Schedule | None = None) -> Callable:
  """train_step(state, batch, key, h_params, hyperplane) -> (state, metrics).

  batch: {'blur': uint8[B,H,W,3], 'sharp': uint8[B,7,H,W,3],
  'guidance'?: int[B,H,W]} sharded on B. key: the run's train key, folded
  with `state.step` for the model's rngs. h_params / hyperplane: frozen H
  (ignored, may be None, when `h_model` is None or alpha == 0 and not
  `order_targets`). order_targets: the deblur loss sees each ground-truth
  sequence in H's order (`hypercut_order`) instead of its stored order.
  space: `config.loss.space`, where the deblur loss runs (`loss_space`);
  H (R_hyp, order_targets) always sees the [0,1] frames.
  """
  check_loss_space(space)
  use_h = h_model is not None and alpha != 0
  if order_targets and h_model is None:
    raise ValueError('order_targets=True needs the frozen H (h_model)')

  def loss_fn(params, blur, sharp, guidance, key, h_params, hyperplane):
    kw = {'middle': sharp[:, MIDDLE]}
    if guidance is not None:
      if order_targets:   # a guidance map encodes the stored order
        raise ValueError('order_targets does not reorder motion guidance')
      kw['guidance'] = guidance
    if order_targets:
      sharp = hypercut_order(h_model, h_params, hyperplane, sharp)
    out = model.apply({'params': params}, blur, train=True,
                      rngs={'dropout': key, 'noise': key}, **kw)
    loss, terms = deblur_terms(out, sharp, loss_name, flow_weight, space)
    if use_h:
      loss, terms = with_r_hyp(loss, terms, alpha,
                               (h_model, h_params, hyperplane),
                               out['frames'], reg_form)
    return loss, terms

  def train_step(state, batch, key, h_params=None, hyperplane=None):
    key = jax.random.fold_in(key, state.step)
    blur = metrics_lib.to_float(batch['blur'])
    sharp = metrics_lib.to_float(batch['sharp'])
    guidance = batch.get('guidance')
    if guidance is not None:
      guidance = guidance.astype(jnp.int32)
    return update(state, tx, schedule, loss_fn, state.params, blur, sharp,
                  guidance, key, h_params, hyperplane)
  return train_step


def update(state, tx, schedule, loss_fn, *args):
  """The generator steps' tail: gradients of `loss_fn(*args) -> (loss,
  terms)` (args[0] = the params), the optimiser update and the logged
  metrics 'train/loss', 'train/grad_norm', 'train/<term>', 'train/lr'."""
  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(*args)
  new_state = state_lib.apply_gradients(state, grads, tx)
  out = {'train/loss': loss, 'train/grad_norm': optax.global_norm(grads)}
  out.update({f'train/{k}': v for k, v in terms.items()})
  if schedule is not None:
    out['train/lr'] = jnp.asarray(schedule(state.step), jnp.float32)
  return new_state, out


def make_predict_fn(model) -> Callable:
  """predict(params, blur, middle=None) -> f32[B,7,H,W,3] in [0,1].

  blur: uint8[B,H,W,3] or f32 in [0,1]; middle: the same form or None (the
  inference setting: a model that takes a middle frame estimates it).
  Any H x W: `models.predict` pads to the model's size multiple.
  """
  def predict(params, blur, middle=None):
    kw = {}
    if middle is not None:
      kw['middle'] = metrics_lib.to_float(middle)
    return models.predict(model, {'params': params},
                          metrics_lib.to_float(blur), **kw)
  return predict


# ------------------------------------------------------ the loop's interface ---
def validate(cfg, *, prefix: str, auto_h: bool = False) -> None:
  """Stage 2's own checks (after `config.validate_common`).

  auto_h: the frozen H comes from the same run (stage='both'), so
  `hypercut.checkpoint` is set later.
  """
  model_name = cfg.model.name
  config_lib.choice(model_name, tuple(models.REGISTRY), f'{prefix}.model.name')
  multiple = int(getattr(models.REGISTRY[model_name], 'size_multiple', 1))
  if cfg.input.crop % multiple:
    raise ValueError(f'{prefix}.input.crop={cfg.input.crop} is not a '
                     f'multiple of {model_name}.size_multiple={multiple}')
  field, choice = config_lib.field, config_lib.choice
  choice(field(cfg, 'loss.deblur', str, prefix=prefix),
         losses.DEBLUR_LOSSES, f'{prefix}.loss.deblur')
  field(cfg, 'loss.flow_weight', (int, float), nonneg=True, prefix=prefix)
  choice(cfg.loss.get('space', 'official'), LOSS_SPACES,
         f'{prefix}.loss.space')
  field(cfg, 'hypercut.alpha', (int, float), nonneg=True, prefix=prefix)
  choice(field(cfg, 'hypercut.reg_form', str, prefix=prefix),
         losses.FORMS, f'{prefix}.hypercut.reg_form')
  path = field(cfg, 'hypercut.checkpoint', str, optional=True, prefix=prefix)
  if field(cfg, 'hypercut.order_targets', bool, optional=True,
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
  choice(cfg.best_metric,
         tuple(k for k in config_lib.BEST_MODES if k.startswith('p')),
         f'{prefix}.best_metric')
  field(cfg, 'eval.lpips', bool, prefix=prefix)
  # Middle frame: model kwargs, centre checkpoint, evaluation mode.
  try:
    model = make_model(model_name, cfg.model.get('kwargs', None),
                       cfg.precision)
  except ValueError as e:
    raise ValueError(f'{prefix}.model.kwargs: {e}') from None
  centre = field(cfg, 'model.centre_checkpoint', str, optional=True,
                 prefix=prefix)
  if centre is not None:
    if not has_middle_net(model):
      raise ValueError(
          f'{prefix}.model.centre_checkpoint={centre!r} needs a model with '
          f'a middle-frame network; {model_name} with model.kwargs '
          f'{dict(cfg.model.get("kwargs", None) or {})} has none')
    if not os.path.isdir(os.path.expanduser(centre)):
      raise FileNotFoundError(
          f'{prefix}.model.centre_checkpoint={centre!r} does not exist (a '
          'stage-2 workdir of a jin2018 run)')
  middle = field(cfg, 'eval.middle', str, optional=True, prefix=prefix)
  try:
    resolve_eval_middle(model, middle, centre)
  except ValueError as e:
    raise ValueError(str(e).replace('config.', f'{prefix}.', 1)) from None


def frozen_h(cfg, mesh):
  """((h_model, h_params, hyperplane), score_fn) of `hypercut.checkpoint`.

  All None without a checkpoint. score_fn(frames) -> H's pair scores of
  predicted frames (for the evaluator's pred hit / con).
  """
  h_dir = cfg.hypercut.get('checkpoint')
  h_model = h_params = hyperplane = None
  if h_dir:
    h_model, h_params, hyperplane, h_step = load_hypercut(
        h_dir, mesh, cfg.precision)
    logging.info('Frozen H from %s (step %d), alpha=%g', h_dir, h_step,
                 cfg.hypercut.alpha)
  elif cfg.hypercut.alpha:
    logging.info('No config.hypercut.checkpoint: baseline without R_hyp.')
  if h_model is not None and cfg.hypercut.get('order_targets'):
    logging.info('hypercut.order_targets: the deblur loss sees each target '
                 'sequence in H\'s order')
  score_fn = None
  if h_model is not None:
    def score_fn(frames):
      return ordering_model.pair_scores(h_model, h_params, hyperplane, frames)
  return (h_model, h_params, hyperplane), score_fn


def parts(cfg, mesh, *, tx, schedule, **unused) -> state_lib.StageParts:
  """Stage 2 for the loop: the generator, its init, step and evaluation.

  zhong2022 (Animation-from-Blur) is built by `animation.decomposer_stage`.
  """
  del unused
  model = make_model(cfg.model.name, cfg.model.get('kwargs'), cfg.precision)
  repl = sharding_lib.replicated(mesh)
  # Middle frame (Purohit): trained centre net, evaluation mode.
  centre_dir = cfg.model.get('centre_checkpoint')
  centre = None
  if centre_dir:
    centre, centre_step = load_centre_checkpoint(
        os.path.expanduser(centre_dir), model, sharding=repl)
    logging.info('Centre net (middle-frame estimate) from the jin2018 run '
                 '%s, step %d', centre_dir, centre_step)
  eval_middle = resolve_eval_middle(model, cfg.eval.get('middle'),
                                    centre_dir)
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
  (h_model, h_params, hyperplane), score_fn = frozen_h(cfg, mesh)
  batch_sh = sharding_lib.batch_sharding(mesh)
  predict = jax.jit(make_predict_fn(model), out_shardings=batch_sh)

  def predict_fn(params, batch):
    blur = jax.make_array_from_process_local_data(batch_sh,
                                                  np.asarray(batch['blur']))
    if eval_middle != 'gt':
      return predict(params, blur)
    middle = jax.make_array_from_process_local_data(
        batch_sh, np.asarray(batch['sharp'])[:, MIDDLE])
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

  with_guidance = data_lib.has_guidance(cfg.data)
  step = make_train_step(
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
  return state_lib.StageParts(
      init=make_init(model, tx, cfg.input.crop, with_guidance,
                     centre=centre),
      step=step, extra=extra, extra_shardings=extra_sh,
      make_evaluate=make_evaluate, table_stage='generator')

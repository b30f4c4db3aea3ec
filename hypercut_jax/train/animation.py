"""Animation-from-Blur (Zhong et al. 2022) in the trainer.

Two pieces plug into `train/loop.py`:

* stage 'predictor': the BicycleGAN guidance predictor (G, E, D of
  `models.zhong2022.GuidancePredictor`) learns p(guidance | blur). One train
  state holds the three networks and both optimiser states (`TrainState(step,
  params={'g','e','d'[,'d2']}, opt_state={'ge','d'})`), so one orbax
  checkpoint has everything; one jitted step runs the G/E update then the D
  update (`bicyclegan.ge_step`, `bicyclegan.d_step`, same key, so D judges
  the same latent and Gumbel draws). Evaluation on the test split: guidance
  accuracy of G(blur, mu(E(gt))) (reconstruction) and of G(blur, z ~ N(0,I))
  (samples; mean and best of `eval.samples`), cross-entropy and KL.
* generator stage with `model.name='zhong2022'`: the decomposer is trained
  with the batch's ground-truth guidance (as the authors do): the loss is
  `loss.deblur` (MSE) summed over both stages on the raw (unclipped) outputs,
  in `loss.space` (default the official trainer's ImageNet-normalised
  space), plus `alpha * R_hyp` of a frozen H on the stage-2 frames ("[3] +
  HyperCUT"). Evaluation uses the ground-truth guidance (pPSNR / pSSIM /
  pLPIPS, hit/con under H) and, when `eval.predictor_checkpoint` names a
  'predictor' workdir, P_n: n guidance maps sampled per test image with a
  fixed key, each decomposed, each metric's best of the first n chosen
  independently (`evaluators.BestOfNEvaluator`).

Config fields read here (in the style of configs/common.py; stage 'both'
with a `config.predictor` section chains ordering -> predictor -> generator
and fills in `eval.predictor_checkpoint`):

  data.guidance, data.guidance_kwargs   compute guidance from the sharp frames
                   for data without it (hypercut_jax.data.get_source);
                   B-Aist++ ships it.
  predictor stage:
    model.name     'bicyclegan'
    model.kwargs   {'generator': GuidanceGenerator fields, 'encoder':
                   GuidanceEncoder fields, 'discriminator':
                   GuidanceDiscriminator fields, 'separate_d2': bool}
                   (missing entries: the authors' networks)
    loss.*         lambda_ce, lambda_gan, lambda_gan2, lambda_kl, lambda_l1,
                   lambda_z, tau (bicyclegan.BicycleGANConfig)
    optim.*        as every stage (Adam lr 2e-4, b1 0.5 for the authors);
                   the same optimiser for G/E and for D, two states
    optim.linear_decay_steps | linear_decay_epochs   the learning rate
                   falls linearly to 0 over the last this-many steps of
                   training (authors: niter 100 + niter_decay 100 epochs);
                   None = no decay
    input.*        batch_size (even: halves feed the cVAE and cLR branches),
                   crop (a multiple of G's 2**num_downs), eval_crop (any
                   size or (H, W); padded for G inside)
    eval.samples   latent draws per test image (accuracy mean and best-of)
    eval.seed      root of the evaluation keys
    best_metric    'acc_rec' | 'acc_sample' | 'acc_best'
  generator stage, model.name='zhong2022':
    model.kwargs   Decomposer fields (features, max_features, n_down,
                   n_blocks, norm, two_stage, residual, residual_activation)
    loss.deblur    'mse' for the authors (any of losses.DEBLUR_LOSSES)
    loss.space     'official' (default: the official HyperCUT trainer's
                   ImageNet-normalised space) | 'unit' ([0,1] frames);
                   `generator.loss_space`
    hypercut.*     checkpoint / alpha / reg_form as for every generator
    eval.predictor_checkpoint   a 'predictor' stage workdir (None: evaluate
                   with the ground-truth guidance only)
    eval.p_n       sample counts, e.g. (1, 3, 5) -> P1, P3, P5
    eval.seed      root of the P_n sampling keys
    input.eval_crop  int or (H, W), e.g. (192, 160) (authors' test crop)
"""
import dataclasses
import functools
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
from hypercut_jax.models import zhong2022
from hypercut_jax.train import bicyclegan
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import config as config_lib
from hypercut_jax.train import evaluators
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import sharding as sharding_lib
from hypercut_jax.train import state as state_lib

PREDICTOR_STAGE = 'predictor'
PREDICTOR_MODEL = 'bicyclegan'
DECOMPOSER_MODEL = 'zhong2022'
PREDICTOR_PARTS = ('generator', 'encoder', 'discriminator', 'separate_d2')
LOSS_FIELDS = ('lambda_ce', 'lambda_gan', 'lambda_gan2', 'lambda_kl',
               'lambda_l1', 'lambda_z', 'tau')
# best_metric choices of the predictor stage and whether higher is better.
PREDICTOR_METRICS = {'acc_rec': 'max', 'acc_sample': 'max', 'acc_best': 'max'}
_MODULES = {'generator': zhong2022.GuidanceGenerator,
            'encoder': zhong2022.GuidanceEncoder,
            'discriminator': zhong2022.GuidanceDiscriminator}


def _dict(x) -> dict:
  if x is None:
    return {}
  return dict(x.to_dict() if hasattr(x, 'to_dict') else x)


# ============================================================================
# Predictor: model, losses, schedule.
# ============================================================================
def make_predictor(kwargs=None, precision: str = 'float32'
                   ) -> zhong2022.GuidancePredictor:
  """GuidancePredictor from `config.model.kwargs` (JSON-able dicts).

  Missing parts take the authors' networks; with precision 'bfloat16' each
  network computes in bfloat16 unless its kwargs set a dtype.
  """
  kwargs = _dict(kwargs)
  unknown = sorted(set(kwargs) - set(PREDICTOR_PARTS))
  if unknown:
    raise ValueError(f'config.model.kwargs has unknown entries {unknown}; '
                     f'known: {list(PREDICTOR_PARTS)}')
  parts = {}
  for name, cls in _MODULES.items():
    fields = _dict(kwargs.get(name))
    known = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
    bad = sorted(set(fields) - known)
    if bad:
      raise ValueError(f'config.model.kwargs.{name} has unknown fields {bad}; '
                       f'known: {sorted(known)}')
    if config_lib.compute_dtype(precision) is not None:
      fields.setdefault('dtype', config_lib.compute_dtype(precision))
    parts[name] = cls(**fields)
  separate = kwargs.get('separate_d2', False)
  if not isinstance(separate, bool):
    raise ValueError(f'config.model.kwargs.separate_d2={separate!r}; expected a bool')
  if parts['encoder'].nz != parts['generator'].nz:
    raise ValueError(f'config.model.kwargs: encoder.nz={parts["encoder"].nz} '
                     f'!= generator.nz={parts["generator"].nz}')
  return zhong2022.GuidancePredictor(separate_d2=separate, **parts)


def loss_config(loss_cfg) -> bicyclegan.BicycleGANConfig:
  """BicycleGANConfig (loss weights, tau) from `config.loss`."""
  fields = _dict(loss_cfg)
  unknown = sorted(set(fields) - set(LOSS_FIELDS))
  if unknown:
    raise ValueError(f'config.loss has unknown fields {unknown} for the '
                     f'predictor; known: {list(LOSS_FIELDS)}')
  for k, v in fields.items():
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      raise ValueError(f'config.loss.{k}={v!r}; expected a number')
  try:
    return bicyclegan.BicycleGANConfig(**{k: float(v) for k, v in fields.items()})
  except ValueError as e:
    raise ValueError(f'config.loss: {e}') from None


def min_side(predictor: zhong2022.GuidancePredictor) -> int:
  """Smallest training crop side: G's multiple, at least what D needs."""
  d = predictor.discriminator
  need_d = 2 ** (d.n_layers + d.num_d - 1) * 3
  m = predictor.size_multiple
  return max(m, -(-need_d // m) * m)


def linear_tail(schedule: optax.Schedule, decay_steps: int | None,
                total_steps: int) -> optax.Schedule:
  """`schedule` times a factor falling linearly from 1 to 0 over the last
  `decay_steps` of `total_steps` (BicycleGAN's `lr_policy: linear`)."""
  if not decay_steps:
    return schedule
  decay, total = int(decay_steps), int(total_steps)

  def fn(count):
    left = jnp.asarray(total - count, jnp.float32)
    return schedule(count) * jnp.clip(left / decay, 0.0, 1.0)
  return fn


def make_predictor_init(predictor, tx: optax.GradientTransformation,
                        image_hw) -> Callable:
  """init(key) -> TrainState(step 0, params {'g','e','d'[,'d2']},
  opt_state {'ge': tx state of G and E, 'd': tx state of D[, D2]})."""
  def init(key):
    params = predictor.init(key, tuple(image_hw))
    return state_lib.TrainState(
        step=jnp.zeros([], jnp.int32), params=params,
        opt_state={'ge': tx.init(bicyclegan._ge_keys(params)),  # pylint: disable=protected-access
                   'd': tx.init(bicyclegan._d_keys(params))})  # pylint: disable=protected-access
  return init


def make_predictor_step(predictor, cfg: bicyclegan.BicycleGANConfig,
                        tx: optax.GradientTransformation,
                        schedule: optax.Schedule | None = None) -> Callable:
  """train_step(state, batch, key) -> (state, metrics): G/E then D update.

  batch: {'blur': u8[B,H,W,3], 'guidance': int[B,H,W], ...} (B even).
  metrics: 'train/loss' = loss_ge + loss_d (what the loop checks for NaN),
  'train/loss_ge', 'train/loss_d', every loss term, 'train/acc' (guidance
  accuracy of the encoded branch), grad norms and 'train/lr'.
  """
  def train_step(state, batch, key):
    batch = {k: batch[k] for k in ('blur', 'guidance')}
    step0 = state.step
    state, m_ge = bicyclegan.ge_step(predictor, cfg, tx, state, batch, key)
    state, m_d = bicyclegan.d_step(predictor, cfg, tx, state, batch, key)
    out = {**m_ge, **m_d}
    out['train/loss'] = m_ge['train/loss_ge'] + m_d['train/loss_d']
    if schedule is not None:
      out['train/lr'] = jnp.asarray(schedule(step0), jnp.float32)
    return state, out
  return train_step


def _pad(x, multiple):
  """Pads axes 1, 2 of x at the bottom/right to `multiple` (reflect if it fits)."""
  return bicyclegan._pad_to_multiple(x, multiple)  # pylint: disable=protected-access


def predictor_metrics(predictor, n_samples: int, params, arrays, key):
  """Per-example guidance metrics of the predictor -> dict of f32[B].

  arrays: {'blur': u8[B,H,W,3], 'guidance': int[B,H,W]} (any H, W).
  acc_rec / ce_rec: accuracy / cross-entropy of G(blur, mu(E(onehot(gt))));
  kl: KL(q(z|gt) || N(0,I)) summed over z; acc_sample / acc_best: mean /
  best accuracy of `n_samples` maps G(blur, z), z ~ N(0, I) from `key`;
  static_gt / static_pred: share of static pixels in the ground truth / in
  the first sample.
  """
  blur = metrics_lib.to_float(arrays['blur'])
  labels = jnp.asarray(arrays['guidance']).astype(jnp.int32)
  b, h, w, _ = blur.shape
  m = predictor.size_multiple
  onehot = jax.nn.one_hot(labels, predictor.n_classes, dtype=jnp.float32)
  blur_p, onehot_p = _pad(blur, m), _pad(onehot, m)
  mu, logvar = predictor.encode(params, onehot_p, blur_p)
  logits = predictor.generate(params, blur_p, mu, train=False)[:, :h, :w]
  hit = lambda lg: jnp.mean((jnp.argmax(lg, -1) == labels).astype(jnp.float32),
                            axis=(1, 2))
  out = {
      'acc_rec': hit(logits),
      'ce_rec': jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          logits, labels), axis=(1, 2)),
      'kl': -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), -1),
      'static_gt': jnp.mean((labels == 0).astype(jnp.float32), axis=(1, 2)),
  }
  samples = bicyclegan.sample_guidance(predictor, params, blur, key, n_samples)
  accs = jnp.mean((samples == labels[None]).astype(jnp.float32), axis=(2, 3))
  out['acc_sample'] = jnp.mean(accs, 0)
  out['acc_best'] = jnp.max(accs, 0)
  out['static_pred'] = jnp.mean((samples[0] == 0).astype(jnp.float32), axis=(1, 2))
  return out


def predictor_parts(cfg, schedule: optax.Schedule, mesh, *,
                    steps_per_epoch: int, total_steps: int):
  """The loop's StageParts of the 'predictor' stage (see module docstring)."""
  predictor = make_predictor(cfg.model.get('kwargs'), cfg.precision)
  bcfg = loss_config(cfg.loss)
  decay = config_lib.steps_of('linear_decay', cfg.optim, steps_per_epoch)
  schedule = linear_tail(schedule, decay, total_steps)
  tx = optim_lib.make_optimizer(cfg.optim, schedule)
  crop = cfg.input.crop
  batch_sh = sharding_lib.batch_sharding(mesh)
  n_samples = int(cfg.eval.get('samples', 5))
  per_example = jax.jit(functools.partial(predictor_metrics, predictor, n_samples),
                        out_shardings=batch_sh)

  def make_evaluate(batches_fn):
    evaluator = evaluators.PerExampleEvaluator(
        batches_fn, per_example, ('blur', 'guidance'), data_sharding=batch_sh,
        seed=int(cfg.eval.get('seed', 0)))
    def evaluate(state):
      return evaluator.run(state.params), None
    return evaluate

  return state_lib.StageParts(
      init=make_predictor_init(predictor, tx, (crop, crop)),
      step=make_predictor_step(predictor, bcfg, tx, schedule),
      extra=(), extra_shardings=(), make_evaluate=make_evaluate,
      table_stage='predictor')


def load_predictor(directory: str, mesh, precision: str = 'float32'):
  """A trained predictor from a 'predictor' stage workdir (or its checkpoints/).

  Rebuilds the networks and the abstract state from the saved config and
  restores the latest state replicated on `mesh`. Returns (predictor,
  params {'g','e','d'...}, step).
  """
  saved, _ = ckpt_lib.read_config(directory)
  saved = ml_collections.ConfigDict(saved)
  if saved.get('stage') != PREDICTOR_STAGE:
    raise ValueError(f'{directory!r} holds a {saved.get("stage")!r} run, not a '
                     f'{PREDICTOR_STAGE!r} run (config.eval.predictor_checkpoint '
                     'must name a guidance predictor workdir)')
  predictor = make_predictor(saved.model.get('kwargs'), precision)
  tx = optim_lib.make_optimizer(saved.optim, optax.constant_schedule(0.0))
  crop = int(saved.input.crop)
  abstract = jax.eval_shape(make_predictor_init(predictor, tx, (crop, crop)),
                            jax.random.key(0))
  repl = sharding_lib.replicated(mesh)
  target = sharding_lib.with_shardings(abstract, jax.tree.map(lambda _: repl, abstract))
  state, step = ckpt_lib.restore_state(directory, target)
  return predictor, state.params, step


# ============================================================================
# Decomposer (generator stage, model 'zhong2022').
# ============================================================================
def decomposer_terms(model, out: dict, sharp, loss_name: str,
                     space: str = 'official'):
  """Deblur loss summed over the decomposer's stages (raw outputs).

  out: the Decomposer's dict; sharp: f32[B,7,H,W,3] in [0,1]. The loss
  runs on the outputs and sharp mapped by `generator.loss_space(., space)`
  ('official': the ImageNet-normalised BGR-statistics space of the official
  trainer; 'unit': [0,1]). Returns (loss, terms) with terms 'deblur' (stage
  2, on 'frames_raw', i.e. before clipping) and 'deblur_stage1' (two-stage
  models).
  """
  to_space = functools.partial(generator_lib.loss_space, space=space)
  gt = to_space(sharp)
  terms = {'deblur': losses.deblur_loss(loss_name, to_space(out['frames_raw']),
                                        gt)}
  total = terms['deblur']
  if getattr(model, 'two_stage', False):
    terms['deblur_stage1'] = losses.deblur_loss(loss_name,
                                                to_space(out['stage1']), gt)
    total = total + terms['deblur_stage1']
  return total, terms


def make_decomposer_step(model, tx: optax.GradientTransformation, *,
                         loss_name: str = 'mse', h_model=None, alpha: float = 0.0,
                         reg_form: str = 'official', space: str = 'official',
                         schedule: optax.Schedule | None = None) -> Callable:
  """train_step(state, batch, key, h_params, hyperplane) -> (state, metrics).

  The generator stage's step signature. batch: {'blur': u8[B,H,W,3],
  'sharp': u8[B,7,H,W,3], 'guidance': int[B,H,W]}. Loss =
  `decomposer_terms` (in `config.loss.space` = space) + alpha *
  R_hyp(frames_raw in [0,1]) under the frozen H (when h_model is given and
  alpha != 0). `key` is unused (no randomness).
  """
  generator_lib.check_loss_space(space)
  use_h = h_model is not None and alpha != 0

  def loss_fn(params, blur, sharp, guidance, h_params, hyperplane):
    out = model.apply({'params': params}, blur, train=True, guidance=guidance)
    loss, terms = decomposer_terms(model, out, sharp, loss_name, space)
    if use_h:
      loss, terms = generator_lib.with_r_hyp(
          loss, terms, alpha, (h_model, h_params, hyperplane),
          out['frames_raw'], reg_form)
    return loss, terms

  def train_step(state, batch, key, h_params=None, hyperplane=None):
    del key
    if 'guidance' not in batch:
      raise ValueError(f"zhong2022 needs batch['guidance'] (set config.data."
                       f'guidance=True for data without it); batch keys: {sorted(batch)}')
    blur = metrics_lib.to_float(batch['blur'])
    sharp = metrics_lib.to_float(batch['sharp'])
    guidance = batch['guidance'].astype(jnp.int32)
    return generator_lib.update(state, tx, schedule, loss_fn, state.params,
                                blur, sharp, guidance, h_params, hyperplane)
  return train_step


def make_decomposer_init(model, tx: optax.GradientTransformation,
                         image_size: int) -> Callable:
  """init(key) -> TrainState at step 0."""
  def init(key):
    blur = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    guidance = jnp.zeros((1, image_size, image_size), jnp.int32)
    params = model.init({'params': key}, blur, train=False, guidance=guidance)['params']
    return state_lib.create(params, tx)
  return init


def make_decomposer_evaluate(cfg, model, mesh, *, score_fn=None) -> Callable:
  """make_evaluate(batches_fn) -> evaluate(state) -> (metrics, examples).

  Ground-truth guidance metrics always ('ppsnr', 'pssim', 'plpips',
  'pred_*', 'n'); P_n metrics ('p{n}/ppsnr', ...) when
  `cfg.eval.predictor_checkpoint` is set (the predictor is loaded here,
  once, replicated on `mesh`).
  """
  batch_sh = sharding_lib.batch_sharding(mesh)
  put = lambda x: jax.make_array_from_process_local_data(batch_sh, np.asarray(x))

  @functools.partial(jax.jit, out_shardings=batch_sh)
  def predict(params, blur, guidance):
    return models.predict(model, {'params': params}, metrics_lib.to_float(blur),
                          guidance=guidance.astype(jnp.int32))

  def predict_fn(params, batch):
    if 'guidance' not in batch:
      raise ValueError(f"zhong2022 evaluation needs batch['guidance'] (ground "
                       f'truth); batch keys: {sorted(batch)}')
    return predict(params, put(batch['blur']), put(batch['guidance']))

  sample_fn = bon_args = None
  path = cfg.eval.get('predictor_checkpoint')
  ns = tuple(int(n) for n in (cfg.eval.get('p_n') or (1, 3, 5)))
  if path:
    predictor, pred_params, pred_step = load_predictor(path, mesh, cfg.precision)
    logging.info('P_n evaluation (n=%s) with the guidance predictor from %s '
                 '(step %d)', ns, path, pred_step)

    @functools.partial(jax.jit, out_shardings=batch_sh)
    def sample(pred_params, dec_params, blur, key):
      return bicyclegan.decompose_samples(predictor, model, pred_params,
                                          dec_params, blur, key, 1)[0]

    def sample_fn(pred_params, dec_params, batch, key):
      return sample(pred_params, dec_params, put(batch['blur']), key)
    bon_args = (pred_params,)
  else:
    logging.info('zhong2022 evaluation uses the ground-truth guidance (no '
                 'config.eval.predictor_checkpoint: no P_n)')

  def make_evaluate(batches_fn):
    gt_eval = evaluators.GeneratorEvaluator(
        batches_fn, predict_fn, score_fn=score_fn, lpips=cfg.eval.lpips,
        num_examples_to_keep=cfg.eval.get('num_examples', 4),
        data_sharding=batch_sh)
    bon = None
    if sample_fn is not None:
      bon = evaluators.BestOfNEvaluator(
          batches_fn, sample_fn, ns, lpips=cfg.eval.lpips,
          data_sharding=batch_sh, seed=int(cfg.eval.get('seed', 0)))

    def evaluate(state):
      values, examples = gt_eval.run(state.params)
      if bon is not None:
        extra = bon.run(*bon_args, state.params)
        values.update({k: v for k, v in extra.items() if k != 'n'})
      return values, examples
    return evaluate
  return make_evaluate


def decomposer_parts(cfg, tx: optax.GradientTransformation, schedule, mesh, *,
                     model, h=(None, None, None), score_fn=None):
  """The loop's StageParts of a generator stage with model 'zhong2022'.

  model: the built Decomposer; h = (h_model, h_params, hyperplane) (all
  None without H); score_fn: H's pair scorer for hit/con of the predictions
  (or None). `decomposer_stage` builds them from the config.
  """
  h_model, h_params, hyperplane = h
  step = make_decomposer_step(
      model, tx, loss_name=cfg.loss.deblur, h_model=h_model,
      alpha=float(cfg.hypercut.alpha), reg_form=cfg.hypercut.reg_form,
      space=cfg.loss.get('space', 'official'), schedule=schedule)
  if h_model is not None:
    repl = sharding_lib.replicated(mesh)
    extra = (h_params, hyperplane)
    extra_sh = (jax.tree.map(lambda _: repl, h_params), repl)
  else:
    extra, extra_sh = (None, None), (None, None)
  return state_lib.StageParts(
      init=make_decomposer_init(model, tx, cfg.input.crop), step=step,
      extra=extra, extra_shardings=extra_sh,
      make_evaluate=make_decomposer_evaluate(cfg, model, mesh, score_fn=score_fn),
      table_stage='animation')


def decomposer_stage(cfg, mesh, *, tx, schedule, **unused):
  """The loop's StageParts of a generator stage with model 'zhong2022':
  the model and the frozen H from the config, then `decomposer_parts`."""
  del unused
  model = generator_lib.make_model(cfg.model.name, cfg.model.get('kwargs'),
                                   cfg.precision)
  h, score_fn = generator_lib.frozen_h(cfg, mesh)
  return decomposer_parts(cfg, tx, schedule, mesh, model=model, h=h,
                          score_fn=score_fn)


def predictor_stage(cfg, mesh, *, schedule, steps_per_epoch, total_steps,
                    **unused):
  """The loop's StageParts of the 'predictor' stage (`predictor_parts`;
  the predictor builds its own optimiser)."""
  del unused
  return predictor_parts(cfg, schedule, mesh, steps_per_epoch=steps_per_epoch,
                         total_steps=total_steps)


# ============================================================================
# Validation (called by loop.validate before anything is built).
# ============================================================================
def _check_guidance_data(cfg, prefix, what):
  if not data_lib.has_guidance(cfg.data):
    raise ValueError(
        f'{what} needs motion guidance: config.data.name={cfg.data.get("name")!r} '
        'has none; set config.data.guidance=True (computed from the sharp '
        'frames) or use B-Aist++')


def validate_predictor(cfg, prefix: str = 'config', *, auto_h: bool = False
                       ) -> None:
  """Checks the 'predictor' stage fields; ValueError names the field."""
  del auto_h   # the predictor needs no frozen model
  name = cfg.model.get('name')
  if name != PREDICTOR_MODEL:
    raise ValueError(f'{prefix}.model.name={name!r}; known for the predictor '
                     f'stage: [{PREDICTOR_MODEL!r}]')
  try:
    predictor = make_predictor(cfg.model.get('kwargs'), cfg.precision)
    loss_config(cfg.loss)
  except (ValueError, TypeError) as e:
    raise ValueError(f'{prefix}: {e}') from None
  _check_guidance_data(cfg, prefix, f'{prefix}.stage={PREDICTOR_STAGE!r}')
  for field in ('batch_size', 'eval_batch_size'):
    bs = cfg.input[field]
    if bs % 2:
      raise ValueError(f'{prefix}.input.{field}={bs} must be even (halves '
                       'feed the cVAE-GAN and cLR-GAN branches)')
  crop = cfg.input.crop
  lo, m = min_side(predictor), predictor.size_multiple
  if crop % m or crop < lo:
    raise ValueError(f'{prefix}.input.crop={crop}; the predictor needs a '
                     f'multiple of {m} (2**generator.num_downs), >= {lo}')
  samples = cfg.eval.get('samples', 5)
  if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
    raise ValueError(f'{prefix}.eval.samples={samples!r}; must be an int >= 1')
  try:
    config_lib.steps_of('linear_decay', cfg.optim, 1)
  except ValueError as e:
    raise ValueError(f'{prefix}.optim: {e}') from None
  best = cfg.best_metric
  if best not in PREDICTOR_METRICS:
    raise ValueError(f'{prefix}.best_metric={best!r}; known: {sorted(PREDICTOR_METRICS)}')


def validate_decomposer(cfg, prefix: str = 'config', *, chained: bool = False) -> None:
  """Checks a generator stage with model 'zhong2022'.

  chained: the predictor checkpoint comes from an earlier stage of this run
  (stage 'both'), so it need not exist yet.
  """
  _check_guidance_data(cfg, prefix, f'{prefix}.model.name={DECOMPOSER_MODEL!r}')
  try:
    model = models.get(DECOMPOSER_MODEL)(**_dict(cfg.model.get('kwargs')))
  except TypeError as e:
    raise ValueError(f'{prefix}.model.kwargs do not fit the zhong2022 '
                     f'Decomposer: {e}') from None
  m = model.size_multiple
  if cfg.input.crop % m:
    raise ValueError(f'{prefix}.input.crop={cfg.input.crop} is not a multiple '
                     f'of zhong2022 size_multiple={m} (2**n_down)')
  path = cfg.eval.get('predictor_checkpoint')
  if path is not None:
    if not isinstance(path, str):
      raise ValueError(f'{prefix}.eval.predictor_checkpoint={path!r}; expected '
                       'a path (str) or None')
    if not chained and ckpt_lib.latest_step(path) is None:
      raise FileNotFoundError(
          f'{prefix}.eval.predictor_checkpoint={path!r} holds no checkpoint (a '
          f'{PREDICTOR_STAGE!r} stage workdir or its checkpoints/ directory)')
  ns = cfg.eval.get('p_n') or (1, 3, 5)
  if (not isinstance(ns, (tuple, list)) or not ns
      or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ns)
      or len(set(ns)) != len(ns)):
    raise ValueError(f'{prefix}.eval.p_n={ns!r}; expected distinct ints >= 1, '
                     'e.g. (1, 3, 5)')


def validate_decomposer_stage(cfg, *, prefix: str, auto_h: bool = False
                              ) -> None:
  """A zhong2022 generator stage: the generator checks, then its own."""
  generator_lib.validate(cfg, prefix=prefix, auto_h=auto_h)
  validate_decomposer(cfg, prefix, chained=auto_h)

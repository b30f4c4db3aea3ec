"""Animation-from-Blur training pieces: guidance predictor, decomposer, P_n.

**Guidance predictor (BicycleGAN, cVAE-GAN + cLR-GAN).** The batch of B
examples (B even) is split in halves as in the authors' code: the first
half (A1 = blur, B1 = guidance) drives both branches, the second half's
guidance B2 is the "real" sample the random branch is judged against.

  cVAE-GAN: (mu, logvar) = E(onehot(B1)); z_e = mu + exp(logvar / 2) * eps;
            logits_e = G(A1, z_e)
  cLR-GAN:  z_r ~ N(0, I); logits_r = G(A1, z_r)
  G/E loss = lambda_gan  * LSGAN(D(gumbel(logits_e)), real)
           + lambda_gan2 * LSGAN(D|D2(gumbel(logits_r)), real)
           + lambda_kl   * KL(N(mu, exp(logvar)) || N(0, I))   (summed, as the authors)
           + lambda_ce   * CE(logits_e, B1)                      (guidance reconstruction)
           + lambda_l1   * mean |softmax(logits_e) - onehot(B1)|
           + lambda_z    * mean |mu(E(gumbel(logits_r))) - z_r|  (latent regression,
                                                                  gradient into G only)
  D loss   = LSGAN(D(gumbel(logits_e)), fake) + LSGAN(D(onehot(B1)), real)
           + LSGAN(D|D2(gumbel(logits_r)), fake) + LSGAN(D|D2(onehot(B2)), real)

LSGAN = sum over discriminator scales of mean (D - target)^2, target 1 / 0.
`gumbel` is the straight-through Gumbel-softmax (tau 1, hard). Defaults are
the authors' `cvaegan_gumble_celoss_z4.yaml`: lambda_ce 10, lambda_gan 1,
lambda_gan2 1, lambda_kl 0.01, lambda_l1 0, lambda_z 0 (their released
predictor trains without latent regression; set lambda_z > 0, e.g.
BicycleGAN's 0.5, for the full cLR-GAN), Adam lr 2e-4, betas (0.5, 0.999)
for G, E and D, lr constant for `niter` epochs then linear to 0 over
`niter_decay` epochs (100 + 100).

One train state holds both networks: `TrainState(step, params={'g', 'e',
'd'[, 'd2']}, opt_state={'ge': ..., 'd': ...})`, so one checkpoint has
everything. An iteration is `train_step_ge` then `train_step_d` with the same
key: both fold it with `state.step`, so D judges the same z and Gumbel
draws the G/E step used (regenerated with the updated G; the authors reuse
the pre-update fakes). `step` counts iterations and moves in the D step.

**Decomposer.** `decomposer_loss` = MSE(stage 1, gt) + MSE(stage 2, gt) (the
authors sum the MSE over both stages); "[3] + HyperCUT" adds
`alpha * losses.hyperplane_reg(h_score_fn(frames))` on the stage-2
prediction. Optimiser: AdamW lr 1e-4, weight decay 1e-4, cosine to 1e-6.

**P_n.** `make_sample_fn` draws one guidance map from the predictor per call
and decomposes the blur with it (`BestOfNEvaluator` calls it n times with
different keys); `make_multi_sample_fn` draws n at once;
`make_param_sample_fn` takes both params as traced arguments (no recompile
when evaluating a model that is still training).

The steps here are plain `jax.jit`s; the pure `ge_step` / `d_step` /
`decomposer_loss` are module-level so a trainer can re-jit them with
shardings and donation.
"""
import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from hypercut_jax import losses
from hypercut_jax.models import zhong2022
from hypercut_jax.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class BicycleGANConfig:
  """Loss weights and optimiser of the guidance predictor (authors' values)."""
  lambda_ce: float = 10.0
  lambda_gan: float = 1.0
  lambda_gan2: float = 1.0
  lambda_kl: float = 0.01
  lambda_l1: float = 0.0
  lambda_z: float = 0.0
  tau: float = 1.0
  lr: float = 2e-4
  b1: float = 0.5
  b2: float = 0.999
  niter_epochs: int = 100
  niter_decay_epochs: int = 100

  def __post_init__(self):
    for f in dataclasses.fields(self):
      if getattr(self, f.name) < 0:
        raise ValueError(f'BicycleGANConfig.{f.name}={getattr(self, f.name)}; '
                         'must be >= 0')
    if self.tau <= 0 or self.lr <= 0:
      raise ValueError(f'BicycleGANConfig tau and lr must be > 0; got '
                       f'tau={self.tau}, lr={self.lr}')


def to_float(images):
  """uint8 in [0,255] -> f32 in [0,1]; float input is passed through."""
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


# ------------------------------------------------------------------ losses ---
def lsgan_loss(preds, target_is_real: bool):
  """LSGAN on a multi-scale D: sum_scales mean (p - t)^2, t = 1 or 0.

  preds: list of f32[B,h,w,1] (or one array). Returns f32[].
  """
  if not isinstance(preds, (list, tuple)):
    preds = [preds]
  t = 1.0 if target_is_real else 0.0
  return sum(jnp.mean(jnp.square(p - t)) for p in preds)


def kl_loss(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)) summed over batch and dims (authors).

  mu, logvar: f32[B,nz] -> f32[].
  """
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))


def guidance_ce_loss(logits, labels):
  """Mean per-pixel cross-entropy. logits f32[...,K]; labels int[...] in [0,K)."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits, labels.astype(jnp.int32)))


def guidance_l1_loss(logits, labels):
  """mean |softmax(logits) - onehot(labels)|. logits f32[...,K] -> f32[]."""
  k = logits.shape[-1]
  return jnp.mean(jnp.abs(jax.nn.softmax(logits, -1)
                          - jax.nn.one_hot(labels, k, dtype=logits.dtype)))


def latent_regression_loss(mu_pred, z):
  """mean |E(G(A, z)) - z|. mu_pred, z: f32[B,nz] -> f32[]."""
  return jnp.mean(jnp.abs(mu_pred - z))


def decomposer_loss(out: dict, sharp):
  """Sum over stages of MSE against sharp f32[B,7,H,W,3]; returns (loss, terms)."""
  terms = {'mse_stage2': losses.mse_loss(out['frames_raw'], sharp)}
  total = terms['mse_stage2']
  if 'stage1' in out and out['stage1'] is not out['frames_raw']:
    terms['mse_stage1'] = losses.mse_loss(out['stage1'], sharp)
    total = total + terms['mse_stage1']
  return total, terms


# ----------------------------------------------------- predictor training ---
def _split_batch(batch, n_classes):
  if 'blur' not in batch or 'guidance' not in batch:
    raise ValueError(f"guidance predictor batch needs 'blur' and 'guidance'; got "
                     f'keys {sorted(batch)}')
  blur = to_float(batch['blur'])
  labels = jnp.asarray(batch['guidance']).astype(jnp.int32)
  if blur.ndim != 4 or labels.shape != blur.shape[:3]:
    raise ValueError(f'blur must be [B,H,W,3] and guidance [B,H,W]; got '
                     f'{blur.shape}, {labels.shape}')
  b = blur.shape[0]
  if b % 2:
    raise ValueError(f'batch size must be even (halves for the cVAE and cLR '
                     f'branches); got {b}')
  h = b // 2
  onehot = jax.nn.one_hot(labels, n_classes, dtype=jnp.float32)
  return blur[:h], labels[:h], onehot[:h], onehot[h:]


def _forward(predictor, params, blur1, onehot1, key, cfg, train=True):
  """Both generator branches in one G call; the fakes as D sees them."""
  k_eps, k_z, k_g, k_drop = jax.random.split(key, 4)
  b = blur1.shape[0]
  mu, logvar = predictor.encode(params, onehot1, blur1)
  z_e = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_eps, mu.shape)
  z_r = jax.random.normal(k_z, (b, predictor.nz))
  logits = predictor.generate(params, jnp.concatenate([blur1, blur1]),
                              jnp.concatenate([z_e, z_r]), train=train,
                              rngs={'dropout': k_drop})
  fakes = zhong2022.gumbel_softmax_hard(k_g, logits, cfg.tau)
  return dict(mu=mu, logvar=logvar, z_r=z_r, logits_e=logits[:b],
              logits_r=logits[b:], fake_e=fakes[:b], fake_r=fakes[b:])


def _discriminate(predictor, params, inputs):
  """D outputs for a list of (input, which) pairs, one apply per network.

  Inputs judged by the same network are concatenated on the batch axis
  (InstanceNorm is per example, so this equals separate calls). Returns one
  list of per-scale maps per input, in order.
  """
  out = [None] * len(inputs)
  for which in ('d', 'd2'):
    idx = [i for i, (_, w) in enumerate(inputs)
           if (w if w in params else 'd') == which]
    if not idx:
      continue
    xs = [inputs[i][0] for i in idx]
    preds = predictor.discriminate(params, jnp.concatenate(xs), which)
    start = 0
    for i, x in zip(idx, xs):
      out[i] = [p[start:start + x.shape[0]] for p in preds]
      start += x.shape[0]
  return out


def ge_loss(predictor, cfg: BicycleGANConfig, params, batch, key):
  """G/E objective; returns (loss f32[], terms dict of f32[])."""
  blur1, labels1, onehot1, _ = _split_batch(batch, predictor.n_classes)
  f = _forward(predictor, params, blur1, onehot1, key, cfg)
  d2 = 'd2' if predictor.separate_d2 else 'd'
  frozen_d = {k: jax.lax.stop_gradient(v) for k, v in params.items()
              if k in ('d', 'd2')}
  pred_e, pred_r = _discriminate(predictor, frozen_d,
                                 [(f['fake_e'], 'd'), (f['fake_r'], d2)])
  terms = {
      'g_gan': lsgan_loss(pred_e, True),
      'g_gan2': lsgan_loss(pred_r, True),
      'kl': kl_loss(f['mu'], f['logvar']),
      'ce': guidance_ce_loss(f['logits_e'], labels1),
      'l1': guidance_l1_loss(f['logits_e'], labels1),
  }
  total = (cfg.lambda_gan * terms['g_gan'] + cfg.lambda_gan2 * terms['g_gan2']
           + cfg.lambda_kl * terms['kl'] + cfg.lambda_ce * terms['ce']
           + cfg.lambda_l1 * terms['l1'])
  if cfg.lambda_z:
    frozen_e = dict(params, e=jax.lax.stop_gradient(params['e']))
    mu2, _ = predictor.encode(frozen_e, f['fake_r'], blur1)
    terms['z_l1'] = latent_regression_loss(mu2, f['z_r'])
    total = total + cfg.lambda_z * terms['z_l1']
  terms['acc'] = jnp.mean((jnp.argmax(f['logits_e'], -1) == labels1)
                          .astype(jnp.float32))
  return total, terms


def d_loss(predictor, cfg: BicycleGANConfig, params, batch, key):
  """Discriminator objective (fakes detached); returns (loss, terms)."""
  blur1, _, onehot1, onehot2 = _split_batch(batch, predictor.n_classes)
  frozen_ge = {k: jax.lax.stop_gradient(v) for k, v in params.items()
               if k in ('g', 'e')}
  f = _forward(predictor, dict(params, **frozen_ge), blur1, onehot1, key, cfg)
  d2 = 'd2' if predictor.separate_d2 else 'd'
  preds = _discriminate(predictor, params, [
      (jax.lax.stop_gradient(f['fake_e']), 'd'), (onehot1, 'd'),
      (jax.lax.stop_gradient(f['fake_r']), d2), (onehot2, d2)])
  terms = {
      'd_fake': lsgan_loss(preds[0], False),
      'd_real': lsgan_loss(preds[1], True),
      'd2_fake': lsgan_loss(preds[2], False),
      'd2_real': lsgan_loss(preds[3], True),
  }
  return sum(terms.values()), terms


def _ge_keys(params):
  return {k: params[k] for k in ('g', 'e')}


def _d_keys(params):
  return {k: params[k] for k in ('d', 'd2') if k in params}


def bicyclegan_schedule(cfg: BicycleGANConfig, steps_per_epoch: int | None = None):
  """lr constant for niter epochs, then linear to 0 over niter_decay epochs.

  Without steps_per_epoch the rate stays at cfg.lr.
  """
  if steps_per_epoch is None:
    return optax.constant_schedule(cfg.lr)
  if steps_per_epoch < 1:
    raise ValueError(f'steps_per_epoch must be >= 1; got {steps_per_epoch}')
  return optax.join_schedules(
      [optax.constant_schedule(cfg.lr),
       optax.linear_schedule(cfg.lr, 0.0, cfg.niter_decay_epochs * steps_per_epoch)],
      [cfg.niter_epochs * steps_per_epoch])


def bicyclegan_optimizer(cfg: BicycleGANConfig, steps_per_epoch: int | None = None):
  """Adam(lr schedule, b1, b2) used for both G/E and D."""
  return optax.adam(bicyclegan_schedule(cfg, steps_per_epoch), b1=cfg.b1, b2=cfg.b2)


def init_bicyclegan_state(predictor, tx_ge, tx_d, key, image_hw=None):
  """TrainState(step 0, params {'g','e','d'[,'d2']}, opt_state {'ge','d'}).

  Jitted (one compile instead of one per op); use `jax.eval_shape` on it for
  shapes only.
  """
  def init(key):
    params = predictor.init(key, image_hw)
    return state_lib.TrainState(
        step=jnp.zeros([], jnp.int32), params=params,
        opt_state={'ge': tx_ge.init(_ge_keys(params)),
                   'd': tx_d.init(_d_keys(params))})
  return jax.jit(init)(key)


def ge_step(predictor, cfg, tx_ge, state, batch, key):
  """One G/E update (D frozen); step unchanged. Returns (state, metrics)."""
  key = jax.random.fold_in(key, state.step)

  def loss_fn(ge_params):
    return ge_loss(predictor, cfg, dict(state.params, **ge_params), batch, key)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      _ge_keys(state.params))
  updates, opt_ge = tx_ge.update(grads, state.opt_state['ge'], _ge_keys(state.params))
  params = dict(state.params, **optax.apply_updates(_ge_keys(state.params), updates))
  new = state.replace(params=params, opt_state=dict(state.opt_state, ge=opt_ge))
  metrics = {'train/loss_ge': loss, 'train/grad_norm_ge': optax.global_norm(grads)}
  metrics.update({f'train/{k}': v for k, v in terms.items()})
  return new, metrics


def d_step(predictor, cfg, tx_d, state, batch, key):
  """One D update (G, E frozen); step + 1. Returns (state, metrics)."""
  key = jax.random.fold_in(key, state.step)

  def loss_fn(d_params):
    return d_loss(predictor, cfg, dict(state.params, **d_params), batch, key)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      _d_keys(state.params))
  updates, opt_d = tx_d.update(grads, state.opt_state['d'], _d_keys(state.params))
  params = dict(state.params, **optax.apply_updates(_d_keys(state.params), updates))
  new = state.replace(step=state.step + 1, params=params,
                      opt_state=dict(state.opt_state, d=opt_d))
  metrics = {'train/loss_d': loss, 'train/grad_norm_d': optax.global_norm(grads)}
  metrics.update({f'train/{k}': v for k, v in terms.items()})
  return new, metrics


def _pad_to_multiple(x, multiple):
  """Pad f32[B,H,W,C] at the bottom/right to multiples (reflect if it fits)."""
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  if not ph and not pw:
    return x
  mode = 'reflect' if ph < h and pw < w else 'edge'
  return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


def sample_guidance(predictor, params, blur, key, n: int):
  """n guidance maps per image from G with z ~ N(0, I) (dropout off).

  blur: u8|f32[B,H,W,3] (any H, W: padded to the G's size multiple inside,
  cropped back). Returns i32[n,B,H,W], argmax of the logits.
  """
  blur = to_float(blur)
  b, h, w, _ = blur.shape
  x = _pad_to_multiple(blur, predictor.size_multiple)
  z = jax.random.normal(key, (n, b, predictor.nz))
  x = jnp.broadcast_to(x[None], (n, *x.shape)).reshape(n * b, *x.shape[1:])
  logits = predictor.generate(params, x, z.reshape(n * b, -1), train=False)
  labels = jnp.argmax(logits, -1).astype(jnp.int32)
  return labels.reshape(n, b, *labels.shape[1:])[:, :, :h, :w]


class BicycleGANSteps(NamedTuple):
  """Jitted functions bound to one predictor, config and optimisers."""
  init: Callable            # init(key, image_hw=None) -> state
  train_step_ge: Callable   # (state, batch, key) -> (state, metrics)
  train_step_d: Callable    # (state, batch, key) -> (state, metrics)
  sample_guidance: Callable  # (params, blur, key, n) -> i32[n,B,H,W]


def make_bicyclegan_steps(predictor, cfg: BicycleGANConfig | None = None,
                          tx_ge=None, tx_d=None) -> BicycleGANSteps:
  """Bind the predictor, loss weights and optimisers (default: the authors')."""
  cfg = cfg or BicycleGANConfig()
  tx_ge = tx_ge or bicyclegan_optimizer(cfg)
  tx_d = tx_d or bicyclegan_optimizer(cfg)
  return BicycleGANSteps(
      init=functools.partial(init_bicyclegan_state, predictor, tx_ge, tx_d),
      train_step_ge=jax.jit(functools.partial(ge_step, predictor, cfg, tx_ge)),
      train_step_d=jax.jit(functools.partial(d_step, predictor, cfg, tx_d)),
      sample_guidance=jax.jit(functools.partial(sample_guidance, predictor),
                              static_argnames='n'))


# ------------------------------------------------------ decomposer training ---
def decomposer_optimizer(total_steps: int, lr: float = 1e-4,
                         weight_decay: float = 1e-4, final_lr: float = 1e-6):
  """Authors' AdamW with cosine annealing to final_lr over total_steps."""
  if total_steps < 1:
    raise ValueError(f'total_steps must be >= 1; got {total_steps}')
  sched = optax.cosine_decay_schedule(lr, total_steps, alpha=final_lr / lr)
  return optax.adamw(sched, weight_decay=weight_decay)


def init_decomposer_state(model, tx, key, image_hw=(64, 64)):
  """TrainState at step 0 for a Decomposer on images of image_hw."""
  h, w = image_hw

  def init(key):
    blur = jnp.zeros((1, h, w, 3), jnp.float32)
    guidance = jnp.zeros((1, h, w), jnp.int32)
    params = model.init(key, blur, train=False, guidance=guidance)['params']
    return state_lib.create(params, tx)
  return jax.jit(init)(key)


def make_decomposer_step(model, tx, reg_form: str = 'official') -> Callable:
  """decomposer_step(state, batch, key, h_score_fn=None, alpha=0.0) -> (state, metrics).

  batch: {'blur': u8|f32[B,H,W,3], 'sharp': u8|f32[B,7,H,W,3],
  'guidance': int[B,H,W]}. Loss: `decomposer_loss` (+ alpha *
  hyperplane_reg(h_score_fn(frames_raw), reg_form) when h_score_fn is given;
  h_score_fn: f32[B,7,H,W,3] -> f32[B,P] forward-pair scores of a frozen H,
  e.g. `functools.partial(models.ordering.forward_scores, h_model, h_params,
  hyperplane)`; it is a static argument: pass the same function object every
  step or the step recompiles). The decomposer has no randomness: `key` is
  accepted for the common step signature and unused.
  """
  @functools.partial(jax.jit, static_argnames='h_score_fn')
  def decomposer_step(state, batch, key, h_score_fn=None, alpha=0.0):
    del key
    for k in ('blur', 'sharp', 'guidance'):
      if k not in batch:
        raise ValueError(f"decomposer batch needs {k!r}; got keys {sorted(batch)}")
    blur = to_float(batch['blur'])
    sharp = to_float(batch['sharp'])
    guidance = jnp.asarray(batch['guidance']).astype(jnp.int32)

    def loss_fn(params):
      out = model.apply({'params': params}, blur, train=True, guidance=guidance)
      loss, terms = decomposer_loss(out, sharp)
      if h_score_fn is not None:
        terms['r_hyp'] = losses.hyperplane_reg(h_score_fn(out['frames_raw']),
                                               form=reg_form)
        loss = loss + alpha * terms['r_hyp']
      return loss, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new = state_lib.apply_gradients(state, grads, tx)
    metrics = {'train/loss': loss, 'train/grad_norm': optax.global_norm(grads)}
    metrics.update({f'train/{k}': v for k, v in terms.items()})
    return new, metrics

  return decomposer_step


# -------------------------------------------------------------------- P_n ---
def decompose_samples(predictor, decomposer, pred_params, dec_params, blur,
                      key, n):
  """n sampled guidances per image, each decomposed.

  blur: u8|f32[B,H,W,3] (any H, W: padded to both networks' size multiples,
  cropped back); key: PRNG key of the n latent draws. Returns
  f32[n,B,7,H,W,3] in [0,1]. Traceable; `n` must be static under jit.
  """
  blur = to_float(blur)
  b, h, w, _ = blur.shape
  m = predictor.size_multiple
  dm = int(decomposer.size_multiple)
  multiple = m * dm // _gcd(m, dm)
  x = _pad_to_multiple(blur, multiple)
  g = sample_guidance(predictor, pred_params, x, key, n)   # i32[n,B,H',W']
  xs = jnp.broadcast_to(x[None], (n, *x.shape)).reshape(n * b, *x.shape[1:])
  out = decomposer.apply({'params': dec_params}, xs, train=False,
                         guidance=g.reshape(n * b, *g.shape[2:]))['frames']
  out = out.reshape(n, b, *out.shape[1:])
  return out[:, :, :, :h, :w]


def _gcd(a, b):
  while b:
    a, b = b, a % b
  return a


_decompose_samples_jit = jax.jit(decompose_samples, static_argnums=(0, 1),
                                 static_argnames='n')


def make_param_sample_fn(predictor, decomposer, n: int | None = None) -> Callable:
  """fn(pred_params, dec_params, batch, key) -> f32[B,7,H,W,3] (n None) or
  f32[n,B,7,H,W,3].

  The params are traced arguments, so evaluating a changing model does not
  recompile: `BestOfNEvaluator(batches_fn, fn, ns).run(pred_params,
  dec_params)`. All sample functions of one (predictor, decomposer) pair
  share one jit cache.
  """
  if n is not None and n < 1:
    raise ValueError(f'n must be >= 1; got {n}')

  def fn(pred_params, dec_params, batch, key):
    if 'blur' not in batch:
      raise ValueError(f"sample_fn batch needs 'blur'; got keys {sorted(batch)}")
    out = _decompose_samples_jit(predictor, decomposer, pred_params, dec_params,
                                 batch['blur'], key, n=n or 1)
    return out if n is not None else out[0]
  return fn


def make_multi_sample_fn(predictor, pred_params, decomposer, dec_params,
                         n: int) -> Callable:
  """fn(batch, key) -> f32[n,B,7,H,W,3] in [0,1]: n guidance draws per image."""
  fn = make_param_sample_fn(predictor, decomposer, n)
  return lambda batch, key: fn(pred_params, dec_params, batch, key)


def make_sample_fn(predictor, pred_params, decomposer, dec_params) -> Callable:
  """sample_fn(batch, key) -> f32[B,7,H,W,3] in [0,1]: one guidance draw per call.

  For `BestOfNEvaluator(batches_fn, sample_fn, ns)`: different keys give
  different guidance maps, hence different decompositions. Any H, W: the
  blur is padded to the predictor's and the decomposer's size multiples and
  the frames cropped back.
  """
  fn = make_param_sample_fn(predictor, decomposer)
  return lambda batch, key: fn(pred_params, dec_params, batch, key)

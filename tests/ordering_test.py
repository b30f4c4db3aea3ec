"""Tests for hypercut_jax.models.ordering (H and its hyperplane)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax import losses
from hypercut_jax.models import ordering


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _abstract_params(model, shape=(1, 64, 64, 6)):
  return jax.eval_shape(model.init, jax.random.key(0),
                        jax.ShapeDtypeStruct(shape, jnp.float32))['params']


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _swap_frame_channels(pairs):
  """Reverse the 3 channels of each of the two frames of f32[...,6]."""
  return pairs[..., [2, 1, 0, 5, 4, 3]]


def _official_score(e, w):
  d = e.shape[-1]
  return e @ w[:d] + w[d] * e.sum(-1)


@pytest.fixture(scope='module')
def tiny():
  model = ordering.OrderingNetTiny()
  params = model.init(jax.random.key(1), jnp.zeros((1, 33, 33, 6)))['params']
  return model, params


def test_default_parameter_count_and_channels():
  params = _abstract_params(ordering.OrderingNet())
  assert _count(params) == 2_315_552
  assert params['stem']['conv']['kernel'].shape == (7, 7, 6, 32)
  ins_outs = [params[f'down{i}']['kernel'].shape[2:] for i in range(5)]
  assert ins_outs == [(32, 64), (64, 128), (128, 128), (128, 128), (128, 128)]
  assert sorted(k for k in params if k.startswith('block')) == [
      f'block{j}' for j in range(6)]


def test_official_param_names_cover_every_conv():
  params = _abstract_params(ordering.OrderingNet())
  names = ordering.official_param_names()
  assert names['model.1'] == ('stem', 'conv')
  assert names['model.11'] == ('down4',)
  assert names['model.18.conv_block.4'] == ('block5', 'conv2', 'conv')
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  convs = {tuple(k.key for k in path[:-1]) for path, _ in flat}
  assert set(names.values()) == convs
  assert len(names) == len(convs) == 1 + 5 + 12


def test_real_forward_64():
  model = ordering.OrderingNet()
  x = _uniform((2, 64, 64, 6))
  variables = model.init(jax.random.key(0), x)
  e = model.apply(variables, x)
  assert e.shape == (2, 128) and e.dtype == jnp.float32
  assert np.all(np.isfinite(e))


def test_shape_256_via_eval_shape():
  model = ordering.OrderingNet()
  params = _abstract_params(model)
  out = jax.eval_shape(model.apply, {'params': params},
                       jax.ShapeDtypeStruct((3, 256, 256, 6), jnp.float32))
  assert out.shape == (3, 128) and out.dtype == jnp.float32


@pytest.mark.parametrize('shape', [(1, 32, 64, 6), (1, 64, 32, 6), (1, 16, 16, 6)])
def test_sides_below_33_raise(shape):
  with pytest.raises(ValueError, match=r'>= 33 px.*' + str(shape[1])):
    _abstract_params(ordering.OrderingNet(), shape)


def test_smallest_side_33_runs_and_bad_channels_raise(tiny):
  model, params = tiny
  assert ordering.min_side() == 33
  assert model.apply({'params': params}, _uniform((1, 33, 40, 6))).shape == (1, 8)
  with pytest.raises(ValueError, match=r'\[N,H,W,6\]'):
    model.apply({'params': params}, _uniform((1, 33, 33, 3)))


def test_embed_dim_unreachable_raises():
  with pytest.raises(ValueError, match='embed_dim'):
    _abstract_params(ordering.OrderingNet(nf=2, embed_dim=128))


@pytest.mark.parametrize('slope,affine', [(1.0, True), (0.2, False), (0.0, False)])
def test_stem_and_downsampling_affine_only_for_slope_one(slope, affine):
  # No residual blocks: what is left is normalise -> stem -> downsampling ->
  # mean pool, one affine map exactly when the activation is the identity.
  model = ordering.OrderingNet(nf=4, embed_dim=8, n_blocks=0,
                               negative_slope=slope)
  x1, x2 = _uniform((2, 40, 36, 6), 1), _uniform((2, 40, 36, 6), 2)
  variables = model.init(jax.random.key(3), x1)
  f = lambda x: model.apply(variables, x)
  for a in (0.3, 2.5):  # inside and outside the segment
    lhs = f(a * x1 + (1 - a) * x2)
    rhs = a * f(x1) + (1 - a) * f(x2)
    err = float(jnp.max(jnp.abs(lhs - rhs)))
    scale = float(jnp.max(jnp.abs(rhs)))
    if affine:
      assert err <= 1e-5 * max(scale, 1.0)
    else:
      assert err > 1e-3 * scale


def test_default_net_is_not_affine():
  # The ReLUs inside the residual blocks are the non-linearity.
  model = ordering.OrderingNet(nf=4, embed_dim=8, n_blocks=2)
  x1, x2 = _uniform((1, 36, 36, 6), 1), _uniform((1, 36, 36, 6), 2)
  v = model.init(jax.random.key(5), x1)
  f = lambda x: model.apply(v, x)
  err = jnp.max(jnp.abs(f(2.5 * x1 - 1.5 * x2) - (2.5 * f(x1) - 1.5 * f(x2))))
  assert err > 1e-4


def test_bgr_and_rgb_differ_exactly_by_a_channel_swap(tiny):
  _, params = tiny
  bgr = ordering.OrderingNetTiny(channel_order='bgr')
  rgb = ordering.OrderingNetTiny(channel_order='rgb')
  x = _uniform((3, 33, 35, 6))
  v = {'params': params}
  np.testing.assert_allclose(bgr.apply(v, x),
                             rgb.apply(v, _swap_frame_channels(x)),
                             rtol=1e-6, atol=1e-6)
  assert not np.allclose(bgr.apply(v, x), rgb.apply(v, x), atol=1e-4)


def test_normalize_pairs_by_hand():
  px = jnp.asarray([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], jnp.float32)  # RGB, RGB
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  # BGR: channel 0 is blue, normalised with mean[0] / std[0] as the official code.
  want_bgr = [(0.3 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0.1 - 0.406) / 0.225,
              (0.6 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.4 - 0.406) / 0.225]
  want_rgb = [(0.1 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0.3 - 0.406) / 0.225,
              (0.4 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.6 - 0.406) / 0.225]
  np.testing.assert_allclose(ordering.normalize_pairs(px[None, None], 'bgr')[0, 0],
                             want_bgr, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ordering.normalize_pairs(px, 'rgb', mean, std),
                             want_rgb, rtol=1e-6, atol=1e-6)
  custom = ordering.normalize_pairs(px, 'rgb', (0.0, 0.0, 0.0), (0.5, 1.0, 2.0))
  np.testing.assert_allclose(custom, [0.2, 0.2, 0.15, 0.8, 0.5, 0.3], rtol=1e-6, atol=1e-6)


def test_model_uses_configured_statistics(tiny):
  # mean/std are model fields: shifting the input by a constant per channel
  # and the mean by the same constant leaves the output unchanged.
  _, params = tiny
  x = _uniform((2, 33, 33, 6))
  base = ordering.OrderingNetTiny(channel_order='rgb')
  shifted = ordering.OrderingNetTiny(channel_order='rgb',
                                     mean=(0.585, 0.456, 0.306))
  delta = jnp.asarray([0.1, 0.0, -0.1] * 2)
  np.testing.assert_allclose(base.apply({'params': params}, x),
                             shifted.apply({'params': params}, x + delta),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kw,match', [
    (dict(channel_order='brg'), 'channel_order'),
    (dict(std=(0.2, 0.0, 0.2)), 'std'),
    (dict(mean=(0.5, 0.5)), 'mean'),
])
def test_normalize_bad_arguments_raise(kw, match):
  with pytest.raises(ValueError, match=match):
    ordering.normalize_pairs(jnp.zeros((2, 6)), **kw)


def test_init_hyperplane():
  w = ordering.init_hyperplane(jax.random.key(0), 128)
  assert w.shape == (129,) and w.dtype == jnp.float32
  assert float(w.min()) >= -1.0 and float(w.max()) < 1.0
  assert float(w.min()) < -0.5 and float(w.max()) > 0.5  # spans the range
  np.testing.assert_array_equal(w, ordering.init_hyperplane(jax.random.key(0), 128))
  assert not np.array_equal(w, ordering.init_hyperplane(jax.random.key(1), 128))
  with pytest.raises(ValueError, match='embed_dim'):
    ordering.init_hyperplane(jax.random.key(0), 0)


def test_pair_scores_match_direct_apply(tiny):
  model, params = tiny
  w = ordering.init_hyperplane(jax.random.key(2), model.embed_dim)
  frames = _uniform((2, 7, 33, 34, 3), 4)
  u, v = ordering.pair_scores(model, params, w, frames)
  assert u.shape == v.shape == (2, 3)
  for k, (a, b) in enumerate([(0, 6), (1, 5), (2, 4)]):
    fwd = jnp.concatenate([frames[:, a], frames[:, b]], -1)
    rev = jnp.concatenate([frames[:, b], frames[:, a]], -1)
    e_f = model.apply({'params': params}, fwd)
    e_r = model.apply({'params': params}, rev)
    np.testing.assert_allclose(u[:, k], _official_score(e_f, w), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v[:, k], _official_score(e_r, w), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      ordering.forward_scores(model, params, w, frames), u, rtol=1e-5, atol=1e-6)
  # Full variables are accepted too; time reversal swaps the two orders.
  u2, v2 = ordering.pair_scores(model, {'params': params}, w, frames[:, ::-1])
  np.testing.assert_allclose(u2, v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(v2, u, rtol=1e-5, atol=1e-6)


def test_bad_frames_or_hyperplane_raise(tiny):
  model, params = tiny
  w = ordering.init_hyperplane(jax.random.key(2), model.embed_dim)
  with pytest.raises(ValueError, match=r'\[B,T,H,W,3\]'):
    ordering.pair_scores(model, params, w, jnp.zeros((7, 33, 33, 3)))
  with pytest.raises(ValueError, match='hyperplane'):
    ordering.forward_scores(model, params, w[:-1], jnp.zeros((1, 7, 33, 33, 3)))


def test_jit_grad_of_ordering_loss(tiny):
  model, params = tiny
  w = ordering.init_hyperplane(jax.random.key(2), model.embed_dim)
  frames = _uniform((2, 7, 33, 33, 3), 6)

  def loss_fn(p, hyperplane):
    u, v = ordering.pair_scores(model, p, hyperplane, frames)
    return losses.ordering_loss(u, v)

  loss, (g_params, g_plane) = jax.jit(
      jax.value_and_grad(loss_fn, argnums=(0, 1)))(params, w)
  assert np.isfinite(float(loss))
  assert jax.tree.structure(g_params) == jax.tree.structure(params)
  leaves = jax.tree.leaves(g_params)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
  assert 'hyperplane' not in str(jax.tree.structure(params))
  np.testing.assert_array_equal(g_plane, np.zeros_like(w))


def test_bf16_compute_keeps_f32_params(tiny):
  _, params32 = tiny
  model = ordering.OrderingNetTiny(dtype=jnp.bfloat16)
  x = _uniform((2, 33, 33, 6))
  params = model.init(jax.random.key(1), x)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  e = model.apply({'params': params}, x)
  assert e.shape == (2, 8)
  e32 = ordering.OrderingNetTiny().apply({'params': params32}, x)
  e16 = model.apply({'params': params32}, x).astype(jnp.float32)
  assert np.all(np.isfinite(e16))
  np.testing.assert_allclose(e16, e32, rtol=0.02, atol=0.02 * float(jnp.abs(e32).max()))

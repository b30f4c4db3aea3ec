"""Tests for hypercut_jax.models.layers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax.models import layers


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def test_reflect_pad_matches_numpy_reflect():
  x = _image((1, 4, 5, 2))
  np.testing.assert_array_equal(
      layers.reflect_pad(x, 2),
      np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect'))


def test_reflect_pad_too_small_raises():
  with pytest.raises(ValueError, match='spatial size'):
    layers.reflect_pad(jnp.zeros((1, 3, 3, 1)), 3)


def test_reflect_conv_keeps_size_and_counts_params():
  m = layers.ReflectConv(8, 7)
  x = _image((2, 9, 10, 6))
  v = m.init(jax.random.key(0), x)
  assert m.apply(v, x).shape == (2, 9, 10, 8)
  n = sum(p.size for p in jax.tree.leaves(v))
  assert n == 7 * 7 * 6 * 8 + 8


def test_strided_conv_pads_symmetrically():
  # A 3x3 kernel with a single 1 at the centre picks pixel (2i, 2j) when the
  # padding is (1, 1); XLA 'SAME' on an even input would pick (2i+1, 2j+1).
  conv = layers.strided_conv(1)
  x = _image((1, 8, 8, 1))
  k = jnp.zeros((3, 3, 1, 1)).at[1, 1, 0, 0].set(1.0)
  out = conv.apply({'params': {'kernel': k, 'bias': jnp.zeros((1,))}}, x)
  np.testing.assert_allclose(out, x[:, ::2, ::2], atol=1e-6)


def test_resnet_block_is_identity_with_zero_second_conv():
  m = layers.ResnetBlock(4)
  x = _image((1, 6, 6, 4))
  v = m.init(jax.random.key(1), x)
  v = jax.tree.map(lambda a: a, v)
  v['params']['conv2']['conv']['kernel'] = jnp.zeros_like(v['params']['conv2']['conv']['kernel'])
  v['params']['conv2']['conv']['bias'] = jnp.zeros_like(v['params']['conv2']['conv']['bias'])
  np.testing.assert_allclose(m.apply(v, x), x, atol=1e-6)


def test_conv_lstm_shapes_and_grad():
  cell = layers.ConvLSTMCell(5)
  x = _image((2, 6, 7, 3))
  carry = layers.ConvLSTMCell.initial_carry((2, 6, 7), 5)
  v = cell.init(jax.random.key(0), carry, x)
  (c, h), out = cell.apply(v, carry, x)
  assert c.shape == h.shape == out.shape == (2, 6, 7, 5)
  assert np.all(np.abs(h) < 1)
  g = jax.grad(lambda p: jnp.sum(cell.apply(p, carry, x)[1]))(v)
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(g))


def test_conv_lstm_matches_hand_computed_gates():
  # 1x1 kernel, one feature: gates are scalars we can compute by hand.
  cell = layers.ConvLSTMCell(1, kernel_size=1)
  x = jnp.full((1, 1, 1, 1), 0.5)
  carry = (jnp.full((1, 1, 1, 1), 0.2), jnp.full((1, 1, 1, 1), -0.1))
  kernel = jnp.array([[1.0, 2.0, -1.0, 0.5], [0.3, -0.4, 0.2, 1.0]])[None, None]
  bias = jnp.array([0.1, 0.0, -0.2, 0.3])
  (c, h), _ = cell.apply({'params': {'gates': {'kernel': kernel, 'bias': bias}}}, carry, x)
  z = 0.5 * kernel[0, 0, 0] + (-0.1) * kernel[0, 0, 1] + bias
  sig = lambda a: 1 / (1 + np.exp(-a))
  c_ref = sig(z[1]) * 0.2 + sig(z[0]) * np.tanh(z[3])
  h_ref = sig(z[2]) * np.tanh(c_ref)
  np.testing.assert_allclose(c[0, 0, 0, 0], c_ref, rtol=1e-6)
  np.testing.assert_allclose(h[0, 0, 0, 0], h_ref, rtol=1e-6)


def test_warp_zero_flow_is_identity():
  img = _image((2, 3, 9, 11, 3))
  out = layers.backward_warp(img, jnp.zeros((2, 3, 9, 11, 2)))
  np.testing.assert_allclose(out, img, atol=1e-6)


@pytest.mark.parametrize('padding', ['border', 'zeros'])
def test_warp_integer_flow_is_a_shift_in_the_interior(padding):
  img = _image((1, 10, 12, 3))
  flow = jnp.zeros((1, 10, 12, 2)).at[..., 0].set(2.0).at[..., 1].set(-1.0)
  out = layers.backward_warp(img, flow, padding=padding)
  # out[y, x] = img[y - 1, x + 2]
  np.testing.assert_allclose(out[:, 1:, :-2], img[:, :-1, 2:], atol=1e-6)


def test_warp_half_pixel_is_the_average():
  img = _image((1, 4, 5, 1))
  flow = jnp.zeros((1, 4, 5, 2)).at[..., 0].set(0.5)
  out = layers.backward_warp(img, flow)
  np.testing.assert_allclose(out[:, :, :-1], 0.5 * (img[:, :, :-1] + img[:, :, 1:]), atol=1e-6)


def test_warp_zero_padding_reads_zero_outside():
  img = jnp.ones((1, 4, 4, 1))
  flow = jnp.full((1, 4, 4, 2), 10.0)
  np.testing.assert_allclose(layers.backward_warp(img, flow, padding='zeros'), 0.0)
  np.testing.assert_allclose(layers.backward_warp(img, flow, padding='border'), 1.0)


def test_warp_gradient_wrt_flow_is_finite_and_nonzero():
  img = _image((1, 8, 8, 3))
  flow = jnp.full((1, 8, 8, 2), 0.3)
  g = jax.jit(jax.grad(lambda f: jnp.sum(layers.backward_warp(img, f) ** 2)))(flow)
  assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_warp_bad_flow_shape_raises():
  with pytest.raises(ValueError, match='flow must be'):
    layers.backward_warp(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 5, 2)))


def test_pixel_unshuffle_round_trip_and_torch_order():
  x = _image((2, 8, 12, 3))
  y = layers.pixel_unshuffle(x, 4)
  assert y.shape == (2, 2, 3, 48)
  np.testing.assert_array_equal(layers.pixel_shuffle(y, 4), x)
  # torch order: out channel c*r*r + i*r + j holds in[h*r+i, w*r+j, c].
  c, i, j = 2, 1, 3
  np.testing.assert_array_equal(y[:, 1, 2, c * 16 + i * 4 + j], x[:, 1 * 4 + i, 2 * 4 + j, c])


def test_pixel_unshuffle_bad_size_raises():
  with pytest.raises(ValueError, match='divisible'):
    layers.pixel_unshuffle(jnp.zeros((1, 10, 10, 3)), 4)


def test_leaky_relu_slopes():
  x = jnp.array([-2.0, 3.0])
  np.testing.assert_array_equal(layers.leaky_relu(1.0)(x), x)
  np.testing.assert_allclose(layers.leaky_relu(0.2)(x), [-0.4, 3.0])
  np.testing.assert_allclose(layers.leaky_relu(0.0)(x), [0.0, 3.0])

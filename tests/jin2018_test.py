"""Tests for hypercut_jax.models.jin2018 (the Jin et al. 2018 cascade)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax import losses
from hypercut_jax import models
from hypercut_jax.models import jin2018

# Threefry init compiles very slowly on XLA:CPU; 'rbg' keys init the same
# shapes in a fraction of the time.
KEY = jax.random.key(0, impl='rbg')


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_params(model, size=40):
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(KEY, x, train=False), x)["params"]


def smooth_sequence(batch, size, seed=0, shift=2):
  """Random smooth images moved by `shift` px per frame.

  Returns (blur f32[B,S,S,3], sharp f32[B,7,S,S,3]), values in [0,1].
  """
  rng = np.random.default_rng(seed)
  big = size + 6 * shift
  coarse = rng.uniform(size=(batch, 6, 6, 3)).astype(np.float32)
  img = jax.image.resize(jnp.asarray(coarse), (batch, big, big, 3), 'cubic')
  img = jnp.clip(img, 0, 1)
  sharp = jnp.stack([img[:, :size, t * shift:t * shift + size]
                     for t in range(7)], axis=1)
  return sharp.mean(axis=1), sharp


@functools.partial(jax.jit, static_argnums=0)
def apply(model, params, blur):
  """Jitted forward, cached per (model, shapes) across the tests."""
  return model.apply({'params': params}, blur, train=True)


predict = jax.jit(models.predict, static_argnums=0)


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


@pytest.fixture(scope='module')
def tiny():
  # Flax's default init throughout (start_at_blur=False): the frames differ
  # from the blur and from each other. The blur start: start_at_blur_test.
  model = jin2018.Tiny(start_at_blur=False)
  params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 20, 20, 3)),
                                        train=False))(KEY)['params']
  return model, params


def test_full_size_parameter_count_matches_authors_release():
  params = _abstract_params(jin2018.Model())
  # The authors' centerEsti + 2 x N8_IN + 2 x N9_IN, counted from their code.
  assert {k: _count(v) for k, v in params.items()} == {
      'centre': 4_972_032, 'net_a': 3_934_464, 'net_b': 3_934_464,
      'net_c': 2_686_208, 'net_d': 2_686_208}
  assert _count(params) == 18_213_376
  # Colour-shared weights: every head sees one colour channel unshuffled.
  assert params['centre']['head']['kernel'].shape == (5, 5, 16, 144)
  assert params['net_a']['head_blur']['kernel'].shape == (5, 5, 25, 64)
  assert params['net_c']['head_a']['kernel'].shape == (5, 5, 25, 32)
  assert params['net_d']['trunk']['fuse2']['conv2']['kernel'].shape == (
      3, 3, 128, 25)
  # Depths: 3+3+3+3 centre blocks, 4+4+4 (net_a/b), 2+4+2 (net_c/d).
  blocks = lambda p: sorted(k for k in p['trunk'] if 'block' in k)
  assert len(blocks(params['centre'])) == 12
  assert len(blocks(params['net_b'])) == 12
  assert len(blocks(params['net_c'])) == 8
  assert 'bias' not in params['centre']['head']  # bias-free convs


def test_small_variant_is_smaller_and_same_topology():
  full = _abstract_params(jin2018.Model())
  small = _abstract_params(jin2018.Small())
  assert 500_000 < _count(small) < _count(full) / 4
  assert set(small) == set(full)


def test_fold_colours_roundtrip():
  x = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float32).reshape(2, 4, 5, 3)
  folded = jin2018.fold_colours(x)
  assert folded.shape == (6, 4, 5, 1)
  np.testing.assert_array_equal(folded[1, ..., 0], x[0, ..., 1])
  np.testing.assert_array_equal(jin2018.unfold_colours(folded), x)


def test_preact_block_is_identity_with_zero_convs():
  block = jin2018.PreActBlock(4, (2, 4))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 4)),
                  jnp.float32)
  v = block.init(KEY, x)
  zero = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.zeros_like(a) if p[-1].key == 'kernel' else a, v)
  np.testing.assert_allclose(block.apply(zero, x), x, atol=1e-6)
  assert v['params']['conv2']['kernel'].shape == (3, 3, 4, 4)
  assert block.apply(v, x).shape == x.shape


@pytest.mark.parametrize('shape', [(1, 20, 20), (2, 40, 60)])
def test_output_shapes(tiny, shape):
  model, params = tiny
  blur = jnp.full((*shape, 3), 0.5)
  out = apply(model, params, blur)
  assert set(out) == {'frames'}
  assert out['frames'].shape == (shape[0], 7, *shape[1:], 3)
  assert np.all(np.isfinite(out['frames']))


@pytest.mark.parametrize('shape', [(1, 30, 40, 3), (1, 40, 40, 1), (40, 40, 3)])
def test_bad_input_raises(tiny, shape):
  model, params = tiny
  with pytest.raises(ValueError, match='blur'):
    model.apply({'params': params}, jnp.zeros(shape), train=False)


def test_cascade_wiring_and_weight_sharing(tiny):
  model, params = tiny
  blur, _ = smooth_sequence(2, 20, seed=3)
  frames = apply(model, params, blur)['frames']

  centre = jin2018.JinCentre(model.centre_features, model.centre_stages,
                             model.centre_tail)
  def side(name, n_plain):
    net = jin2018.SideNet(model.side_features,
                          jin2018.side_stages(n_plain, model.side_dilated),
                          model.side_tail)
    return lambda a, r: net.apply({'params': params[name]}, blur, a, r) + r

  @jax.jit
  def reference():
    x3 = centre.apply({'params': params['centre']}, blur)
    n_a = side('net_a', model.deep_plain)
    n_b = side('net_b', model.deep_plain)
    n_c = side('net_c', model.shallow_plain)
    n_d = side('net_d', model.shallow_plain)
    x2 = n_a(x3, x3)
    x4 = n_b(x2, x3)
    x1, x5 = n_c(x3, x2), n_c(x3, x4)
    x0, x6 = n_d(x2, x1), n_d(x4, x5)
    return jnp.stack([x0, x1, x2, x3, x4, x5, x6], axis=1)

  np.testing.assert_allclose(frames, reference(), atol=1e-4)
  # The frames really differ (the nets are not collapsed onto one output).
  assert float(jnp.abs(frames[:, 0] - frames[:, 6]).max()) > 1e-4


def test_bfloat16_compute_keeps_float32_params_and_output(tiny):
  model, params = tiny
  bf = jin2018.Tiny(dtype=jnp.bfloat16)
  blur, _ = smooth_sequence(1, 20)
  out = apply(bf, params, blur)['frames']
  ref = apply(model, params, blur)['frames']
  assert out.dtype == jnp.float32
  # bf16 rounding grows along the cascade; a few percent RMS is expected.
  rel_rms = jnp.sqrt(jnp.mean((out - ref) ** 2) / jnp.mean(ref ** 2))
  assert 0 < float(rel_rms) < 0.1


def test_predict_pads_crops_and_clips(tiny):
  model, params = tiny
  variables = {'params': params}
  blur = _uniform((2, 23, 57, 3))
  frames = predict(model, variables, blur)
  assert frames.shape == (2, 7, 23, 57, 3)
  assert float(frames.min()) >= 0 and float(frames.max()) <= 1
  # Same as reflect-padding by hand to 40x60 and cropping the raw output.
  padded = jnp.asarray(np.pad(np.asarray(blur),
                              ((0, 0), (0, 17), (0, 3), (0, 0)), 'reflect'))
  raw = apply(model, params, padded)['frames']
  np.testing.assert_allclose(frames, jnp.clip(raw[:, :, :23, :57], 0, 1),
                             atol=1e-5)
  # The raw output leaves [0, 1] somewhere, so the clipping was exercised.
  assert float(raw.min()) < 0 or float(raw.max()) > 1


def test_short_training_run_lowers_order_invariant_loss(tiny):
  model, params = tiny
  blur, sharp = smooth_sequence(2, 40, seed=1)
  tx = optax.adam(3e-3)

  def loss_fn(p):
    frames = model.apply({'params': p}, blur, train=True)['frames']
    return losses.order_invariant_loss(frames, sharp)

  @jax.jit
  def step(p, opt):
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, updates), opt, loss, optax.global_norm(g)

  opt = tx.init(params)
  history = []
  for _ in range(24):
    params, opt, loss, gnorm = step(params, opt)
    history.append(float(loss))
    assert np.isfinite(float(gnorm)) and float(gnorm) > 0
  assert np.mean(history[-5:]) < 0.7 * history[0], history

"""Tests for `config.loss.space`: the generator deblur losses in the official
trainer's ImageNet-normalised space (train/generator.py, train/animation.py).

The references are the official formulas written out in numpy on the
official tensors: frames in BGR order, NCHW, each channel normalised with
the RGB-order ImageNet statistics as is.
"""
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import common
from hypercut_jax import losses
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import animation
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import sharding as sharding_lib

RTOL = 1e-5
# The official statistics in the order its code lists them (RGB), applied
# to OpenCV's B, G, R channels as is.
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
JIN_KW = {'centre_features': 4, 'centre_stages': [[[1, 1]]], 'centre_tail': 4,
          'side_features': 4, 'deep_plain': 1, 'shallow_plain': 1,
          'side_dilated': [[1, 2]], 'side_tail': 4}


# ------------------------------------------------------ numpy references ---
def official_tensor(x):
  """RGB f[B,T,H,W,3] in [0,1] -> the official f64[B,T,3,H,W] (BGR, normed)."""
  bgr = np.asarray(x, np.float64)[..., ::-1]
  return np.moveaxis((bgr - MEAN) / STD, -1, 2)


def unit_tensor(x):
  """RGB f[B,T,H,W,3] -> f64[B,T,3,H,W], values as is."""
  return np.moveaxis(np.asarray(x, np.float64), -1, 2)


def np_mse(a, b):
  return np.mean(np.square(a - b))


def np_oi_bracket(p, g):
  """sum_{k<3} MSE(|p_k+p_6-k|, |g_k+g_6-k|) + MSE(|p_k-p_6-k|, |g_k-g_6-k|)."""
  total = 0.0
  for k in range(3):
    j = 6 - k
    total += np_mse(np.abs(p[:, k] + p[:, j]), np.abs(g[:, k] + g[:, j]))
    total += np_mse(np.abs(p[:, k] - p[:, j]), np.abs(g[:, k] - g[:, j]))
  return total


def np_oi(p, g):
  return np_oi_bracket(p, g) / 7


def np_charbonnier(p, g):
  return np.mean(np.sqrt(np.square(p - g) + 1e-6))


def np_multiscale_oi(pyramid, g):
  """Purohit: gt subsampled by every 2nd pixel per scale (NCHW), / scales."""
  total = 0.0
  for s, p in enumerate(pyramid):
    if s:
      g = g[..., ::2, ::2]
    total += np_oi_bracket(p, g)
  return total / len(pyramid)


def np_decomposer(stage1, stage2, g):
  return np_mse(stage1, g) + np_mse(stage2, g)


# ------------------------------------------------------------------- data ---
def _random(shape, seed):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


def _image_like(shape, seed, noise=0.05):
  """(pred, gt) f32[..., 7, H, W, 3] in [0,1]: smooth gt, pred = gt + noise."""
  rng = np.random.default_rng(seed)
  *lead, t, h, w, c = shape
  coarse = rng.random((*lead, t, h // 4, w // 4, c))
  gt = np.repeat(np.repeat(coarse, 4, axis=-3), 4, axis=-2)
  pred = np.clip(gt + noise * rng.standard_normal(gt.shape), 0.0, 1.0)
  return pred.astype(np.float32), gt.astype(np.float32)


PRED = _random((2, 7, 16, 16, 3), 0)
GT = _random((2, 7, 16, 16, 3), 1)


def _pyramid(seed):
  return [_random((2, 7, 16 >> s, 16 >> s, 3), seed + s) for s in range(4)]


def _deblur(out, name, space, flow_weight=0.0):
  return generator_lib.deblur_terms(out, jnp.asarray(GT), name, flow_weight,
                                    space)[1]


# ----------------------------------------------------------------- tests ---
def test_constants_are_the_official_ones():
  np.testing.assert_allclose(ordering_model.IMAGENET_MEAN, MEAN)
  np.testing.assert_allclose(ordering_model.IMAGENET_STD, STD)


def test_loss_space_is_h_normalisation_in_rgb_order():
  x = _random((2, 5, 6, 3), 2)
  got = np.asarray(generator_lib.loss_space(x, 'official'))
  # R gets (0.406, 0.225), G (0.456, 0.224), B (0.485, 0.229).
  np.testing.assert_allclose(got[..., 0], (x[..., 0] - 0.406) / 0.225,
                             rtol=1e-6)
  np.testing.assert_allclose(got[..., 2], (x[..., 2] - 0.485) / 0.229,
                             rtol=1e-6)
  # H's own normalisation ('bgr') of the pair (x, x), back in RGB order.
  h = ordering_model.normalize_pairs(jnp.concatenate([x, x], -1), 'bgr')
  np.testing.assert_allclose(got, np.asarray(h[..., 2::-1]), rtol=1e-6)
  assert generator_lib.loss_space(x, 'unit') is x


@pytest.mark.parametrize('name,ref', [
    ('order_invariant', np_oi), ('charbonnier', np_charbonnier),
    ('mse', np_mse)])
def test_official_space_equals_the_official_formulas(name, ref):
  got = float(_deblur({'frames': jnp.asarray(PRED)}, name, 'official')['deblur'])
  want = ref(official_tensor(PRED), official_tensor(GT))
  np.testing.assert_allclose(got, want, rtol=RTOL)


@pytest.mark.parametrize('name,ref', [
    ('order_invariant', np_oi), ('charbonnier', np_charbonnier),
    ('mse', np_mse)])
def test_unit_space_keeps_the_previous_losses(name, ref):
  got = float(_deblur({'frames': jnp.asarray(PRED)}, name, 'unit')['deblur'])
  np.testing.assert_allclose(
      got, float(losses.deblur_loss(name, PRED, GT)), rtol=1e-6)
  np.testing.assert_allclose(got, ref(unit_tensor(PRED), unit_tensor(GT)),
                             rtol=RTOL)


def test_purohit_multiscale_in_both_spaces_flow_unchanged():
  pyramid = _pyramid(10)
  flows = [jnp.full((2, 16, 16, 2), 0.5), jnp.full((2, 8, 8, 2), -1.5)]
  out = {'frames': jnp.asarray(pyramid[0]),
         'pyramid': [jnp.asarray(p) for p in pyramid], 'flows': flows}
  for space, to_tensor in (('official', official_tensor),
                           ('unit', unit_tensor)):
    terms = _deblur(out, 'order_invariant', space, flow_weight=0.02)
    want = np_multiscale_oi([to_tensor(p) for p in pyramid], to_tensor(GT))
    np.testing.assert_allclose(float(terms['deblur']), want, rtol=RTOL)
    np.testing.assert_allclose(float(terms['flow']), 1.0, rtol=1e-6)
  np.testing.assert_allclose(
      float(_deblur(out, 'order_invariant', 'unit')['deblur']),
      float(losses.multiscale_deblur_loss('order_invariant', pyramid, GT)),
      rtol=1e-6)


@pytest.mark.parametrize('space,to_tensor', [('official', official_tensor),
                                             ('unit', unit_tensor)])
def test_decomposer_loss_in_both_spaces(space, to_tensor):
  stage1, stage2 = _random(GT.shape, 20), _random(GT.shape, 21)
  out = {'stage1': jnp.asarray(stage1), 'frames_raw': jnp.asarray(stage2),
         'frames': jnp.clip(stage2, 0, 1)}
  two_stage = types.SimpleNamespace(two_stage=True)
  total, terms = animation.decomposer_terms(two_stage, out, jnp.asarray(GT),
                                            'mse', space)
  want = np_decomposer(to_tensor(stage1), to_tensor(stage2), to_tensor(GT))
  np.testing.assert_allclose(float(total), want, rtol=RTOL)
  np.testing.assert_allclose(float(terms['deblur']),
                             np_mse(to_tensor(stage2), to_tensor(GT)), rtol=RTOL)


def test_factors_between_the_spaces_on_image_like_data():
  pred, gt = _image_like((2, 7, 32, 32, 3), 3)
  ratio = {}
  for name in ('order_invariant', 'charbonnier', 'mse'):
    off, unit = (float(generator_lib.deblur_terms(
        {'frames': jnp.asarray(pred)}, jnp.asarray(gt), name, 0.0, s)[0])
                 for s in ('official', 'unit'))
    ratio[name] = off / unit
  # Differences scale by 1/std_c (~4.4), squares by 1/std_c^2 (~19.6); OI's
  # |p_k + p_j| terms can only shrink (sign changes around 2 * mean_c).
  assert 15.0 < ratio['order_invariant'] <= 20.0, ratio
  assert 18.5 < ratio['mse'] < 20.0, ratio
  assert 4.0 < ratio['charbonnier'] < 4.5, ratio


def test_unknown_space_raises():
  match = r"config.loss.space='pixels'; known: \['official', 'unit'\]"
  with pytest.raises(ValueError, match=match):
    generator_lib.loss_space(GT, 'pixels')
  with pytest.raises(ValueError, match=match):
    generator_lib.make_train_step(types.SimpleNamespace(), optax.sgd(0.1),
                                  space='pixels')
  with pytest.raises(ValueError, match=match):
    animation.make_decomposer_step(types.SimpleNamespace(), optax.sgd(0.1),
                                   space='pixels')


def test_generator_stage_config_defaults_to_official():
  for model in ('jin2018', 'purohit2019'):
    assert common.generator_stage(model).loss.space == 'official'


def _loop_config(space):
  return ml_collections.ConfigDict(dict(
      stage='generator', precision='float32',
      data={'name': 'synthetic'},
      model={'name': 'jin2018', 'kwargs': JIN_KW, 'centre_checkpoint': None},
      loss={'deblur': 'order_invariant', 'flow_weight': 0.0, 'space': space},
      hypercut={'checkpoint': None, 'alpha': 0.2, 'reg_form': 'official',
                'order_targets': False},
      input={'crop': 20},
      eval={'lpips': False, 'num_examples': 0, 'middle': None}))


@pytest.mark.slow
def test_loop_generator_step_runs_in_both_spaces():
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  tx = optax.sgd(1e-3)
  schedule = optax.constant_schedule(1e-3)
  rng = np.random.default_rng(4)
  sharp = rng.integers(0, 256, (2, 7, 20, 20, 3), dtype=np.uint8)
  batch = {'blur': sharp.mean(1).astype(np.uint8), 'sharp': sharp}
  deblur, state = {}, None
  for space in ('official', 'unit'):
    parts = generator_lib.parts(_loop_config(space), mesh, tx=tx,
                                schedule=schedule)
    if state is None:   # the same initial params for both spaces
      state = jax.jit(parts.init)(jax.random.key(0, impl='rbg'))
    _, m = jax.jit(parts.step)(state, batch, jax.random.key(1))
    deblur[space] = float(m['train/deblur'])
    assert np.isfinite(float(m['train/loss']))
  assert deblur['official'] > 5 * deblur['unit'] > 0, deblur
  with pytest.raises(ValueError, match='config.loss.space'):
    generator_lib.parts(_loop_config('pixels'), mesh, tx=tx,
                        schedule=schedule)
  # The decomposer stage reads the same field.
  with pytest.raises(ValueError, match='config.loss.space'):
    animation.decomposer_parts(_loop_config('pixels'), tx, schedule, mesh,
                               model=types.SimpleNamespace())

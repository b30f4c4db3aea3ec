"""Tests for hypercut_jax.models.zhong2022 (decomposer + BicycleGAN parts)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax.data import guidance as guidance_lib
from hypercut_jax.models import zhong2022 as Z

# XLA:CPU compiles threefry random draws slowly (seconds per draw on the
# shared 2-core machine); init with the rbg generator keeps this file fast.
KEY = jax.random.key(0, impl='rbg')


def _conv(cin, cout, k, bias=True):
  return cin * cout * k * k + (cout if bias else 0)


def _official_stage_params(cin, f=128, mx=512, n_down=2, n_blocks=12, out=21):
  """Authors' Decomposer parameter count (torch parameters(), BN affine)."""
  w = lambda i: min(mx, f * 2 ** i)
  n = _conv(cin, f, 7) + 2 * f
  for i in range(n_down):
    n += _conv(w(i), w(i + 1), 3) + _conv(w(i + 1), w(i + 1), 3) + 4 * w(i + 1)
  n += n_blocks * (2 * _conv(w(n_down), w(n_down), 3) + 4 * w(n_down))
  for i in range(n_down):
    a, b = w(n_down - i), w(n_down - i - 1)
    n += _conv(a, b, 4) + _conv(b, b, 3) + 4 * b
  return n + _conv(f, out, 7)


def _official_unet_params(nz=4, ngf=64, n=8, cin=3, cout=5):
  inner = [ngf * min(2 ** i, 8) for i in range(n)]
  outer = [cout] + inner[:-1]
  total = 0
  for i in range(n):
    c_in = cin if i == 0 else inner[i - 1]
    total += _conv(c_in + nz, inner[i], 4)
    total += _conv(inner[i] * (1 if i == n - 1 else 2), outer[i], 4)
  return total


def _official_encoder_params(cin=5, nef=64, n_blocks=5, nz=4):
  total = _conv(cin, nef, 4)
  for n in range(1, n_blocks):
    a, b = nef * min(4, n), nef * min(4, n + 1)
    total += _conv(a, a, 3) + _conv(a, b, 3) + _conv(a, b, 1)
  return total + 2 * (nef * min(4, n_blocks) * nz + nz)


def _official_discriminator_params(cin=5, ndf=64, n_layers=3, num_d=2):
  total = 0
  for i in range(num_d):
    nf = int(round(ndf / 2 ** i))
    chans = [cin] + [nf * min(2 ** n, 8) for n in range(n_layers + 1)] + [1]
    total += sum(_conv(a, b, 4) for a, b in zip(chans[:-1], chans[1:]))
  return total


def _init_shapes(model, *args, **kw):
  return jax.eval_shape(functools.partial(model.init, **kw), KEY, *args)['params']


def test_class_signs_match_data_convention():
  np.testing.assert_array_equal(np.array(Z.CLASS_SIGNS), guidance_lib.CLASS_SIGNS)
  trend = Z.guidance_to_trend(jnp.arange(5))
  np.testing.assert_array_equal(trend, guidance_lib.guidance_to_trend(np.arange(5)))


def test_full_width_decomposer_parameter_count():
  blur = jnp.zeros((1, 64, 64, 3))
  g = jnp.zeros((1, 64, 64), jnp.int32)
  params = _init_shapes(Z.Decomposer(), blur, train=False, guidance=g)
  assert Z.param_count(params['stage1']) == _official_stage_params(5) == 64_612_757
  assert Z.param_count(params['stage2']) == _official_stage_params(24) == 64_731_925
  assert Z.param_count(params) == 129_344_682
  # 'affine' (folded BatchNorm) keeps the count; 'none' drops 2 per channel.
  affine = _init_shapes(Z.Decomposer(norm='affine'), blur, train=False, guidance=g)
  assert Z.param_count(affine) == 129_344_682
  none = _init_shapes(Z.Decomposer(norm='none'), blur, train=False, guidance=g)
  norm_params = 2 * (2 * 128 + 4 * 256 + 4 * 512 + 12 * 4 * 512 + 4 * 256 + 4 * 128)
  assert Z.param_count(none) == 129_344_682 - norm_params
  out = jax.eval_shape(
      lambda p: Z.Decomposer().apply({'params': p}, blur, train=False, guidance=g),
      params)
  assert out['frames'].shape == (1, 7, 64, 64, 3)


def test_full_width_predictor_parameter_counts():
  shapes = jax.eval_shape(lambda k: Z.GuidancePredictor().init(k, (256, 256)), KEY)
  assert Z.param_count(shapes['g']) == _official_unet_params() == 54_606_213
  assert Z.param_count(shapes['e']) == _official_encoder_params() == 2_590_024
  assert Z.param_count(shapes['d']) == _official_discriminator_params() == 3_462_050
  blur_e = Z.GuidancePredictor(encoder=Z.GuidanceEncoder(use_blur=True))
  shapes_b = jax.eval_shape(lambda k: blur_e.init(k, (256, 256)), KEY)
  assert Z.param_count(shapes_b['e']) == _official_encoder_params(cin=8)
  two = jax.eval_shape(lambda k: Z.GuidancePredictor(separate_d2=True).init(k), KEY)
  assert set(two) == {'g', 'e', 'd', 'd2'}


def test_frames_channel_layout_round_trip():
  x = jnp.arange(2 * 2 * 3 * 21, dtype=jnp.float32).reshape(2, 2, 3, 21)
  f = Z.frames_from_channels(x)
  assert f.shape == (2, 7, 2, 3, 3)
  np.testing.assert_array_equal(f[:, 4, ..., 1], x[..., 3 * 4 + 1])  # channel 3t + c
  np.testing.assert_array_equal(Z.frames_to_channels(f), x)


@pytest.fixture(scope='module')
def tiny_decomposer():
  # The authors' sigmoid heads (start_at_blur=False); the blur start:
  # start_at_blur_test.
  model = Z.TinyDecomposer(start_at_blur=False)
  blur = jax.random.uniform(jax.random.key(1, impl='rbg'), (2, 32, 32, 3))
  g = jnp.zeros((2, 32, 32), jnp.int32).at[1, 8:24, 8:24].set(3)
  params = jax.jit(functools.partial(model.init, train=False))(KEY, blur, guidance=g)
  apply = jax.jit(lambda p, b, gg: model.apply(p, b, train=False, guidance=gg))
  return model, params, blur, g, apply


def test_tiny_decomposer_outputs(tiny_decomposer):
  model, params, blur, g, apply = tiny_decomposer
  out = apply(params, blur, g)
  for k in ('frames', 'frames_raw', 'stage1'):
    assert out[k].shape == (2, 7, 32, 32, 3) and out[k].dtype == jnp.float32
  assert float(out['frames'].min()) >= 0.0 and float(out['frames'].max()) <= 1.0
  # Static pixels of stage 1 are the blur itself (authors' masking).
  static = np.asarray(g) == 0
  s1 = np.asarray(out['stage1'])
  b = np.broadcast_to(np.asarray(blur)[:, None], s1.shape)
  np.testing.assert_array_equal(s1[:, :, static[0]][0], b[:, :, static[0]][0])
  assert not np.allclose(s1[1, :, 8:24, 8:24], b[1, :, 8:24, 8:24])
  # Sigmoid residual of stage 2 is non-negative.
  assert np.all(np.asarray(out['frames_raw']) >= s1)
  # Guidance changes the decomposition.
  out2 = apply(params, blur, g.at[1, 8:24, 8:24].set(1))
  assert not np.allclose(out2['frames_raw'][1], out['frames_raw'][1])
  assert Z.param_count(params) < 100_000


def test_decomposer_input_errors(tiny_decomposer):
  model, params, blur, g, _ = tiny_decomposer
  with pytest.raises(ValueError, match='needs guidance'):
    model.apply(params, blur, train=False)
  with pytest.raises(ValueError, match='guidance must be'):
    model.apply(params, blur, train=False, guidance=g[:, :16])
  with pytest.raises(ValueError, match='divisible by 4'):
    model.apply(params, blur[:, :30, :30], train=False, guidance=g[:, :30, :30])
  with pytest.raises(ValueError, match='norm='):
    jax.eval_shape(functools.partial(Z.Decomposer(norm='batch').init, train=False),
                   KEY, blur, guidance=g)


def test_tiny_predictor_network_shapes():
  pred = Z.tiny_guidance_predictor()
  params = jax.eval_shape(lambda k: pred.init(k, (32, 32)), KEY)
  assert sum(Z.param_count(p) for p in params.values()) < 100_000
  blur = jnp.zeros((2, 32, 32, 3))
  z = jnp.ones((2, pred.nz))
  logits = jax.eval_shape(lambda p: pred.generate(p, blur, z), params)
  assert logits.shape == (2, 32, 32, Z.N_CLASSES) and logits.dtype == jnp.float32
  onehot = jnp.zeros((2, 32, 32, Z.N_CLASSES))
  mu, logvar = jax.eval_shape(lambda p: pred.encode(p, onehot), params)
  assert mu.shape == logvar.shape == (2, pred.nz)
  maps = jax.eval_shape(lambda p: pred.discriminate(p, onehot), params)
  assert [m.shape for m in maps] == [(2, 6, 6, 1), (2, 2, 2, 1)]
  with pytest.raises(ValueError, match='divisible by 32'):
    pred.generate(params, blur[:, :24, :24], z)
  with pytest.raises(ValueError, match='z must be'):
    pred.generate(params, blur, z[:, :2])
  with pytest.raises(ValueError, match='use_blur=True'):
    Z.GuidanceEncoder(nef=4, n_blocks=3, use_blur=True).init(KEY, onehot)


def test_generator_dropout_only_in_training():
  gen = Z.GuidanceGenerator(ngf=2, num_downs=6)   # block 4 has dropout
  blur = jax.random.uniform(jax.random.key(3, impl='rbg'), (1, 64, 64, 3))
  z = jnp.zeros((1, gen.nz))
  params = jax.jit(functools.partial(gen.init, train=False))(KEY, blur, z)
  run = jax.jit(lambda k, train: gen.apply(params, blur, z, train=train,
                                           rngs={'dropout': k}),
                static_argnames='train')
  k1, k2 = jax.random.key(4, impl='rbg'), jax.random.key(5, impl='rbg')
  np.testing.assert_array_equal(run(k1, False), run(k2, False))
  assert not np.allclose(run(k1, True), run(k2, True))


def test_gumbel_softmax_hard_is_straight_through():
  logits = jnp.array([[2.0, 0.5, -1.0, 0.0, 1.0]])
  key = jax.random.key(6, impl='rbg')
  y = Z.gumbel_softmax_hard(key, logits)
  assert y.shape == logits.shape
  np.testing.assert_array_equal(np.sort(np.asarray(y[0])), [0, 0, 0, 0, 1])
  w = jnp.arange(5.0)
  g_hard = jax.jit(jax.grad(lambda l: jnp.sum(Z.gumbel_softmax_hard(key, l) * w)))(logits)
  noise = jax.random.gumbel(key, logits.shape)
  g_soft = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l + noise) * w))(logits)
  np.testing.assert_allclose(g_hard, g_soft, rtol=1e-5, atol=1e-7)
  assert float(jnp.abs(g_hard).sum()) > 0

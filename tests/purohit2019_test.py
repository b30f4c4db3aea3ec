"""Tests for hypercut_jax.models.purohit2019 (Purohit et al. 2019)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax import losses
from hypercut_jax.models import jin2018
from hypercut_jax.models import purohit2019

# Threefry init compiles very slowly on XLA:CPU; 'rbg' keys init the same
# shapes in a fraction of the time.
KEY = jax.random.key(0, impl='rbg')


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_params(model, size=64):
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init(KEY, x, train=False, middle=x), x)['params']


def smooth_sequence(batch, size, seed=0, shift=1):
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
def apply(model, params, blur, middle=None):
  """Jitted forward, cached per (model, shapes) across the tests."""
  return model.apply({'params': params}, blur, train=True, middle=middle)


@pytest.fixture(scope='module')
def tiny():
  # Flax's default init throughout (start_at_blur=False): non-zero flows and
  # a non-trivial centre. The zero-flow start: start_at_blur_test.
  model = purohit2019.Tiny(start_at_blur=False)
  x = jnp.zeros((1, 8, 8, 3))
  params = jax.jit(lambda k: model.init(k, x, train=False, middle=x))(
      KEY)['params']
  return model, params


def _with_flow_bias(params, full_res_bias=(0.0, 0.0)):
  """Zero every flow conv; the full-resolution flow becomes a constant."""
  dec = dict(params['rvd']['flow_decoder'])
  last = max(k for k in dec if k.startswith('flow'))
  for k in dec:
    if k.startswith('flow'):
      bias = jnp.asarray(full_res_bias if k == last else (0.0, 0.0))
      dec[k] = {'kernel': jnp.zeros_like(dec[k]['kernel']), 'bias': bias}
  return {**params, 'rvd': {**params['rvd'], 'flow_decoder': dec}}


def test_full_size_parameter_count_matches_reimplementation():
  params = _abstract_params(purohit2019.Model())
  counts = {k: _count(v) for k, v in params.items()}
  assert counts == {'bie': 1_648_704, 'rvd': 2_905_004, 'centre': 4_972_032}
  # Purohit proper (the HyperCUT reimplementation's BIE + RVD): 4.55M.
  assert counts['bie'] + counts['rvd'] == 4_553_708
  assert {k: _count(v) for k, v in params['rvd'].items()} == {
      'flow_encoder': 1_043_476, 'conv_lstm': 1_180_160,
      'flow_decoder': 681_368}
  assert params['bie']['conv0']['kernel'].shape == (5, 5, 6, 64)
  assert params['rvd']['flow_encoder']['down2']['kernel'].shape == (
      3, 3, 32, 164)
  assert params['rvd']['conv_lstm']['gates']['kernel'].shape == (
      3, 3, 256, 512)
  # The centre is exactly jin2018's centre network.
  jin = jax.eval_shape(
      lambda x: jin2018.Model().init(KEY, x, train=False),
      jax.ShapeDtypeStruct((1, 40, 40, 3), jnp.float32))['params']
  assert (jax.tree.map(lambda a: a.shape, jin['centre'])
          == jax.tree.map(lambda a: a.shape, params['centre']))


def test_variants_parameter_counts():
  no_centre = _abstract_params(purohit2019.Model(middle_net=None))
  assert _count(no_centre) == 4_553_708 and 'centre' not in no_centre
  design = _abstract_params(purohit2019.Model(
      flow_channels=(16, 32, 64, 128), middle_net=None))
  assert _count(design) == 3_595_508
  assert _count(_abstract_params(purohit2019.Small())) < 4_553_708 / 2


@pytest.mark.parametrize('shape,with_middle', [((2, 24, 32), True),
                                               ((2, 24, 24), False)])
def test_output_shapes(tiny, shape, with_middle):
  model, params = tiny
  b, h, w = shape
  blur, sharp = smooth_sequence(b, max(h, w))
  blur, middle = blur[:, :h, :w], sharp[:, 3, :h, :w]
  out = apply(model, params, blur, middle if with_middle else None)
  assert out['frames'].shape == (b, 7, h, w, 3)
  assert [p.shape for p in out['pyramid']] == [
      (b, 7, h >> s, w >> s, 3) for s in range(4)]
  assert [f.shape for f in out['flows']] == [
      (b, 7, h >> s, w >> s, 2) for s in range(4)]
  np.testing.assert_array_equal(out['frames'], out['pyramid'][0])
  assert all(np.all(np.isfinite(f)) for f in out['flows'])


def test_zero_flow_frames_are_the_middle_pyramid(tiny):
  model, params = tiny
  blur, sharp = smooth_sequence(2, 24, seed=2)
  middle = sharp[:, 3]
  out = apply(model, _with_flow_bias(params), blur, middle)
  for s, frames in enumerate(out['pyramid']):
    sub = middle[:, ::2 ** s, ::2 ** s]
    np.testing.assert_allclose(frames, jnp.broadcast_to(
        sub[:, None], frames.shape), atol=1e-6)
  assert all(float(jnp.abs(f).max()) == 0 for f in out['flows'])


def test_flow_warps_backward_with_border_padding(tiny):
  # A full-resolution flow of +1 px in x: frame[y, x] = middle[y, x + 1],
  # the last column repeats the border.
  model, params = tiny
  blur, sharp = smooth_sequence(2, 24, seed=4)
  middle = sharp[:, 3]
  out = apply(model, _with_flow_bias(params, (1.0, 0.0)), blur, middle)
  frames = out['frames']
  np.testing.assert_allclose(frames[:, :, :, :-1], jnp.broadcast_to(
      middle[:, None, :, 1:], frames[:, :, :, :-1].shape), atol=1e-5)
  np.testing.assert_allclose(frames[:, :, :, -1], jnp.broadcast_to(
      middle[:, None, :, -1], frames[:, :, :, -1].shape), atol=1e-5)
  np.testing.assert_allclose(out['flows'][0][..., 0], 1.0)


def test_missing_middle_uses_the_jin_centre(tiny):
  model, params = tiny
  blur, _ = smooth_sequence(2, 24, seed=5)
  out = apply(model, _with_flow_bias(params), blur, None)
  centre = model.middle_net()
  estimate = centre.apply({'params': params['centre']}, blur)
  np.testing.assert_allclose(out['frames'], jnp.broadcast_to(
      estimate[:, None], out['frames'].shape), atol=1e-5)


def test_feed_back_flow_changes_later_frames_only(tiny):
  model, params = tiny
  blur, sharp = smooth_sequence(2, 24, seed=7)
  fed = purohit2019.Tiny(feed_back_flow=True)
  a = apply(model, params, blur, sharp[:, 3])['frames']
  b = apply(fed, params, blur, sharp[:, 3])['frames']
  np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)
  assert float(jnp.abs(a[:, 1:] - b[:, 1:]).max()) > 1e-6


@pytest.mark.parametrize('shape,middle_shape,match', [
    ((1, 20, 24, 3), None, 'multiples of 8'),
    ((1, 24, 24, 1), None, 'blur'),
    ((1, 24, 24, 3), (1, 16, 24, 3), 'middle'),
])
def test_bad_inputs_raise(tiny, shape, middle_shape, match):
  model, params = tiny
  middle = None if middle_shape is None else jnp.zeros(middle_shape)
  with pytest.raises(ValueError, match=match):
    model.apply({'params': params}, jnp.zeros(shape), train=False,
                middle=middle)


def test_no_middle_net_requires_middle():
  model = purohit2019.Tiny(middle_net=None)
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match='needs middle'):
    jax.eval_shape(lambda: model.init(KEY, x, train=False))


def test_mismatched_encoder_widths_raise():
  model = purohit2019.Tiny(blur_widths=(4, 4, 4, 8, 8, 8, 16))
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match='ConvLSTM width'):
    jax.eval_shape(lambda: model.init(KEY, x, train=False, middle=x))


def test_load_centre_from_a_jin2018_checkpoint(tiny):
  model, params = tiny
  centre_cfg = model.middle_net.keywords
  jin = jin2018.Tiny(centre_features=centre_cfg['features'],
                     centre_stages=centre_cfg['stages'],
                     centre_tail=centre_cfg['tail_features'])
  jin_abstract = jax.eval_shape(
      lambda x: jin.init(KEY, x, train=False),
      jax.ShapeDtypeStruct((1, 20, 20, 3), jnp.float32))['params']
  jin_params = jax.tree.map(lambda a: jnp.full(a.shape, 0.5, a.dtype),
                            jin_abstract)
  loaded = purohit2019.load_centre({'params': params}, {'params': jin_params})
  for a in jax.tree.leaves(loaded['params']['centre']):
    np.testing.assert_array_equal(a, 0.5)
  np.testing.assert_array_equal(loaded['params']['bie']['conv0']['kernel'],
                                params['bie']['conv0']['kernel'])
  wrong = jax.eval_shape(
      lambda x: jin2018.Tiny().init(KEY, x, train=False),
      jax.ShapeDtypeStruct((1, 20, 20, 3), jnp.float32))['params']
  with pytest.raises(ValueError, match=r'do not match.*head/kernel: model '
                     r'\(5, 5, 16, 4\) vs given \(5, 5, 16, 8\)'):
    purohit2019.load_centre(params, wrong)


def test_config_kwargs_name_the_middle_net():
  assert purohit2019.config_kwargs({}) == {}   # default: the full Jin centre
  assert purohit2019.Model().middle_net is jin2018.JinCentre
  kw = purohit2019.config_kwargs({
      'blur_widths': [4, 4, 4, 8, 8, 8, 8], 'flow_channels': [2, 4, 4, 8],
      'middle': 'jin_centre',
      'middle_kwargs': {'features': 4, 'stages': [[[1, 1]]],
                        'tail_features': 4}})
  assert kw['blur_widths'] == (4, 4, 4, 8, 8, 8, 8)
  narrow = kw['middle_net']
  assert narrow.func is jin2018.JinCentre and narrow.keywords == {
      'features': 4, 'stages': (((1, 1),),), 'tail_features': 4}
  params = _abstract_params(purohit2019.Model(**kw), size=16)
  assert params['centre']['head']['kernel'].shape == (5, 5, 16, 4)
  assert purohit2019.config_kwargs(
      {'middle': 'jin_centre'})['middle_net'] is jin2018.JinCentre
  none = purohit2019.config_kwargs({'middle': 'none'})
  assert none == {'middle_net': None}
  assert 'centre' not in _abstract_params(
      purohit2019.Tiny(**none), size=16)
  assert purohit2019.Model.uses_middle


@pytest.mark.parametrize('kwargs,match', [
    ({'middle': 'unet'}, r"middle='unet'; known: \['jin_centre', 'none'\]"),
    ({'middle_kwargs': {'width': 3}},
     r"unknown JinCentre fields \['width'\]; known: \['features'"),
    ({'middle': 'none', 'middle_kwargs': {'features': 4}},
     "middle='none' takes no middle_kwargs"),
    ({'middle': 'none', 'middle_net': None}, 'not both'),
])
def test_config_kwargs_reject_bad_middle(kwargs, match):
  with pytest.raises(ValueError, match=match):
    purohit2019.config_kwargs(kwargs)


def test_upsample2x_matches_torch_bilinear_half_pixel():
  # torch.nn.Upsample(scale_factor=2, mode='bilinear') on [[0, 1], [2, 3]].
  x = jnp.array([[0.0, 1.0], [2.0, 3.0]])[None, :, :, None]
  want = np.array([[0.0, 0.25, 0.75, 1.0],
                   [0.5, 0.75, 1.25, 1.5],
                   [1.5, 1.75, 2.25, 2.5],
                   [2.0, 2.25, 2.75, 3.0]])
  np.testing.assert_allclose(purohit2019.upsample2x(x)[0, :, :, 0], want,
                             atol=1e-6)


def test_short_training_run_lowers_multiscale_loss(tiny):
  model, params = tiny
  blur, sharp = smooth_sequence(2, 40, seed=1)
  middle = sharp[:, 3]
  tx = optax.adam(3e-3)

  def loss_fn(p):
    out = model.apply({'params': p}, blur, train=True, middle=middle)
    return (losses.multiscale_deblur_loss('order_invariant', out['pyramid'],
                                          sharp)
            + 0.02 * losses.flow_smoothness(out['flows']))

  @jax.jit
  def step(p, opt):
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, updates), opt, loss, optax.global_norm(g)

  start = params
  opt = tx.init(params)
  history = []
  for _ in range(24):
    params, opt, loss, gnorm = step(params, opt)
    history.append(float(loss))
    assert np.isfinite(float(gnorm)) and float(gnorm) > 0
  assert np.mean(history[-5:]) < 0.7 * history[0], history
  # With the ground-truth middle the centre gets no gradient: Adam leaves it.
  jax.tree.map(np.testing.assert_array_equal, params['centre'],
               start['centre'])
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                       params['rvd'], start['rvd'])
  assert max(jax.tree.leaves(moved)) > 0

"""Every generator predicts the blur for all 7 frames at init (start_at_blur).

XLA:CPU compiles slowly, so each model compiles twice only, at LLVM
optimisation level 0 (half the compile time; these runs are tiny): one
`init` of both settings (start_at_blur True and False) and one Adam step,
which returns the outputs before its update (the step-0 prediction).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax.models import jin2018
from hypercut_jax.models import purohit2019
from hypercut_jax.models import zhong2022

# Fast to compile on XLA:CPU (threefry draws compile slowly).
KEY = jax.random.key(0, impl='rbg')
TX = optax.adam(1e-2)
jit = functools.partial(
    jax.jit, compiler_options={'xla_backend_optimization_level': 0})
P = jin2018.PLAIN
# Smaller than jin2018.Tiny (faster to compile), every net still there.
JIN = functools.partial(
    jin2018.Model, centre_features=4, centre_stages=((P,),), centre_tail=4,
    side_features=4, deep_plain=1, shallow_plain=0, side_dilated=(),
    side_tail=4)
PUROHIT = purohit2019.Tiny
ZHONG = zhong2022.TinyDecomposer


def _uniform(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


def _init_both(make, blur, **kw):
  """{start_at_blur: (params, outputs)} for True and False, one jit.

  make: a model class/partial; kw: the call's keywords (middle, guidance).
  """
  def fn(key):
    out = {}
    for s in (True, False):
      y, v = make(start_at_blur=s).init_with_output(key, blur, train=False,
                                                    **kw)
      out[s] = (v['params'], y)
    return out
  return jit(fn)(KEY)


def _adam_step(model, blur, target, **kw):
  """Jitted step(params, opt) -> (params, opt, outputs before the update).

  Loss: MSE of the frames ('frames_raw' if returned) and of 'stage1' (if
  returned) against target f32[B,7,H,W,3].
  """
  def loss_fn(p):
    out = model.apply({'params': p}, blur, train=True, **kw)
    loss = jnp.mean((out.get('frames_raw', out['frames']) - target) ** 2)
    if 'stage1' in out:
      loss = loss + jnp.mean((out['stage1'] - target) ** 2)
    return loss, out

  @jit
  def step(p, opt):
    (_, out), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, opt = TX.update(g, opt, p)
    return optax.apply_updates(p, updates), opt, out

  return step


def _leaf(params, path):
  for k in path.split('/'):
    params = params[k]
  return np.asarray(params)


def _assert_is(frames, image):
  """frames f32[B,7,H,W,3] all equal image f32[B,H,W,3] (1e-6)."""
  np.testing.assert_allclose(
      frames, np.broadcast_to(np.asarray(image)[:, None], frames.shape),
      atol=1e-6)


def _assert_is_not(frames, image, tol=1e-5):
  diff = np.abs(np.asarray(frames) - np.asarray(image)[:, None]).max()
  assert diff > tol, diff


def _train_from(step, params, start, tail, trunk):
  """Two Adam steps from `params`, whose frames are `start` f32[B,H,W,3].

  Step 1 moves only the zero-initialised heads (leaf `tail`): the frames
  leave `start` while the trunk leaf `trunk` keeps its init; step 2 moves
  the trunk too. Returns the step-0 outputs.
  """
  p1, opt, out0 = step(params, TX.init(params))
  p2, _, out1 = step(p1, opt)
  _assert_is(out0['frames'], start)
  _assert_is_not(out1['frames'], start, 1e-4)
  assert np.abs(_leaf(p1, tail) - _leaf(params, tail)).max() > 0
  np.testing.assert_array_equal(_leaf(p1, trunk), _leaf(params, trunk))
  assert np.abs(_leaf(p2, trunk) - _leaf(params, trunk)).max() > 0
  return out0


def _target(blur):
  return _uniform((blur.shape[0], 7, *blur.shape[1:]), 9)


def test_defaults_start_at_the_blur():
  for cls in (jin2018.Model, jin2018.JinCentre, jin2018.SideNet,
              jin2018.Tiny, jin2018.Small, purohit2019.Model,
              purohit2019.Tiny, purohit2019.Small, purohit2019.FlowDecoder,
              zhong2022.Decomposer, zhong2022.TinyDecomposer):
    assert cls().start_at_blur, cls


def test_jin2018_starts_at_the_blur():
  blur = _uniform((1, 20, 20, 3), 0)
  inits = _init_both(JIN, blur)
  (params, out), (authors, authors_out) = inits[True], inits[False]
  _assert_is(out['frames'], blur)
  for net in ('centre', 'net_a', 'net_b', 'net_c', 'net_d'):
    assert not np.any(_leaf(params, f'{net}/tail_out/kernel'))
  step = _adam_step(JIN(), blur, _target(blur))
  _train_from(step, params, blur, 'net_d/tail_out/kernel',
              'centre/trunk/stage0_block0/conv2/kernel')
  # The authors' kind of init (random tails) does not give the blur, and
  # has the same parameter names and shapes (converted weights load).
  _assert_is_not(authors_out['frames'], blur)
  assert jax.tree.map(np.shape, authors) == jax.tree.map(np.shape, params)


def test_purohit2019_starts_at_the_middle_or_the_blur():
  blur = _uniform((1, 16, 16, 3), 1)
  middle = _uniform(blur.shape, 2)
  # middle=None: frames = the Jin centre's estimate = the blur.
  inits = _init_both(PUROHIT, blur)
  (params, out), (authors, authors_out) = inits[True], inits[False]
  _assert_is(out['frames'], blur)
  assert all(float(jnp.abs(f).max()) == 0 for f in out['flows'])
  for s, frames in enumerate(out['pyramid']):
    _assert_is(frames, blur[:, ::2 ** s, ::2 ** s])
  # The model's start_at_blur reached the middle net (the Jin centre).
  assert not np.any(_leaf(params, 'centre/tail_out/kernel'))
  assert np.any(_leaf(authors, 'centre/tail_out/kernel'))
  _assert_is_not(authors_out['frames'], blur)
  step = _adam_step(PUROHIT(), blur, _target(blur), middle=middle)
  _train_from(step, params, middle, 'rvd/flow_decoder/flow3/kernel',
              'bie/conv3/kernel')
  # The authors' kind of init: random flows warp the middle frame a little.
  _assert_is_not(step(authors, TX.init(authors))[2]['frames'], middle)


def test_purohit2019_passes_start_at_blur_to_the_middle_net():
  centre = functools.partial(jin2018.JinCentre, features=4)
  kw = purohit2019.middle_net_kwargs
  assert kw(centre, False) == {'start_at_blur': False}
  assert kw(jin2018.JinCentre, True) == {'start_at_blur': True}
  # An explicit choice in the partial wins; a net without the field gets
  # nothing.
  assert kw(functools.partial(centre, start_at_blur=True), False) == {}
  assert kw(zhong2022.Affine, True) == {}
  made = purohit2019.make_middle_net('jin_centre', {'start_at_blur': False})
  assert kw(made, True) == {}


def test_zhong2022_starts_at_the_blur():
  blur = _uniform((1, 16, 16, 3), 3)
  guidance = jnp.asarray(np.random.default_rng(4).integers(0, 5, (1, 16, 16)),
                         jnp.int32)
  inits = _init_both(ZHONG, blur, guidance=guidance)
  (params, out), (_, authors_out) = inits[True], inits[False]
  for k in ('frames', 'frames_raw', 'stage1'):
    _assert_is(out[k], blur)
  step = _adam_step(ZHONG(), blur, _target(blur), guidance=guidance)
  _train_from(step, params, blur, 'stage2/final_conv/bias',
              'stage1/block0/conv1/kernel')
  # The authors' sigmoid heads: not the blur, stage-2 residual >= 0.
  _assert_is_not(authors_out['frames_raw'], blur)
  assert np.all(np.asarray(authors_out['frames_raw'])
                >= np.asarray(authors_out['stage1']))


def test_zhong2022_residual_activation_with_start_at_blur():
  act = zhong2022.stage2_activation
  assert act(True, True, None) == act(True, True, 'tanh') == 'tanh'
  assert act(True, False, None) == 'tanh'
  assert act(False, True, None) == act(False, True, 'sigmoid') == 'sigmoid'
  assert act(False, True, 'tanh') == 'tanh'
  assert act(False, False, 'tanh') == 'sigmoid'
  with pytest.raises(ValueError, match='0.5 at init'):
    act(True, True, 'sigmoid')
  with pytest.raises(ValueError, match='known'):
    act(False, True, 'relu')

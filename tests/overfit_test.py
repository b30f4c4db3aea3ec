"""Sanity check per generator: a tiny model memorises one fixed batch.

Each generator trains through its real train step (the trainer's loss
space, Adam) on one batch of two synthetic records, with the naive loss on
the stored order (a well-defined target), and must reach an order-aware
pPSNR of at least 30 dB within a few hundred CPU steps. A generator that
cannot memorise one batch has a bug (a detached branch, a wrong residual, a
loss on the wrong tensors); the blur itself scores about 22-25 dB on these
records, so starting at the blur does not pass the test by itself.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax import metrics
from hypercut_jax.data import guidance as guidance_lib
from hypercut_jax.data import synthetic
from hypercut_jax.models import jin2018
from hypercut_jax.models import purohit2019
from hypercut_jax.models import unet
from hypercut_jax.models import zhong2022
from hypercut_jax.train import animation
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import state as state_lib

TARGET_DB = 30.0


def _batch(size: int, n: int = 2) -> dict:
  records = [synthetic.render(0, 'train', i, size=(size, size),
                              max_sprites=1) for i in range(n)]
  return {'blur': np.stack([r['blur'] for r in records]),
          'sharp': np.stack([r['sharp'] for r in records])}


def _ppsnr(pred, sharp_u8) -> float:
  gt = jnp.asarray(sharp_u8, jnp.float32) / 255.0
  return float(jnp.mean(metrics.sequence_ppsnr(jnp.clip(pred, 0, 1), gt)))


def _fit(init, step, batch, steps: int):
  """Runs `steps` jitted train steps on one batch; returns the state."""
  state = init(jax.random.key(0))
  step = jax.jit(step)
  key = jax.random.key(1)
  for _ in range(steps):
    state, _ = step(state, batch, key)
  return state


def _blur_ppsnr(batch) -> float:
  blur = jnp.asarray(batch['blur'], jnp.float32) / 255.0
  return _ppsnr(jnp.repeat(blur[:, None], 7, axis=1), batch['sharp'])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['jin2018', 'purohit2019', 'unet'])
def test_generator_memorises_one_batch(name):
  if name == 'jin2018':
    model, size, steps = jin2018.Tiny(), 40, 300
  elif name == 'unet':
    model, size, steps = unet.Tiny(features=32, deep_features=32), 40, 300
  else:
    model = purohit2019.Tiny(middle_net=None)
    size, steps = 32, 300
  batch = _batch(size)
  tx = optax.adam(3e-3)
  step = generator_lib.make_train_step(model, tx, loss_name='charbonnier')
  state = _fit(generator_lib.make_init(model, tx, size), step, batch, steps)
  predict = generator_lib.make_predict_fn(model)
  middle = batch['sharp'][:, generator_lib.MIDDLE] if name == 'purohit2019' else None
  pred = predict(state.params, jnp.asarray(batch['blur']),
                 None if middle is None else jnp.asarray(middle))
  got, blur_db = _ppsnr(pred, batch['sharp']), _blur_ppsnr(batch)
  assert got >= TARGET_DB, (name, got, blur_db)
  assert got > blur_db + 3.0, (name, got, blur_db)


@pytest.mark.slow
def test_decomposer_memorises_one_batch():
  model = zhong2022.TinyDecomposer()
  size, steps = 32, 300
  batch = _batch(size)
  batch['guidance'] = guidance_lib.compute_guidance(batch['sharp'])
  tx = optax.adam(3e-3)
  step = animation.make_decomposer_step(model, tx, loss_name='mse')
  state = _fit(animation.make_decomposer_init(model, tx, size), step, batch,
               steps)
  out = model.apply({'params': state.params},
                    jnp.asarray(batch['blur'], jnp.float32) / 255.0,
                    train=False, guidance=jnp.asarray(batch['guidance']))
  got, blur_db = _ppsnr(out['frames'], batch['sharp']), _blur_ppsnr(batch)
  assert got >= TARGET_DB, (got, blur_db)
  assert got > blur_db + 3.0, (got, blur_db)

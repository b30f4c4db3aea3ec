"""models/unet.py: the CPU quick-start generator."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hypercut_jax import models
from hypercut_jax.models import unet
from hypercut_jax.train import generator as generator_lib


def _blur(b=2, h=24, w=36, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, h, w, 3))


@pytest.mark.parametrize('frames', [7, 9, 3])
def test_shapes_and_start_at_the_blur(frames):
  model = unet.Tiny(num_frames=frames)
  x = _blur()
  params = model.init(jax.random.key(1), x)['params']
  out = model.apply({'params': params}, x, train=True)['frames']
  assert out.shape == (2, frames, 24, 36, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, jnp.broadcast_to(x[:, None], out.shape))
  # Without the flag the head is random: the frames differ from the blur.
  params = unet.Tiny(start_at_blur=False).init(jax.random.key(1), x)['params']
  out = unet.Tiny(start_at_blur=False).apply({'params': params}, x)['frames']
  assert float(jnp.abs(out - x[:, None]).max()) > 1e-3


def test_default_size_registry_and_predict_pads():
  model = models.get('unet')()
  x = _blur(1, 20, 20)
  params = model.init(jax.random.key(0), x)['params']
  assert sum(p.size for p in jax.tree.leaves(params)) == 404_085
  assert isinstance(generator_lib.make_model('unet', {'num_blocks': 1}),
                    unet.UNet)
  # Any size through models.predict (padded to a multiple of 4, cropped).
  out = models.predict(model, {'params': params}, _blur(1, 22, 27)[0])
  assert out.shape == (7, 22, 27, 3)


def test_bad_inputs_name_the_shape():
  model = unet.Tiny()
  params = model.init(jax.random.key(0), _blur(1, 8, 8))['params']
  with pytest.raises(ValueError, match='multiples of 4'):
    model.apply({'params': params}, _blur(1, 10, 8))
  with pytest.raises(ValueError, match=r'f32\[B,H,W,3\]'):
    model.apply({'params': params}, jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match='num_frames'):
    unet.Tiny(num_frames=0).init(jax.random.key(0), _blur(1, 8, 8))


def test_train_step_moves_every_parameter_from_the_second_step():
  model = unet.Tiny()
  tx = optax.adam(1e-2)
  state = generator_lib.make_init(model, tx, 16)(jax.random.key(0))
  step = jax.jit(generator_lib.make_train_step(model, tx, loss_name='mse'))
  rng = np.random.default_rng(0)
  batch = {'blur': rng.integers(0, 256, (2, 16, 16, 3), np.uint8),
           'sharp': rng.integers(0, 256, (2, 7, 16, 16, 3), np.uint8)}
  start = state.params
  for _ in range(2):
    state, metrics = step(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics['train/loss']))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), start, state.params)
  assert all(jax.tree.leaves(moved))

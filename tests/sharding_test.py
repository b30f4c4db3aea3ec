"""Tests for train/sharding.py: layouts, batch hand-over, 1 vs 8 devices."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import sharding

TINY_H = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1)


def test_eight_fake_devices():
  assert jax.device_count() == 8  # tests/conftest.py


def test_tree_shardings_replicated_and_fsdp():
  mesh = sharding.make_mesh()
  tree = {'big': jax.ShapeDtypeStruct((3, 3, 64, 128), jnp.float32),
          'odd': jax.ShapeDtypeStruct((3, 3, 7, 1001), jnp.float32),
          'bias': jax.ShapeDtypeStruct((128,), jnp.float32),
          'step': jax.ShapeDtypeStruct((), jnp.int32)}
  rep = sharding.tree_shardings(tree, mesh)
  assert all(s.spec == P() for s in jax.tree.leaves(rep))
  fs = sharding.tree_shardings(tree, mesh, fsdp=True, min_size=1024)
  assert fs['big'].spec == P(None, None, None, 'data')   # largest axis, 128 % 8
  assert fs['odd'].spec == P()                            # nothing divisible
  assert fs['bias'].spec == P()                           # small
  assert fs['step'].spec == P()


def test_put_batch_lays_out_global_arrays():
  mesh = sharding.make_mesh()
  sh = sharding.batch_sharding(mesh)
  host = {'blur': np.zeros((8, 4, 4, 3), np.uint8),
          'sharp': np.zeros((8, 7, 4, 4, 3), np.uint8),
          'id': np.array(['a'] * 8), 'mask': np.ones(8, bool)}
  out = sharding.put_batch(host, sh)
  assert set(out) == {'blur', 'sharp'}
  assert out['sharp'].shape == (8, 7, 4, 4, 3)
  assert out['sharp'].sharding == sh
  assert len(out['sharp'].addressable_shards) == 8
  with pytest.raises(ValueError, match=r"batch\['blur'\] of shape \(6, 4, 4, 3\)"):
    sharding.put_batch({'blur': np.zeros((6, 4, 4, 3), np.uint8)}, sh)


def test_check_batch_size():
  mesh = sharding.make_mesh()
  sharding.check_batch_size(16, mesh)
  with pytest.raises(ValueError, match='batch_size=12 is not divisible by the 8'):
    sharding.check_batch_size(12, mesh)
  sharding.check_batch_size(3, sharding.make_mesh(jax.devices()[:1]))


def _run_one_step(state0, step, devices, batch, extra=(), fsdp=False):
  """state0 (host/any layout) -> one jitted, sharded step on `devices`."""
  mesh = sharding.make_mesh(devices)
  state_sh = sharding.tree_shardings(state0, mesh, fsdp=fsdp, min_size=256)
  repl = sharding.replicated(mesh)
  state = jax.device_put(state0, state_sh)
  extra_sh = tuple(jax.tree.map(lambda _: repl, e) for e in extra)
  step_fn = jax.jit(step, in_shardings=(state_sh, sharding.batch_sharding(mesh),
                                        repl, *extra_sh),
                    out_shardings=(state_sh, repl), donate_argnums=0)
  dev_batch = sharding.put_batch(batch, sharding.batch_sharding(mesh))
  train_key = jax.device_put(jax.random.key(1), repl)
  extra = tuple(jax.device_put(e, s) for e, s in zip(extra, extra_sh))
  state, metrics = step_fn(state, dev_batch, train_key, *extra)
  return jax.device_get(state.params), jax.device_get(metrics)


def _init(init_fn):
  return jax.device_get(jax.jit(init_fn)(jax.random.key(0)))


def _batch(size):
  rng = np.random.default_rng(0)
  return {'blur': rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8),
          'sharp': rng.integers(0, 256, (8, 7, size, size, 3), dtype=np.uint8)}


def _assert_trees_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5,
                                                       rtol=1e-5), a, b)


def test_ordering_step_same_on_1_and_8_devices():
  model = ordering_lib.make_model(TINY_H)
  # Plain SGD: Adam-type first steps are ~lr * sign(g) and would turn float
  # summation-order noise in near-zero gradients into lr-sized differences.
  tx = optax.sgd(0.1)
  init = _init(ordering_lib.make_init(model, tx, 33))
  step = ordering_lib.make_train_step(model, tx)
  batch = _batch(33)
  p1, m1 = _run_one_step(init, step, jax.devices()[:1], batch)
  p8, m8 = _run_one_step(init, step, jax.devices(), batch)
  p8f, _ = _run_one_step(init, step, jax.devices(), batch, fsdp=True)
  _assert_trees_close(p1, p8)
  _assert_trees_close(p1, p8f)
  np.testing.assert_allclose(m1['train/loss'], m8['train/loss'], rtol=1e-5)


class _ConvGenerator(nn.Module):
  """A small conv generator with the registry protocol (fast to compile).

  The stage-2 step is what is under test here (sharded batch, frozen
  replicated H, deblur + R_hyp); the real generators' maths is covered by
  their own tests and the end-to-end test runs jin2018 through this step.
  """
  size_multiple = 1

  @nn.compact
  def __call__(self, blur, *, train, middle=None, guidance=None):
    del train, middle, guidance
    x = nn.relu(nn.Conv(8, (3, 3))(blur))
    x = nn.Conv(21, (3, 3))(x)
    b, h, w, _ = blur.shape
    frames = blur[:, None] + x.reshape(b, h, w, 7, 3).transpose(0, 3, 1, 2, 4)
    return {'frames': frames}


def test_generator_step_same_on_1_and_8_devices():
  model = _ConvGenerator()
  tx = optax.sgd(0.1)
  init = _init(generator_lib.make_init(model, tx, 40))
  h_model = ordering_lib.make_model(TINY_H)
  h_params = h_model.init(jax.random.key(5), jnp.zeros((1, 40, 40, 6)))['params']
  plane = ordering_model.init_hyperplane(jax.random.key(6), 8)
  step = generator_lib.make_train_step(model, tx, loss_name='charbonnier',
                                       h_model=h_model, alpha=0.2)
  batch = _batch(40)
  p1, m1 = _run_one_step(init, step, jax.devices()[:1], batch,
                         extra=(h_params, plane))
  p8, m8 = _run_one_step(init, step, jax.devices(), batch,
                         extra=(h_params, plane))
  _assert_trees_close(p1, p8)
  np.testing.assert_allclose(m1['train/r_hyp'], m8['train/r_hyp'], rtol=1e-5)
  np.testing.assert_allclose(m1['train/deblur'], m8['train/deblur'], rtol=1e-5)

"""Tests for hypercut_jax.inference: loading params without the optimiser."""
import json
import os

import jax
import numpy as np
import optax
import pytest

from hypercut_jax import inference
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import ordering as ordering_lib

KW = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1)


def h_state(seed=0, tx=None):
  """The trainer's stage-1 state layout with random values (no compile)."""
  model = ordering_lib.make_model(KW)
  tx = tx or optax.adam(1e-3)
  abstract = jax.eval_shape(ordering_lib.make_init(model, tx, 33),
                            jax.random.key(0))
  rng = np.random.RandomState(seed)
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype),
                        abstract.params)
  return abstract.replace(
      step=np.int32(0), params=params, opt_state=tx.init(params),
      hyperplane=rng.uniform(-1, 1, abstract.hyperplane.shape).astype(
          np.float32))


def _save(ckpt_dir, state, config, step):
  mngr = ckpt_lib.make_manager(ckpt_dir, async_save=False, keep=3)
  ckpt_lib.save(mngr, step, state.replace(step=np.int32(step)), config=config)
  mngr.wait_until_finished()
  mngr.close()


def _config(**over):
  c = {'stage': 'ordering', 'precision': 'float32',
       'model': {'name': 'hypercut', 'kwargs': dict(KW)},
       'optim': {'name': 'adam', 'lr': 1e-3}, 'input': {'crop': 33}}
  c.update(over)
  return c


@pytest.fixture(scope='module')
def both_workdir(tmp_path_factory):
  """A stage=both layout: ordering/ with steps 1 and 2."""
  root = str(tmp_path_factory.mktemp('run'))
  ckpt_dir = os.path.join(root, 'ordering', 'checkpoints')
  _save(ckpt_dir, h_state(1), _config(), 1)
  _save(ckpt_dir, h_state(2), _config(), 2)
  return root


def test_resolves_every_layout(both_workdir):
  stage = os.path.join(both_workdir, 'ordering')
  ckpts = os.path.join(stage, 'checkpoints')
  for path in (stage, ckpts):
    h = inference.load(path)
    assert h.kind == 'ordering' and h.step == 2
  h1 = inference.load(os.path.join(ckpts, '1'))
  assert h1.step == 1
  h2 = inference.load(both_workdir, expect='ordering')
  assert h2.step == 2
  want = h_state(1)
  np.testing.assert_array_equal(np.asarray(h1.hyperplane),
                                np.asarray(want.hyperplane))
  jax.tree.map(np.testing.assert_array_equal, h1.params, want.params)
  with pytest.raises(FileNotFoundError, match='no checkpoint found'):
    inference.load(both_workdir)  # needs expect= to pick a stage


def test_reads_no_optimiser_state(tmp_path):
  """A checkpoint whose optimiser config no longer builds still loads."""
  state = h_state(0, tx=optax.adamw(1e-3))
  _save(str(tmp_path / 'checkpoints'), state,
        _config(optim={'name': 'gone', 'lr': 0.0}), 5)
  h = inference.load_ordering(str(tmp_path))
  assert h.step == 5 and h.hyperplane.shape == (9,)


def test_config_that_does_not_fit_the_params(tmp_path):
  cfg = _config()
  cfg['model']['kwargs']['nf'] = 8
  _save(str(tmp_path / 'checkpoints'), h_state(), cfg, 1)
  with pytest.raises(ValueError, match='shape mismatch.*stem'):
    inference.load(str(tmp_path))


def test_wrong_kind_and_not_a_checkpoint(both_workdir, tmp_path):
  with pytest.raises(ValueError, match='holds an ordering network H'):
    inference.load_generator(os.path.join(both_workdir, 'ordering'))
  (tmp_path / 'h.pth').write_bytes(b'x')
  with pytest.raises(ValueError, match='hypercut_jax.convert'):
    inference.load(str(tmp_path / 'h.pth'))
  with pytest.raises(FileNotFoundError, match='no such directory'):
    inference.load(str(tmp_path / 'missing'))
  cfg_dir = tmp_path / 'nostage'
  _save(str(cfg_dir / 'checkpoints'), h_state(), {'model': {'name': 'x'}}, 1)
  with pytest.raises(ValueError, match='no stage'):
    inference.load(str(cfg_dir))
  assert inference.saved_kind({'stage': 'generator'}) == 'generator'
  assert inference.saved_kind(json.loads('{"model": {"name": "hypercut"}}')
                              ) == 'ordering'


def test_build_model_gives_zhong2022_guidance_on_any_dataset():
  """The decomposer needs guidance at init, also on synthetic data."""
  config = {'model': {'name': 'zhong2022',
                      'kwargs': dict(features=8, max_features=16, n_blocks=1)},
            'data': {'name': 'synthetic'}, 'input': {'crop': 32}}
  model, init = inference.build_model('generator', config)
  state = jax.eval_shape(init, jax.random.key(0))
  assert model.__class__.__name__ == 'Decomposer'
  assert jax.tree.leaves(state.params)

"""Tests for the checksums of train/checkpoint.py: corrupt bytes are never
loaded silently (resume falls back, readers raise CheckpointError)."""
import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from hypercut_jax import inference
from hypercut_jax.train import checkpoint
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import state as state_lib
import inference_test  # the stage-1 state fixture

P = jax.sharding.PartitionSpec
KW = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1)


# ---------------------------------------------------------------- helpers ---
def _tree(seed=0):
  rng = np.random.RandomState(seed)
  return {
      'w': rng.standard_normal((16, 8)).astype(np.float32),
      'h': rng.standard_normal((8, 4)).astype(jnp.bfloat16),
      'f16': rng.standard_normal((8,)).astype(np.float16),
      'mask': rng.uniform(size=(8,)) > 0.5,
      'i8': rng.randint(-128, 127, (16,)).astype(np.int8),
      'u32': rng.randint(0, 2**31, (8, 2)).astype(np.uint32),
      'step': np.int32(seed),
  }


def _train_state(seed=0):
  """A TrainState (params of a 2-layer dense net, adam state) at step seed."""
  rng = np.random.RandomState(seed)
  params = {'dense0': {'kernel': rng.standard_normal((64, 128)).astype(
                           np.float32),
                       'bias': np.zeros(128, np.float32)},
            'dense1': {'kernel': rng.standard_normal((128, 4)).astype(
                           np.float32),
                       'bias': rng.standard_normal(4).astype(np.float32)}}
  state = state_lib.create(params, optax.adam(1e-3))
  return jax.device_put(state.replace(step=jnp.int32(seed)))


def _data_iterator():
  ds = grain.MapDataset.range(64).shuffle(seed=0).batch(4).to_iter_dataset()
  return iter(ds)


def _abstract(state):
  return jax.eval_shape(lambda: state)


def _save_steps(ckpt_dir, steps=(1, 2)):
  """Saves a state, iterator and config at each step (async manager).

  Returns {step: (state, the batch the iterator yields next)}.
  """
  it = _data_iterator()
  mngr = checkpoint.make_manager(ckpt_dir, keep=len(steps) + 1)
  want = {}
  for step in steps:
    next(it)
    state = _train_state(step)
    checkpoint.save(mngr, step, state, data_iter=it,
                    config={'step': step, 'size': (36, 36)})
    mngr.wait_until_finished()
    want[step] = (jax.device_get(state), next(_copy(it)))
  mngr.close()
  return want


def _copy(it):
  fresh = _data_iterator()
  fresh.set_state(it.get_state())
  return fresh


def _data_files(state_dir):
  """Every array-data file under `state_dir`: `d/` and `ocdbt.process_*/d/`.

  Which copy a restore reads depends on how orbax finalised the step (a
  single-process save merges the per-process files into `state/d/`), so the
  damage helpers hit all of them.
  """
  found = [os.path.join(root, name)
           for root, _, names in os.walk(state_dir)
           if os.path.basename(root) == 'd' for name in names]
  assert found, state_dir
  return found


def flip_bytes(step_dir):
  """Flips 64 bytes in the middle of each state data file."""
  for path in _data_files(os.path.join(step_dir, 'state')):
    blob = bytearray(open(path, 'rb').read())
    mid = max(0, len(blob) // 2 - 32)
    for i in range(mid, min(len(blob), mid + 64)):
      blob[i] ^= 0xFF
    open(path, 'wb').write(bytes(blob))


def truncate(step_dir):
  for path in _data_files(os.path.join(step_dir, 'state')):
    os.truncate(path, os.path.getsize(path) // 2)


def delete_metadata(step_dir):
  os.remove(os.path.join(step_dir, 'state', '_METADATA'))


def garbage_data_json(step_dir):
  data_dir = os.path.join(step_dir, 'data')
  for name in os.listdir(data_dir):
    if name.endswith('.json'):
      with open(os.path.join(data_dir, name), 'w') as f:
        f.write('{"next_index": 3, garbage')


def _assert_restored(got, want):
  state, it, step = got
  want_state, want_batch = want
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state),
               want_state)
  np.testing.assert_array_equal(next(it), want_batch)
  return step


# -------------------------------------------------------------- checksums ---
def test_checksum_same_under_any_sharding_and_sees_one_ulp():
  tree = _tree()
  host = checkpoint.checksums(tree)
  one = checkpoint.checksums(jax.device_put(tree, jax.devices()[0]))
  assert host == one and len(one) == len(tree)
  devices = np.array(jax.devices())
  assert devices.size == 8
  for mesh_shape in ((8,), (4, 2)):
    mesh = jax.sharding.Mesh(devices.reshape(mesh_shape),
                             ('x', 'y')[:len(mesh_shape)])
    sharded = jax.tree.map(
        lambda x, mesh=mesh: jax.device_put(
            x, jax.sharding.NamedSharding(mesh, _leading_spec(x, mesh))),
        tree)
    assert len(sharded['w'].sharding.device_set) == 8
    assert not sharded['w'].sharding.is_fully_replicated
    assert checkpoint.checksums(sharded) == one

  for key in ('w', 'h', 'f16', 'i8', 'mask'):
    changed = dict(tree, **{key: _one_ulp_up(tree[key], 5)})
    got = checkpoint.checksums(changed)
    assert got[key] != one[key], key
    assert {k: v for k, v in got.items() if k != key} == {
        k: v for k, v in one.items() if k != key}


def _leading_spec(x, mesh):
  """Shards the leading dims over the mesh axes as far as they divide."""
  spec = []
  for dim, name in zip(np.shape(x), mesh.axis_names):
    if dim % mesh.shape[name]:
      break
    spec.append(name)
  return P(*spec)


def _one_ulp_up(x, i):
  """x with element i (flat) one step up in its bits (one ulp for floats)."""
  x = np.array(x)
  if x.dtype == np.bool_:
    x.reshape(-1)[i] = not x.reshape(-1)[i]
    return x
  bits = x.reshape(-1).view(f'u{x.dtype.itemsize}')
  bits[i] += 1
  return x


def test_checksum_keys_are_leaf_paths_and_positions_matter():
  state = _train_state(1)
  sums = checkpoint.checksums(state)
  assert 'params/dense0/kernel' in sums and 'step' in sums
  assert any(k.startswith('opt_state/') for k in sums)
  x = np.arange(8, dtype=np.float32)
  swapped = x.copy()
  swapped[[2, 5]] = swapped[[5, 2]]
  assert checkpoint.checksums(x) != checkpoint.checksums(swapped)


# ------------------------------------------------------- resume fallback ---
@pytest.mark.parametrize('corrupt', [flip_bytes, truncate, delete_metadata,
                                     garbage_data_json],
                         ids=lambda f: f.__name__)
def test_corrupt_newest_step_falls_back_to_the_older_one(tmp_path, corrupt):
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir)
  corrupt(os.path.join(ckpt_dir, '2'))
  lines = []
  got = checkpoint.restore_latest_verified(
      ckpt_dir, _abstract(want[1][0]), data_iter_fn=_data_iterator,
      log=lines.append)
  assert _assert_restored(got, want[1]) == 1
  moved = tmp_path / 'checkpoints.corrupt' / '2'
  assert (moved / 'state').is_dir() and not (tmp_path / 'checkpoints' / '2'
                                             ).exists()
  assert checkpoint.latest_step(ckpt_dir) == 1
  assert len(lines) == 1 and '\n' not in lines[0], lines
  item = 'data' if corrupt is garbage_data_json else 'state'
  assert lines[0].startswith(f'checkpoint step 2 in {ckpt_dir} is corrupt '
                             f'({item}: '), lines[0]
  assert lines[0].endswith(f'moved to {moved}; resuming from step 1')
  if corrupt is garbage_data_json:
    assert 'cannot read process_0-of-1.json: JSONDecodeError' in lines[0]
  if corrupt is flip_bytes:   # wrong values (silent before) or unreadable
    assert ('(state: checksum mismatch in ' in lines[0]
            or '(state: cannot read: ' in lines[0]), lines[0]
  # Again: nothing left to move, no more lines.
  lines.clear()
  got = checkpoint.restore_latest_verified(
      ckpt_dir, _abstract(want[1][0]), data_iter_fn=_data_iterator,
      log=lines.append)
  assert got[2] == 1 and not lines


def test_bytes_that_still_decode_are_caught_by_the_checksum(tmp_path):
  """A changed value in a valid file: only the checksum can see it."""
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir)
  # Rewrite step 2's state with other values through orbax itself: every
  # file is well formed, the bytes are not those the record was made of.
  other = _train_state(7).replace(step=jnp.int32(2))
  state_dir = os.path.join(ckpt_dir, '2', 'state')
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(state_dir + '.new', other)
  os.rename(state_dir, state_dir + '.old')
  os.rename(state_dir + '.new', state_dir)
  lines = []
  got = checkpoint.restore_latest_verified(
      ckpt_dir, _abstract(want[1][0]), data_iter_fn=_data_iterator,
      log=lines.append)
  assert got[2] == 1
  assert 'state: checksum mismatch in params/dense0/kernel' in lines[0]


def test_damaged_config_and_record(tmp_path):
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir, steps=(1, 2, 3))
  # Step 3: a config value changed, the JSON still parses.
  cfg_path = os.path.join(ckpt_dir, '3', 'config', 'metadata')
  cfg = json.load(open(cfg_path))
  cfg['step'] = 30
  json.dump(cfg, open(cfg_path, 'w'))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'step 3 .* \(config: checksum mismatch\)'):
    checkpoint.read_config(ckpt_dir)
  assert checkpoint.read_config(ckpt_dir, 2) == ({'step': 2,
                                                  'size': [36, 36]}, 2)
  # Step 2: its record edited (a checksum replaced) without resealing it.
  rec_path = os.path.join(ckpt_dir, '2', 'integrity', 'metadata')
  rec = json.load(open(rec_path))
  rec['state']['step']['sum'] = '0' * 16
  json.dump(rec, open(rec_path, 'w'))
  lines = []
  got = checkpoint.restore_latest_verified(
      ckpt_dir, _abstract(want[1][0]), data_iter_fn=_data_iterator,
      log=lines.append)
  assert _assert_restored(got, want[1]) == 1
  assert len(lines) == 2
  assert 'step 3' in lines[0] and 'resuming from step 1' in lines[0]
  assert 'step 2' in lines[1] and 'integrity: the record fails its own' in (
      lines[1])
  assert sorted(os.listdir(ckpt_dir + '.corrupt')) == ['2', '3']


def test_all_steps_bad_raises_one_line_and_moves_nothing(tmp_path):
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir)
  truncate(os.path.join(ckpt_dir, '1'))
  garbage_data_json(os.path.join(ckpt_dir, '2'))
  with pytest.raises(checkpoint.CheckpointError) as e:
    checkpoint.restore_latest_verified(
        ckpt_dir, _abstract(want[1][0]), data_iter_fn=_data_iterator,
        log=lambda line: pytest.fail(line))
  message = str(e.value)
  assert '\n' not in message and isinstance(e.value, RuntimeError)
  assert message.startswith(f'no checkpoint in {ckpt_dir} verifies: '
                            'step 2 (data: ')
  assert 'step 1 (state: ' in message and 'nothing was moved' in message
  assert checkpoint.latest_step(ckpt_dir) == 2
  assert not os.path.exists(ckpt_dir + '.corrupt')


def test_no_step_returns_none_and_another_layout_is_not_corruption(tmp_path):
  abstract = _abstract(_train_state())
  assert checkpoint.restore_latest_verified(str(tmp_path / 'none'),
                                            abstract) is None
  ckpt_dir = str(tmp_path / 'checkpoints')
  os.makedirs(ckpt_dir)
  assert checkpoint.restore_latest_verified(ckpt_dir, abstract) is None
  _save_steps(ckpt_dir, steps=(1,))
  wider = _abstract(_train_state()).replace(
      params={'dense0': {'kernel': jax.ShapeDtypeStruct((64, 32), jnp.float32),
                         'bias': jax.ShapeDtypeStruct((32,), jnp.float32)}})
  with pytest.raises(ValueError, match='step 1 .* another state'):
    checkpoint.restore_latest_verified(ckpt_dir, wider)
  assert checkpoint.latest_step(ckpt_dir) == 1


# ------------------------------------------------ readers without fallback ---
def test_restore_state_and_restore_raise_naming_the_step(tmp_path):
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir)
  flip_bytes(os.path.join(ckpt_dir, '2'))
  abstract = _abstract(want[1][0])
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'^checkpoint step 2 in .* corrupt \(state: ') as e:
    checkpoint.restore_state(str(tmp_path), abstract)
  assert '\n' not in str(e.value)
  state, step = checkpoint.restore_state(str(tmp_path), abstract, step=1)
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state),
               want[1][0])
  mngr = checkpoint.make_manager(ckpt_dir)
  try:
    with pytest.raises(checkpoint.CheckpointError, match='step 2'):
      checkpoint.restore(mngr, 2, abstract, data_iter=_data_iterator())
    _, it = checkpoint.restore(mngr, 1, abstract, data_iter=_data_iterator())
    np.testing.assert_array_equal(next(it), want[1][1])
  finally:
    mngr.close()
  assert checkpoint.latest_step(ckpt_dir) == 2   # readers move nothing


def test_saved_sharded_reads_back_verified_on_one_device(tmp_path):
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('x',))
  state = _train_state(3)
  sharded = jax.tree.map(
      lambda x: jax.device_put(x, jax.sharding.NamedSharding(
          mesh, P('x') if x.ndim and x.shape[0] % 8 == 0 else P())), state)
  assert len(sharded.params['dense0']['kernel'].sharding.device_set) == 8
  mngr = checkpoint.make_manager(str(tmp_path), async_save=False)
  checkpoint.save(mngr, 3, sharded)
  mngr.wait_until_finished()
  mngr.close()
  one = jax.sharding.SingleDeviceSharding(jax.devices()[1])
  abstract = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one),
      _abstract(state))
  lines = []
  restored, it, step = checkpoint.restore_latest_verified(
      str(tmp_path), abstract, log=lines.append)
  assert step == 3 and it is None and not lines
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored),
               jax.device_get(state))


# ------------------------------------------------------ before checksums ---
def test_checkpoint_without_integrity_item_still_restores(tmp_path):
  ckpt_dir = str(tmp_path / 'checkpoints')
  state = _train_state(4)
  it = _data_iterator()
  next(it)
  # What save() wrote before checksums: no integrity item.
  with ocp.CheckpointManager(
      ckpt_dir, options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=False, create=True),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'data': grain.checkpoint.CheckpointHandler(),
                     'config': ocp.JsonCheckpointHandler()}) as mngr:
    mngr.save(4, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(it),
        config=ocp.args.JsonSave({'a': 1})))
  expected_next = next(_copy(it))
  lines = []
  got = checkpoint.restore_latest_verified(
      ckpt_dir, _abstract(state), data_iter_fn=_data_iterator,
      log=lines.append)
  assert _assert_restored(got, (jax.device_get(state), expected_next)) == 4
  assert len(lines) == 1 and 'step 4' in lines[0]
  assert 'no integrity record' in lines[0]
  assert checkpoint.read_config(ckpt_dir) == ({'a': 1}, 4)
  assert checkpoint.restore_state(ckpt_dir, _abstract(state))[1] == 4


# -------------------------------------------------------------- inference ---
def _h_state(seed):
  """A stage-1 state (tiny H, random values) at step `seed`; sgd: no
  optimiser arrays, so every array file holds params or the hyperplane."""
  return inference_test.h_state(seed, optax.sgd(1e-3)).replace(
      step=np.int32(seed))


@pytest.fixture
def h_workdir(tmp_path):
  config = {'stage': 'ordering', 'precision': 'float32',
            'model': {'name': 'hypercut', 'kwargs': dict(KW)},
            'optim': {'name': 'sgd', 'lr': 1e-3}, 'input': {'crop': 33}}
  mngr = checkpoint.make_manager(str(tmp_path / 'checkpoints'),
                                 async_save=False, keep=3)
  for step in (1, 2):
    checkpoint.save(mngr, step, _h_state(step), config=config)
  mngr.wait_until_finished()
  mngr.close()
  return str(tmp_path)


@pytest.mark.parametrize('corrupt', [flip_bytes, delete_metadata],
                         ids=lambda f: f.__name__)
def test_inference_load_refuses_a_corrupt_step(h_workdir, corrupt):
  assert inference.load_ordering(h_workdir).step == 2
  corrupt(os.path.join(h_workdir, 'checkpoints', '2'))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'^checkpoint step 2 in .* corrupt \(state: ') as e:
    inference.load_ordering(h_workdir)
  assert '\n' not in str(e.value)
  step_dir = os.path.join(h_workdir, 'checkpoints', '2')
  with pytest.raises(checkpoint.CheckpointError, match='step 2'):
    inference.load(step_dir)
  h1 = inference.load_ordering(h_workdir, step=1)
  np.testing.assert_array_equal(np.asarray(h1.hyperplane),
                                _h_state(1).hyperplane)
  assert checkpoint.latest_step(h_workdir) == 2   # nothing moved


def test_inference_load_refuses_a_damaged_config(h_workdir):
  path = os.path.join(h_workdir, 'checkpoints', '2', 'config', 'metadata')
  with open(path, 'w') as f:
    f.write('{"stage": "ordering", ')
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'step 2 .* \(config: cannot read'):
    inference.load_ordering(h_workdir)


def test_inference_load_reads_a_checkpoint_saved_before_checksums(tmp_path):
  config = {'stage': 'ordering', 'precision': 'float32',
            'model': {'name': 'hypercut', 'kwargs': dict(KW)},
            'optim': {'name': 'sgd', 'lr': 1e-3}, 'input': {'crop': 33}}
  with ocp.CheckpointManager(
      str(tmp_path / 'checkpoints'), options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=False, create=True),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'config': ocp.JsonCheckpointHandler()}) as mngr:
    mngr.save(3, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_h_state(3)),
        config=ocp.args.JsonSave(config)))
  h = inference.load_ordering(str(tmp_path))
  assert h.step == 3
  np.testing.assert_array_equal(np.asarray(h.hyperplane),
                                _h_state(3).hyperplane)


def test_a_step_damaged_again_is_kept_beside_the_first(tmp_path):
  ckpt_dir = str(tmp_path / 'checkpoints')
  want = _save_steps(ckpt_dir)
  abstract = _abstract(want[1][0])
  for _ in range(2):
    flip_bytes(os.path.join(ckpt_dir, '2'))
    got = checkpoint.restore_latest_verified(ckpt_dir, abstract,
                                             log=lambda _: None)
    assert got[2] == 1
    mngr = checkpoint.make_manager(ckpt_dir, async_save=False, keep=3)
    checkpoint.save(mngr, 2, want[2][0])
    mngr.close()
  assert sorted(os.listdir(ckpt_dir + '.corrupt')) == ['2', '2.1']
  assert checkpoint.restore_state(ckpt_dir, abstract)[1] == 2

"""Tests for hypercut_jax.data.pipeline."""
import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hypercut_jax.data import augment
from hypercut_jax.data import pipeline
from hypercut_jax.data import synthetic


class _IndexSource:
  """Example i: a constant image of value i (sharp = 7 copies), id 'r<i>'."""

  def __init__(self, n, size=(10, 12)):
    self.n, self.size = n, size

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    img = np.full((*self.size, 3), i, np.uint8)
    return {'blur': img, 'sharp': np.repeat(img[None], 7, 0), 'id': f'r{i}'}


class _SameImagesSource:
  """Random texture per example; the 7 sharp frames equal the blur."""

  def __len__(self):
    return 16

  def __getitem__(self, i):
    img = np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    return {'blur': img, 'sharp': np.repeat(img[None], 7, 0), 'id': str(i)}


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_train_batches_format_and_identical_augmentation():
  it = pipeline.make_train_iterator(
      _SameImagesSource(), batch_size=4, crop=(12, 14), seed=0,
      augment=augment.AugmentConfig(affine=True, noise_std=0.0),
      process_index=0, process_count=1)
  for batch in _take(it, 6):
    assert set(batch) == {'blur', 'sharp'}           # 'id' dropped
    assert batch['blur'].shape == (4, 12, 14, 3) and batch['blur'].dtype == np.uint8
    assert batch['sharp'].shape == (4, 7, 12, 14, 3) and batch['sharp'].dtype == np.uint8
    for k in range(7):
      np.testing.assert_array_equal(batch['sharp'][:, k], batch['blur'])


def test_state_round_trip_resumes_exactly():
  src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=12, size=(24, 24))
  make = lambda: pipeline.make_train_iterator(
      src, batch_size=3, crop=16, seed=5, process_index=0, process_count=1)
  it = make()
  _take(it, 5)                       # crosses an epoch (12 records / 3)
  state = it.get_state()
  json.dumps(state)                  # JSON-able, as grain's orbax handler needs
  expected = _take(it, 3)
  fresh = make()
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 3), expected)
  other = pipeline.make_train_iterator(
      src, batch_size=3, crop=16, seed=6, process_index=0, process_count=1)
  other.set_state(state)
  assert not np.array_equal(next(other)['sharp'], expected[0]['sharp'])


def test_orbax_checkpoint_round_trip(tmp_path):
  src = _IndexSource(20)
  make = lambda: pipeline.make_train_iterator(
      src, batch_size=4, crop=8, seed=1, process_index=0, process_count=1)
  it = make()
  _take(it, 3)
  mngr = ocp.CheckpointManager(
      tmp_path, item_handlers={'data': grain.checkpoint.CheckpointHandler()},
      options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False))
  mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  expected = _take(it, 2)
  restored = mngr.restore(3, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointRestore(make())))['data']
  _assert_batches_equal(_take(restored, 2), expected)
  mngr.close()


def test_processes_see_disjoint_shards_covering_the_data():
  n, count, batch = 24, 2, 4
  seen = []
  for index in range(count):
    it = pipeline.make_train_iterator(
        _IndexSource(n), batch_size=batch, crop=None, seed=0, augment=None,
        process_index=index, process_count=count)
    # One epoch of the shard: 12 records = 3 batches, each record once.
    ids = np.concatenate([b['blur'][:, 0, 0, 0] for b in _take(it, 3)])
    assert sorted(ids) == list(range(*pipeline.shard_bounds(n, index, count)))
    assert list(ids) != sorted(ids)          # shuffled
    seen.append(set(ids.tolist()))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(n))


def test_shard_bounds_partition():
  for n in (0, 1, 7, 10):
    for count in (1, 3, 4):
      parts = [range(*pipeline.shard_bounds(n, i, count)) for i in range(count)]
      assert [i for p in parts for i in p] == list(range(n))
      assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_eval_batches_cover_every_example_once_with_mask():
  src = _IndexSource(10, size=(10, 12))
  batches = pipeline.make_eval_batches(src, batch_size=4, crop=(6, 8))
  assert len(batches) == 3 and batches.num_examples == 10
  got = list(batches)
  assert len(got) == 3
  mask = np.concatenate([b['mask'] for b in got])
  ids = np.concatenate([b['id'] for b in got])
  assert mask.dtype == np.bool_
  assert mask.tolist() == [True] * 10 + [False] * 2
  assert ids[mask].tolist() == [f'r{i}' for i in range(10)]
  assert ids[~mask].tolist() == ['', '']
  for b in got:
    assert b['blur'].shape == (4, 6, 8, 3) and b['sharp'].shape == (4, 7, 6, 8, 3)
    assert np.isfinite(b['blur'].astype(np.float32)).all()
  # Masked sums divided once give the true mean.
  values = np.concatenate([b['blur'][:, 0, 0, 0] for b in got]).astype(np.float64)
  assert (values * mask).sum() / mask.sum() == np.mean(range(10))
  _assert_batches_equal(list(batches), got)   # deterministic, re-iterable


def test_eval_batches_across_processes():
  n, count = 11, 2
  per_process = [list(pipeline.make_eval_batches(
      _IndexSource(n), batch_size=4, process_index=i, process_count=count))
                 for i in range(count)]
  assert len(per_process[0]) == len(per_process[1]) == 2
  ids = [i for batches in per_process for b in batches
         for i in b['id'][b['mask']].tolist()]
  assert sorted(ids) == sorted(f'r{i}' for i in range(n))
  assert len(ids) == n


def test_eval_centre_crop_location():
  src = synthetic.SyntheticBlur2Vid('test', seed=0, num_records=3, size=(20, 24))
  batch = next(iter(pipeline.make_eval_batches(src, batch_size=3, crop=10,
                                               process_index=0, process_count=1)))
  np.testing.assert_array_equal(batch['sharp'][1], src[1]['sharp'][:, 5:15, 7:17])


def test_augment_from_mapping_and_errors():
  src = _IndexSource(8)
  it = pipeline.make_train_iterator(
      src, batch_size=2, crop=4, seed=0, augment={'hflip': False, 'brightness': 0.0},
      process_index=0, process_count=1)
  assert next(it)['blur'].shape == (2, 4, 4, 3)
  with pytest.raises(ValueError, match='unknown'):
    pipeline.make_train_iterator(src, batch_size=2, crop=4, seed=0,
                                 augment={'flip': True})
  with pytest.raises(ValueError, match='fewer than batch_size'):
    pipeline.make_train_iterator(src, batch_size=5, crop=4, seed=0,
                                 process_index=0, process_count=2)
  with pytest.raises(ValueError, match='process_index'):
    pipeline.make_eval_batches(src, batch_size=2, process_index=2, process_count=2)
  with pytest.raises(ValueError, match='seed'):
    pipeline.make_train_iterator(src, batch_size=2, crop=4, seed=-3)


class _BaistLikeSource(_IndexSource):
  """Adds a guidance map and a bbox, like B-Aist++ examples."""

  def __getitem__(self, i):
    ex = super().__getitem__(i)
    ex['guidance'] = np.full(self.size, i % 5, np.int32)
    ex['bbox'] = np.array([0.1, 0.2, 0.9, 0.8], np.float32)
    return ex


def test_extra_keys():
  src = _BaistLikeSource(8)
  batch = next(pipeline.make_train_iterator(
      src, batch_size=4, crop=6, seed=0, process_index=0, process_count=1))
  assert set(batch) == {'blur', 'sharp', 'guidance'}
  assert batch['guidance'].shape == (4, 6, 6)
  cropped = next(iter(pipeline.make_eval_batches(src, batch_size=4, crop=6)))
  assert set(cropped) == {'blur', 'sharp', 'guidance', 'id', 'mask'}
  full = next(iter(pipeline.make_eval_batches(src, batch_size=4)))
  assert full['bbox'].shape == (4, 4) and full['guidance'].shape == (4, 10, 12)


def test_defaults_to_the_jax_process():
  batches = pipeline.make_eval_batches(_IndexSource(5), batch_size=2)
  assert batches.num_examples == 5 and len(batches) == 3


def test_worker_processes_match_in_process_and_resume():
  src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=16, size=(20, 20))
  make = lambda workers: pipeline.make_train_iterator(
      src, batch_size=2, crop=12, seed=2, process_index=0, process_count=1,
      worker_count=workers)
  reference = _take(make(0), 5)
  it = make(1)
  try:
    _assert_batches_equal(_take(it, 3), reference[:3])
    state = it.get_state()
  finally:
    it.close()
  fresh = make(1)
  try:
    fresh.set_state(state)
    _assert_batches_equal(_take(fresh, 2), reference[3:])
  finally:
    fresh.close()

"""Tests for hypercut_jax.data.synthetic and hypercut_jax.data.get_source."""
import hashlib
import os
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from scipy import stats

from hypercut_jax import data
from hypercut_jax.data import synthetic

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(example) -> str:
  h = hashlib.sha256()
  h.update(example['blur'].tobytes())
  h.update(example['sharp'].tobytes())
  h.update(example['id'].encode())
  return h.hexdigest()


_CHILD = """
import hashlib, sys
from hypercut_jax.data import synthetic
print(synthetic._texture.cache_info().currsize)   # nothing loaded at import
for split, space, i in [('train', 'srgb', 3), ('train', 'linear', 11), ('test', 'srgb', 5)]:
  ex = synthetic.SyntheticBlur2Vid(split, seed=7, num_records=20, size=(24, 40),
                                   blur_space=space)[i]
  h = hashlib.sha256()
  h.update(ex['blur'].tobytes()); h.update(ex['sharp'].tobytes()); h.update(ex['id'].encode())
  print(h.hexdigest())
"""


def test_records_are_identical_across_processes_and_calls():
  expected = []
  for split, space, i in [('train', 'srgb', 3), ('train', 'linear', 11),
                          ('test', 'srgb', 5)]:
    src = synthetic.SyntheticBlur2Vid(split, seed=7, num_records=20,
                                      size=(24, 40), blur_space=space)
    first = _digest(src[i])
    assert _digest(src[i]) == first
    expected.append(first)
  out = subprocess.run([sys.executable, '-c', _CHILD], cwd=_REPO, check=True,
                       capture_output=True, text=True, timeout=120).stdout.split()
  assert out[0] == '0'
  assert out[1:] == expected


def test_example_format():
  ex = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=3, size=(20, 36))[1]
  assert set(ex) == {'blur', 'sharp', 'id'}
  assert ex['blur'].shape == (20, 36, 3) and ex['blur'].dtype == np.uint8
  assert ex['sharp'].shape == (7, 20, 36, 3) and ex['sharp'].dtype == np.uint8
  assert ex['id'] in ('synthetic/train/0000001/fwd', 'synthetic/train/0000001/rev')


@pytest.mark.parametrize('sub_frames', [1, 3])
def test_blur_is_mean_of_sharp_in_srgb(sub_frames):
  src = synthetic.SyntheticBlur2Vid('train', seed=1, num_records=10, size=(32, 32),
                                    sub_frames=sub_frames)
  for i in range(4):
    ex = src[i]
    mean = ex['sharp'].astype(np.float64).mean(0)
    assert np.abs(ex['blur'] - mean).max() <= 1.0
    assert np.abs(ex['blur'] - mean).mean() < 0.3


def test_blur_is_mean_of_sharp_in_linear_light():
  src = synthetic.SyntheticBlur2Vid('test', seed=1, num_records=10, size=(32, 32),
                                    blur_space='linear')
  srgb = synthetic.SyntheticBlur2Vid('test', seed=1, num_records=10, size=(32, 32))
  for i in range(3):
    ex = src[i]
    lin = synthetic.srgb_to_linear(ex['sharp'] / 255.0).mean(0)
    ref = synthetic.linear_to_srgb(lin) * 255
    assert np.abs(ex['blur'] - ref).max() <= 1.0
    # Averaging in linear light is visibly different from averaging codes.
    mean_codes = ex['sharp'].astype(np.float64).mean(0)
    assert np.abs(ex['blur'] - mean_codes).max() > 3
    assert srgb[i]['id'] == ex['id']


def test_directions_are_balanced():
  src = synthetic.SyntheticBlur2Vid('train', seed=123, num_records=400, size=(8, 8),
                                    sub_frames=1, max_sprites=1)
  reversed_ = [src[i]['id'].endswith('/rev') for i in range(len(src))]
  assert all(src[i]['id'].endswith(('/fwd', '/rev')) for i in range(5))
  k = int(np.sum(reversed_))
  assert 0 < k < 400
  assert stats.binomtest(k, 400, 0.5).pvalue > 0.01, k


def test_blur_cannot_tell_the_direction():
  kw = dict(size=(32, 32), blur_space='srgb')
  fwd = synthetic.render(5, 'train', 9, reverse=False, **kw)
  rev = synthetic.render(5, 'train', 9, reverse=True, **kw)
  np.testing.assert_array_equal(fwd['blur'], rev['blur'])
  np.testing.assert_array_equal(fwd['sharp'][::-1], rev['sharp'])
  assert not np.array_equal(fwd['sharp'], rev['sharp'])
  drawn = synthetic.render(5, 'train', 9, **kw)
  assert drawn['id'].endswith('/rev') == np.array_equal(drawn['sharp'], rev['sharp'])


def test_motion_is_visible_between_first_and_last_frame():
  src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=20, size=(32, 32))
  d06, d01 = [], []
  for i in range(12):
    x = src[i]['sharp'].astype(np.float32)
    d06.append(np.abs(x[0] - x[6]).mean())
    d01.append(np.abs(x[0] - x[1]).mean())
  assert np.median(d06) > 10       # grey levels, 0..255
  assert np.mean(np.array(d06) > np.array(d01)) == 1.0


def test_sub_frames_blur_each_frame():
  a = synthetic.render(2, 'train', 4, size=(32, 32), sub_frames=1)
  b = synthetic.render(2, 'train', 4, size=(32, 32), sub_frames=3)
  assert a['id'] == b['id']
  assert not np.array_equal(a['sharp'], b['sharp'])


def test_records_differ_and_splits_differ():
  train = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=8, size=(16, 16))
  test = synthetic.SyntheticBlur2Vid('test', seed=0, num_records=8, size=(16, 16))
  digests_train = {_digest(train[i]) for i in range(8)}
  blurs_test = {test[i]['blur'].tobytes() for i in range(8)}
  assert len(digests_train) == 8
  assert not blurs_test & {train[i]['blur'].tobytes() for i in range(8)}
  other_seed = synthetic.SyntheticBlur2Vid('train', seed=1, num_records=8, size=(16, 16))
  assert not np.array_equal(train[0]['sharp'], other_seed[0]['sharp'])


def test_textures_are_bundled_files():
  for name in synthetic.TEXTURES:
    tex = synthetic._texture(name, 0)
    assert tex.dtype == np.uint8 and tex.ndim == 3 and tex.shape[2] == 3
    assert min(tex.shape[:2]) >= 128
  coarse = synthetic._texture('astronaut.png', 2)
  assert coarse.shape == (128, 128, 3)


def test_bad_arguments():
  with pytest.raises(ValueError, match='split'):
    synthetic.SyntheticBlur2Vid('val', seed=0, num_records=2)
  with pytest.raises(ValueError, match='blur_space'):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, blur_space='gamma')
  with pytest.raises(ValueError, match='size'):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, size=(4, 64))
  with pytest.raises(ValueError, match='seed'):
    synthetic.SyntheticBlur2Vid('train', seed=-1, num_records=2)
  with pytest.raises(IndexError):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2)[2]


def _synthetic_config(**kw):
  fields = dict(name='synthetic', seed=3, num_train=10, num_test=4,
                size=(24, 32), blur_space='linear')
  fields.update(kw)
  return ml_collections.ConfigDict(fields)


def test_get_source_synthetic():
  train = data.get_source(_synthetic_config(), 'train')
  test = data.get_source(_synthetic_config(), 'test')
  assert isinstance(train, synthetic.SyntheticBlur2Vid)
  assert (len(train), len(test)) == (10, 4)
  assert train.size == (24, 32) and train.blur_space == 'linear'
  assert train[0]['blur'].shape == (24, 32, 3)
  square = data.get_source(_synthetic_config(size=16, sub_frames=2), 'test')
  assert square.size == (16, 16) and square.sub_frames == 2


def test_get_source_errors():
  with pytest.raises(ValueError, match="known: \\['synthetic', 'rb2v', 'reds', 'baist'\\]"):
    data.get_source(ml_collections.ConfigDict({'name': 'gopro'}), 'train')
  with pytest.raises(ValueError, match='split'):
    data.get_source(_synthetic_config(), 'validation')
  bad = ml_collections.ConfigDict({'name': 'synthetic', 'seed': 0, 'num_train': 2})
  with pytest.raises(ValueError, match='size'):
    data.get_source(bad, 'train')


def test_get_source_tfds_datasets_use_hypercut_datasets(monkeypatch):
  calls = []
  fake = types.ModuleType('hypercut_datasets')
  fake.data_source = lambda name, split, data_dir, config=None: calls.append(
      (name, split, data_dir, config)) or ['example']
  monkeypatch.setitem(sys.modules, 'hypercut_datasets', fake)
  cfg = ml_collections.ConfigDict({'name': 'rb2v', 'data_dir': '/d', 'subset': 'face'})
  assert data.get_source(cfg, 'test') == ['example']
  cfg = ml_collections.ConfigDict({'name': 'reds', 'data_dir': '/r'})
  data.get_source(cfg, 'train')
  assert calls == [('rb2v', 'test', '/d', 'face'), ('reds', 'train', '/r', None)]

"""REDS builder: windows, linear/sRGB blur, read back without TF, bad input."""
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from hypercut_datasets import build as build_lib
from hypercut_datasets import testing
from hypercut_datasets.reds import reds_dataset_builder as reds

# Dummy data: train_orig/000 has 15 frames, train_orig/001 8, val_orig/000 7.
EXPECTED = {
    'train': {'train_orig/000/00000000': (41, 0), 'train_orig/000/00000007': (41, 7),
              'train_orig/001/00000000': (42, 0)},
    'test': {'val_orig/000/00000000': (43, 0)},
}  # id -> (channel-1 tag, first frame number)


def marker(t):
  return 5 + 12 * np.asarray(t)  # pixel [0,0,0] of frame t in the dummy data.


def srgb_decode(c):
  return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_encode(v):
  return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


@pytest.fixture(scope='module')
def read_back(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('reds')
  data_dir = tmp / 'data'
  for config in ('linear', 'srgb', build_lib.reds_config(stride=3)):
    testing.build('reds', testing.dummy_dir('reds'), data_dir, config)
  reads = [('reds', c, s) for c in ('linear', 'srgb') for s in EXPECTED]
  reads.append(('reds', 'linear_stride3', 'train'))
  return testing.read_in_fresh_process(data_dir, reads, tmp)


def test_reading_does_not_import_tensorflow(read_back):
  assert read_back['tensorflow_imported'] is False


@pytest.mark.parametrize('config', ['linear', 'srgb'])
def test_examples_read_back(read_back, config):
  for split, expected in EXPECTED.items():
    records = read_back['records'][('reds', config, split)]
    assert sorted(r['id'] for r in records) == sorted(expected)
    for r in records:
      tag, first = expected[r['id']]
      assert r['blur'].dtype == np.uint8 and r['blur'].shape == (40, 48, 3)
      assert r['sharp'].dtype == np.uint8 and r['sharp'].shape == (7, 40, 48, 3)
      np.testing.assert_array_equal(r['sharp'][:, 0, 0, 0], marker(first + np.arange(7)))
      assert np.all(r['sharp'][..., 1] == tag)
      sharp = r['sharp'].astype(np.float64) / 255
      if config == 'srgb':
        want = sharp.mean(0)
      else:
        want = srgb_encode(srgb_decode(sharp).mean(0))
      np.testing.assert_array_equal(r['blur'], np.floor(want * 255 + 0.5))


def test_linear_and_srgb_blur_differ(read_back):
  lin = {r['id']: r['blur'] for r in read_back['records'][('reds', 'linear', 'train')]}
  srgb = {r['id']: r['blur'] for r in read_back['records'][('reds', 'srgb', 'train')]}
  assert any(np.any(lin[k] != srgb[k]) for k in lin)


def test_stride(read_back):
  ids = sorted(r['id'] for r in read_back['records'][('reds', 'linear_stride3', 'train')])
  assert ids == ['train_orig/000/00000000', 'train_orig/000/00000003',
                 'train_orig/000/00000006', 'train_orig/001/00000000']


def test_average_frames_hand_computed():
  frames = np.zeros((7, 1, 2, 3), np.uint8)
  frames[3:] = 255  # 3 black, 4 white frames.
  # linear: 255 * (1.055 * (4/7)**(1/2.4) - 0.055) = 199.05; sRGB: 255 * 4/7 = 145.7.
  assert np.all(reds.average_frames(frames, 'linear') == 199)
  assert np.all(reds.average_frames(frames, 'srgb') == 146)
  constant = np.full((7, 2, 2, 3), 77, np.uint8)
  assert np.all(reds.average_frames(constant, 'linear') == 77)


def test_zip_layout_is_accepted(tmp_path):
  raw = tmp_path / 'raw'
  dummy = testing.dummy_dir('reds')
  shutil.copytree(os.path.join(dummy, 'train_orig'), raw / 'train' / 'train_orig')
  shutil.copytree(os.path.join(dummy, 'val_orig'), raw / 'val' / 'val_orig')
  path = testing.build('reds', raw, tmp_path / 'data', 'srgb')
  assert os.path.isfile(os.path.join(path, 'dataset_info.json'))


# ----------------------------------------------------------------- bad input

def _raw(tmp_path):
  return testing.copy_dummy('reds', tmp_path / 'raw')


def _build(tmp_path, raw, config='linear'):
  testing.build('reds', raw, tmp_path / 'data', config)


def test_missing_frame(tmp_path):
  raw = _raw(tmp_path)
  os.remove(os.path.join(raw, 'train_orig', '000', '00000003.png'))
  with pytest.raises(FileNotFoundError, match=r'train_orig/000/00000003\.png: frame missing'):
    _build(tmp_path, raw)


def test_misnamed_frame(tmp_path):
  raw = _raw(tmp_path)
  seq = os.path.join(raw, 'train_orig', '001')
  os.rename(os.path.join(seq, '00000004.png'), os.path.join(seq, '0000004.png'))
  with pytest.raises(ValueError, match=r'001/0000004\.png: unexpected file name'):
    _build(tmp_path, raw)


def test_png_that_does_not_decode(tmp_path):
  raw = _raw(tmp_path)
  with open(os.path.join(raw, 'val_orig', '000', '00000005.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n garbage')
  with pytest.raises(ValueError,
                     match=r'val_orig/000/00000005\.png: sharp frame 5 does not decode'):
    _build(tmp_path, raw)


def test_frame_size_mismatch(tmp_path):
  raw = _raw(tmp_path)
  Image.new('RGB', (48, 36)).save(os.path.join(raw, 'train_orig', '000', '00000009.png'))
  with pytest.raises(ValueError, match=r'00000009\.png: size 36x48 .*00000007\.png \(40x48\)'):
    _build(tmp_path, raw)


def test_sequence_shorter_than_7_frames(tmp_path):
  raw = _raw(tmp_path)
  os.remove(os.path.join(raw, 'val_orig', '000', '00000006.png'))
  with pytest.raises(ValueError, match=r'val_orig/000: 6 frames; a sequence needs at least 7'):
    _build(tmp_path, raw)


def test_missing_split_folder(tmp_path):
  raw = _raw(tmp_path)
  shutil.rmtree(os.path.join(raw, 'val_orig'))
  with pytest.raises(FileNotFoundError, match=r'val_orig: REDS 120 fps folder not found'):
    _build(tmp_path, raw)


def test_bad_config(tmp_path):
  raw = _raw(tmp_path)
  with pytest.raises(ValueError, match=r'RedsConfig\.stride=0'):
    _build(tmp_path, raw, reds.RedsConfig(name='bad_stride', stride=0))
  with pytest.raises(ValueError, match=r"RedsConfig\.blur_space='gamma'"):
    _build(tmp_path, raw, reds.RedsConfig(name='bad_space', blur_space='gamma'))

"""B-Aist++ builder: frames 40..N-41, guidance, bbox, split lists, bad input."""
import os
import pickle
import re

import numpy as np
from PIL import Image
import pytest

from hypercut_datasets import testing
from hypercut_datasets.baist import baist_dataset_builder as baist

TRAIN_VIDEO = 'gKR_sBM_c01_d28_mKR0_ch05_cropped_32X'  # 83 blurry frames; frame 41 unannotated.
TEST_VIDEO = 'gWA_sBM_c01_d26_mWA0_ch06_cropped_32X'  # 81 blurry frames.
# id -> bbox (ymin, xmin, ymax, xmax) expected from the dummy pickles (40x48 images).
EXPECTED = {
    'train': {f'{TRAIN_VIDEO}/00000040': (6 / 40, 4 / 48, 36 / 40, 30 / 48),
              f'{TRAIN_VIDEO}/00000042': (2 / 40, 10 / 48, 39.5 / 40, 1.0)},  # x_max 50 clipped.
    'test': {f'{TEST_VIDEO}/00000040': (0.0, 0.0, 1.0, 1.0)},
}
LABELS = {(0, 0): 0, (1, -1): 1, (-1, -1): 2, (-1, 1): 3, (1, 1): 4}  # Animation-from-Blur.


@pytest.fixture(scope='module')
def read_back(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('baist')
  testing.build('baist', testing.dummy_dir('baist'), tmp / 'data')
  return testing.read_in_fresh_process(tmp / 'data', [('baist', None, s) for s in EXPECTED], tmp)


def test_reading_does_not_import_tensorflow(read_back):
  assert read_back['tensorflow_imported'] is False


@pytest.mark.parametrize('split', sorted(EXPECTED))
def test_examples_read_back(read_back, split):
  records = read_back['records'][('baist', None, split)]
  assert sorted(r['id'] for r in records) == sorted(EXPECTED[split])
  for r in records:
    video, frame = r['id'].split('/')
    vdir = os.path.join(testing.dummy_dir('baist'), 'b-aist++', video)
    assert r['blur'].dtype == np.uint8 and r['blur'].shape == (40, 48, 3)
    assert r['sharp'].dtype == np.uint8 and r['sharp'].shape == (7, 40, 48, 3)
    np.testing.assert_array_equal(r['sharp'][:, 0, 0, 0], 5 + 12 * np.arange(7))
    for j in (0, 6):
      on_disk = np.asarray(Image.open(os.path.join(vdir, 'sharp', f'{frame}_{j:03d}.png')))
      np.testing.assert_array_equal(r['sharp'][j], on_disk)
    on_disk = np.asarray(Image.open(os.path.join(vdir, 'blur', f'{frame}.png')))
    np.testing.assert_array_equal(r['blur'], on_disk)
    # guidance: label of every trend pair, each trend pixel covering 2x2 image pixels.
    trend = np.load(os.path.join(vdir, 'trend+_avg', f'{frame}_trend.npy'))
    want = np.array([[LABELS[tuple(int(v) for v in p)] for p in row] for row in trend])
    want = np.repeat(np.repeat(want, 2, axis=0), 2, axis=1)
    assert r['guidance'].dtype == np.int32
    np.testing.assert_array_equal(r['guidance'], want)
    assert set(np.unique(r['guidance'])) == {0, 1, 2, 3, 4}
    assert r['bbox'].dtype == np.float32
    np.testing.assert_allclose(r['bbox'], EXPECTED[split][r['id']], atol=1e-6)


def test_split_lists_are_the_dancer_disjoint_ones():
  train, test = baist.read_video_list('train'), baist.read_video_list('test')
  assert (len(train), len(set(train)), len(test), len(set(test))) == (73, 73, 32, 32)
  dancers = lambda videos: {re.search(r'_(d\d\d)_', v).group(1) for v in videos}
  assert not dancers(train) & dancers(test)
  assert TRAIN_VIDEO in train and TEST_VIDEO in test


def test_trend_to_labels_and_resize():
  trend = np.array([[[0, 0], [1, -1]], [[-1, -1], [-1, 1]], [[1, 1], [0, 0]]], np.float32)
  labels = baist.trend_to_labels(trend)
  np.testing.assert_array_equal(labels, [[0, 1], [2, 3], [4, 0]])
  # 3x2 -> 6x5: rows floor(i*3/6) = 0,0,1,1,2,2; cols floor(j*2/5) = 0,0,0,1,1.
  np.testing.assert_array_equal(baist.resize_nearest(labels, 6, 5)[:, :],
                                labels[[0, 0, 1, 1, 2, 2]][:, [0, 0, 0, 1, 1]])
  with pytest.raises(ValueError, match=r'guidance pair \(1, 0\)'):
    baist.trend_to_labels(np.array([[[1, 0]]]))


# ----------------------------------------------------------------- bad input

def _video(tmp_path, video=TRAIN_VIDEO):
  raw = testing.copy_dummy('baist', tmp_path / 'raw')
  return raw, os.path.join(raw, 'b-aist++', video)


def _build(tmp_path, raw):
  testing.build('baist', raw, tmp_path / 'data')


def test_missing_sharp_frame(tmp_path):
  raw, vdir = _video(tmp_path)
  os.remove(os.path.join(vdir, 'sharp', '00000042_003.png'))
  with pytest.raises(FileNotFoundError, match=r'sharp/00000042_003\.png: sharp frame missing'):
    _build(tmp_path, raw)


def test_eighth_sharp_frame(tmp_path):
  raw, vdir = _video(tmp_path, TEST_VIDEO)
  sharp = os.path.join(vdir, 'sharp')
  os.link(os.path.join(sharp, '00000040_006.png'), os.path.join(sharp, '00000040_007.png'))
  with pytest.raises(ValueError, match=r'00000040_007\.png: more than 7 sharp frames'):
    _build(tmp_path, raw)


def test_misnamed_or_missing_blurry_frame(tmp_path):
  raw, vdir = _video(tmp_path)
  blur = os.path.join(vdir, 'blur')
  os.rename(os.path.join(blur, '00000005.png'), os.path.join(blur, '0000005.png'))
  with pytest.raises(ValueError, match=r'blur/0000005\.png: unexpected file name'):
    _build(tmp_path, raw)
  os.remove(os.path.join(blur, '0000005.png'))
  with pytest.raises(FileNotFoundError, match=r'blur/00000005\.png: blurry frame missing'):
    _build(tmp_path, raw)


def test_png_that_does_not_decode(tmp_path):
  raw, vdir = _video(tmp_path)
  with open(os.path.join(vdir, 'blur', '00000042.png'), 'wb') as f:
    f.write(b'')
  with pytest.raises(ValueError, match=r'blur/00000042\.png: blurry image does not decode'):
    _build(tmp_path, raw)


def test_size_mismatch(tmp_path):
  raw, vdir = _video(tmp_path, TEST_VIDEO)
  Image.new('RGB', (50, 40)).save(os.path.join(vdir, 'sharp', '00000040_002.png'))
  with pytest.raises(ValueError, match=r'00000040_002\.png: size 40x50 .* does not match'):
    _build(tmp_path, raw)


def test_missing_or_bad_guidance(tmp_path):
  raw, vdir = _video(tmp_path)
  path = os.path.join(vdir, 'trend+_avg', '00000040_trend.npy')
  np.save(path, np.full((20, 24, 2), 0.5, np.float32))
  with pytest.raises(ValueError, match=r'00000040_trend\.npy: guidance values must be -1, 0 or 1'):
    _build(tmp_path, raw)
  np.save(path, np.zeros((20, 24), np.float32))
  with pytest.raises(ValueError, match=r'00000040_trend\.npy: guidance shape \(20, 24\)'):
    _build(tmp_path, raw)
  os.remove(path)
  with pytest.raises(FileNotFoundError, match=r'00000040_trend\.npy: motion guidance missing'):
    _build(tmp_path, raw)


def test_bad_bbox_annotation(tmp_path):
  raw, vdir = _video(tmp_path, TEST_VIDEO)
  path = os.path.join(vdir, 'blur_anno', '00000040.pkl')
  with open(path, 'wb') as f:
    pickle.dump({'box': [0, 0, 1, 1]}, f)
  with pytest.raises(ValueError, match=r'00000040\.pkl: expected a dict with a "bbox" entry'):
    _build(tmp_path, raw)
  with open(path, 'wb') as f:
    pickle.dump({'bbox': [60, 0, 70, 10]}, f)  # entirely right of the 48-px image.
  with pytest.raises(ValueError, match=r'00000040\.pkl: bbox .* is empty'):
    _build(tmp_path, raw)
  with open(path, 'wb') as f:
    f.write(b'garbage')
  with pytest.raises(ValueError, match=r'00000040\.pkl: bbox annotation does not unpickle'):
    _build(tmp_path, raw)


def test_no_listed_video_present(tmp_path):
  raw, vdir = _video(tmp_path, TEST_VIDEO)
  os.rename(vdir, vdir + '_renamed')
  with pytest.raises(FileNotFoundError, match=r'none of the 32 test videos'):
    _build(tmp_path, raw)


def test_failed_build_leaves_no_dataset(tmp_path):
  raw, vdir = _video(tmp_path, TEST_VIDEO)  # train is written first, then test fails.
  with open(os.path.join(vdir, 'sharp', '00000040_004.png'), 'wb') as f:
    f.write(b'not a png')
  with pytest.raises(ValueError, match=r'00000040_004\.png'):
    _build(tmp_path, raw)
  assert not (tmp_path / 'data' / 'baist').exists() or os.listdir(tmp_path / 'data' / 'baist') == []
  assert not baist.Builder(data_dir=os.fspath(tmp_path / 'data')).is_prepared()

"""RB2V builder: builds from dummy_data, reads back without TF, rejects bad input."""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import hypercut_datasets
from hypercut_datasets import testing
from hypercut_datasets.rb2v import rb2v_dataset_builder as rb2v

# The dummy data (make_dummy_data.py): config -> split -> {id: channel-1 tag}.
EXPECTED = {
    'street': {'train': {'00000/0000': 11, '00000/0001': 12, '00001/0000': 13},
               'test': {'00002/0000': 14, '00002/0001': 15}},
    'face': {'train': {'00000/0000': 21, '00000/0001': 22},
             'validation': {'00001/0000': 23},
             'test': {'00002/0000': 24}},
    'hand': {'train': {'00000/0000': 31, '00001/0000': 32},
             'test': {'00002/0000': 33, '00002/0001': 34}},
}
TIME_MARKERS = 5 + 12 * np.arange(7)  # pixel [0,0,0] of sharp frame t.


@pytest.fixture(scope='module')
def read_back(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('rb2v')
  data_dir = tmp / 'data'
  for config in EXPECTED:
    testing.build('rb2v', testing.dummy_dir('rb2v'), data_dir, config)
  reads = [('rb2v', c, s) for c, splits in EXPECTED.items() for s in splits]
  return testing.read_in_fresh_process(data_dir, reads, tmp)


def test_reading_does_not_import_tensorflow(read_back):
  assert read_back['tensorflow_imported'] is False


@pytest.mark.parametrize('config', sorted(EXPECTED))
def test_examples_read_back(read_back, config):
  for split, tags in EXPECTED[config].items():
    records = read_back['records'][('rb2v', config, split)]
    assert sorted(r['id'] for r in records) == sorted(tags)
    for r in records:
      assert isinstance(r['id'], str)
      assert r['blur'].dtype == np.uint8 and r['blur'].shape == (40, 48, 3)
      assert r['sharp'].dtype == np.uint8 and r['sharp'].shape == (7, 40, 48, 3)
      # Recorded time order, also for entries stored reversed (order='reverse').
      np.testing.assert_array_equal(r['sharp'][:, 0, 0, 0], TIME_MARKERS)
      assert np.all(r['sharp'][..., 1] == tags[r['id']])
      # The blur belongs to these frames (dummy blur = rounded mean).
      mean = np.floor(r['sharp'].astype(np.float64).mean(0) + 0.5)
      np.testing.assert_array_equal(r['blur'], mean)


def test_split_sizes_of_the_real_dataset_are_documented():
  readme = open(os.path.join(os.path.dirname(rb2v.__file__), 'README.md'), encoding='utf-8').read()
  for numbers in ('9000', '2053', '8000', '2157', '12000', '4722'):
    assert numbers in readme


# ----------------------------------------------------------------- bad input

def _street(tmp_path):
  raw = testing.copy_dummy('rb2v', tmp_path / 'raw')
  return raw, os.path.join(raw, 'Street')


def _edit_metadata(root, edit):
  path = os.path.join(root, 'metadata.json')
  with open(path, encoding='utf-8') as f:
    meta = json.load(f)
  edit(meta['data'])
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(meta, f)


def _build(tmp_path, raw):
  testing.build('rb2v', raw, tmp_path / 'data', 'street')


def test_missing_sharp_file(tmp_path):
  raw, root = _street(tmp_path)
  os.remove(os.path.join(root, '00002', 'sharp', '0000_3.png'))
  with pytest.raises(FileNotFoundError, match=r"id='00002/0000'.*frame003_path.*0000_3\.png"):
    _build(tmp_path, raw)


def test_misnamed_sharp_file(tmp_path):
  raw, root = _street(tmp_path)
  sharp = os.path.join(root, '00000', 'sharp')
  os.rename(os.path.join(sharp, '0001_5.png'), os.path.join(sharp, '0001_05.png'))
  with pytest.raises(FileNotFoundError, match=r"id='00000/0001'.*0001_5\.png"):
    _build(tmp_path, raw)


def test_metadata_entry_pointing_nowhere(tmp_path):
  raw, root = _street(tmp_path)
  _edit_metadata(root, lambda d: d[1].update(blur_path='00000/blur/9999.png'))
  with pytest.raises(FileNotFoundError, match=r"blur_path='00000/blur/9999\.png'"):
    _build(tmp_path, raw)


def test_png_that_does_not_decode(tmp_path):
  raw, root = _street(tmp_path)
  path = os.path.join(root, '00001', 'sharp', '0000_2.png')
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])  # truncated
  with pytest.raises(ValueError, match=r'0000_2\.png: sharp frame \d does not decode'):
    _build(tmp_path, raw)


def test_png_that_is_not_rgb(tmp_path):
  raw, root = _street(tmp_path)
  Image.new('L', (48, 40)).save(os.path.join(root, '00000', 'blur', '0000.png'))
  with pytest.raises(ValueError, match=r"0000\.png: blurry image has Pillow mode 'L'"):
    _build(tmp_path, raw)


@pytest.mark.parametrize('edit', ['drop_frame007', 'add_frame008'])
def test_frame_count_other_than_7(tmp_path, edit):
  raw, root = _street(tmp_path)
  if edit == 'drop_frame007':
    change = lambda d: d[0].pop('frame007_path')
  else:
    change = lambda d: d[0].update(frame008_path=d[0]['frame007_path'])
  _edit_metadata(root, change)
  with pytest.raises(ValueError, match=r"id='00000/0000'.*expected exactly frame001_path"):
    _build(tmp_path, raw)


def test_size_mismatch_between_blur_and_sharp(tmp_path):
  raw, root = _street(tmp_path)
  Image.new('RGB', (40, 40)).save(os.path.join(root, '00002', 'sharp', '0001_6.png'))
  with pytest.raises(ValueError,
                     match=r'0001_6\.png: size 40x40 .* does not match .*blur/0001\.png \(40x48\)'):
    _build(tmp_path, raw)


@pytest.mark.parametrize('order, message',
                         [('sideways', 'unknown order'), ('random', 'training-time')])
def test_bad_order(tmp_path, order, message):
  raw, root = _street(tmp_path)
  _edit_metadata(root, lambda d: d[2].update(order=order))
  with pytest.raises(ValueError, match=rf"id='00001/0000'.*{message}"):
    _build(tmp_path, raw)


def test_bad_partition_and_duplicate_id(tmp_path):
  raw, root = _street(tmp_path)
  _edit_metadata(root, lambda d: d[0].update(partition='training'))
  with pytest.raises(ValueError, match=r"partition='training'"):
    _build(tmp_path, raw)
  _edit_metadata(root, lambda d: d[0].update(partition='train', id=d[1]['id']))
  with pytest.raises(ValueError, match=r"duplicate id '00000/0001'"):
    _build(tmp_path, raw)


def test_missing_metadata_or_domain_folder(tmp_path):
  raw, root = _street(tmp_path)
  os.remove(os.path.join(root, 'metadata.json'))
  with pytest.raises(FileNotFoundError, match=r'Street/metadata\.json'):
    _build(tmp_path, raw)
  os.rename(root, os.path.join(raw, 'Streets'))
  with pytest.raises(FileNotFoundError, match=r'RB2V-Street folder not found'):
    _build(tmp_path, raw)


def test_failed_build_leaves_no_dataset(tmp_path):
  raw, root = _street(tmp_path)
  # The train split is written first; break the last test example.
  with open(os.path.join(root, '00002', 'sharp', '0001_7.png'), 'wb') as f:
    f.write(b'not a png')
  data_dir = tmp_path / 'data'
  with pytest.raises(ValueError, match=r'0001_7\.png'):
    testing.build('rb2v', raw, data_dir, 'street')
  config_dir = data_dir / 'rb2v' / 'street'
  assert not config_dir.exists() or os.listdir(config_dir) == []  # no version, no incomplete.*
  assert not rb2v.Builder(data_dir=os.fspath(data_dir), config='street').is_prepared()
  with pytest.raises(OSError):  # DatasetInfoFileError: no dataset_info.json
    tfds.builder_from_directory(os.fspath(config_dir / str(rb2v.Builder.VERSION)))
  with pytest.raises(FileNotFoundError,
                     match=r'python -m hypercut_datasets\.build rb2v --config=street'):
    hypercut_datasets.data_source('rb2v', 'train', data_dir, 'street')
  # Fixing the file and rebuilding into the same data_dir works.
  good_path = os.path.join(testing.dummy_dir('rb2v'), 'Street', '00002', 'sharp', '0001_7.png')
  with open(good_path, 'rb') as f:
    good = f.read()
  with open(os.path.join(root, '00002', 'sharp', '0001_7.png'), 'wb') as f:
    f.write(good)
  testing.build('rb2v', raw, data_dir, 'street')
  assert len(hypercut_datasets.data_source('rb2v', 'test', data_dir, 'street')) == 2

"""hypercut_datasets.data_source / prepared_dir and the build entry point."""
import os
import pickle
import shutil

import numpy as np
import pytest

import hypercut_datasets
from hypercut_datasets import build as build_lib
from hypercut_datasets import testing


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('source') / 'data'
  build_lib.main(['reds', '--blur_space=srgb', f'--manual_dir={testing.dummy_dir("reds")}',
                  f'--data_dir={out}'])
  return out


def test_build_main_uses_the_predefined_config(data_dir):
  assert os.path.isfile(data_dir / 'reds' / 'srgb' / '1.0.0' / 'dataset_info.json')


def test_records_and_batched_reads(data_dir):
  src = hypercut_datasets.data_source('reds', 'train', data_dir, 'srgb')
  assert len(src) == 3
  one = [src[i] for i in range(3)]
  many = src.__getitems__([0, 1, 2])
  for a, b in zip(one, many):
    assert a['id'] == b['id'] and isinstance(a['id'], str)
    assert a['sharp'].shape == (7, 40, 48, 3) and a['sharp'].dtype == np.uint8
    np.testing.assert_array_equal(a['sharp'], b['sharp'])


def test_source_pickles_for_worker_processes(data_dir):
  src = hypercut_datasets.data_source('reds', 'test', data_dir, 'srgb')
  clone = pickle.loads(pickle.dumps(src))
  assert len(clone) == 1 and clone[0]['id'] == src[0]['id'] == 'val_orig/000/00000000'


def test_grain_reads_it(data_dir):
  import grain  # pylint: disable=g-import-not-at-top
  src = hypercut_datasets.data_source('reds', 'train', data_dir, 'srgb')
  ids = sorted(r['id'] for r in grain.MapDataset.source(src).seed(0).shuffle())
  assert ids == sorted(src[i]['id'] for i in range(len(src)))


def test_newest_complete_version_wins(data_dir, tmp_path):
  local = tmp_path / 'data'
  shutil.copytree(data_dir, local)
  base = local / 'reds' / 'srgb'
  shutil.copytree(base / '1.0.0', base / '1.0.10')
  shutil.copytree(base / '1.0.0', base / '1.0.9')
  os.makedirs(base / 'incomplete.ABC123_2.0.0')
  os.makedirs(base / '3.0.0')  # no dataset_info.json: not a finished build.
  assert hypercut_datasets.prepared_dir('reds', local, 'srgb') == os.fspath(base / '1.0.10')


def test_missing_dataset_names_path_and_command(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    hypercut_datasets.data_source('rb2v', 'train', tmp_path, 'hand')
  msg = str(e.value)
  assert os.fspath(tmp_path / 'rb2v' / 'hand') in msg
  assert 'python -m hypercut_datasets.build rb2v --config=hand' in msg
  assert f'--data_dir={tmp_path}' in msg


def test_bad_arguments(data_dir):
  with pytest.raises(ValueError, match=r"name='gopro'; known: \['baist', 'rb2v', 'reds'\]"):
    hypercut_datasets.data_source('gopro', 'train', data_dir)
  with pytest.raises(ValueError, match=r"'baist' has no configs"):
    hypercut_datasets.data_source('baist', 'train', data_dir, 'street')
  with pytest.raises(ValueError, match=r"rb2v config='streets'; known"):
    hypercut_datasets.data_source('rb2v', 'train', data_dir, 'streets')
  with pytest.raises(ValueError,
                     match=r"split='validation' not in .*available: \['test', 'train'\]"):
    hypercut_datasets.data_source('reds', 'validation', data_dir, 'srgb')


def test_build_main_rejects_reds_options_elsewhere(tmp_path):
  with pytest.raises(SystemExit):
    build_lib.main(['rb2v', '--stride=3', '--manual_dir=x', f'--data_dir={tmp_path}'])

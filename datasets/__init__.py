"""TFDS builders for the HyperCUT datasets, installed as `hypercut_datasets`.

Builders (each in `<name>/<name>_dataset_builder.py`): `rb2v` (configs street,
face, hand), `reds` (configs linear, srgb) and `baist`. Prepare one, without
TensorFlow, with

  python -m hypercut_datasets.build <name> [--config=C] --manual_dir=RAW --data_dir=DATA

(or `tfds build <repo>/datasets/<name> ...`, which needs TensorFlow installed)
and read it at training time, without TensorFlow, with
`data_source(name, split, data_dir, config)`.
"""
import os
import re

import numpy as np

# name -> (default config, known configs); None = the builder has no configs.
# REDS also accepts custom `RedsConfig` names.
DATASETS = {
    'rb2v': ('street', ('street', 'face', 'hand')),
    'reds': ('linear', ('linear', 'srgb')),
    'baist': (None, ()),
}

_VERSION = re.compile(r'^(\d+)\.(\d+)\.(\d+)$')


def build_command(name, data_dir, config=None):
  """The shell command that prepares `name` (and `config`) into `data_dir`."""
  cfg = f' --config={config}' if config else ''
  return (f'python -m hypercut_datasets.build {name}{cfg} --manual_dir=<raw data folder> '
          f'--data_dir={os.fspath(data_dir)}')


def prepared_dir(name, data_dir, config=None):
  """Path of the newest complete prepared version: `<data_dir>/<name>[/<config>]/<x.y.z>`.

  Raises:
    ValueError: unknown `name`, or a config given for a builder without configs.
    FileNotFoundError: nothing complete is prepared there; the message names the
      path and the `tfds build` command that makes it.
  """
  if name not in DATASETS:
    raise ValueError(f'dataset name={name!r}; known: {sorted(DATASETS)}.')
  default, _ = DATASETS[name]
  if default is None and config is not None:
    raise ValueError(f'dataset {name!r} has no configs; got config={config!r}.')
  config = default if config is None else config
  known = DATASETS[name][1]
  if config is not None and config not in known and name != 'reds':
    raise ValueError(f'{name} config={config!r}; known: {list(known)}.')
  parent = os.path.join(os.fspath(data_dir), name, *([config] if config else []))
  versions = []
  if os.path.isdir(parent):
    for v in os.listdir(parent):
      m = _VERSION.match(v)
      # TFDS writes into `incomplete.*` and renames at the very end, so a version
      # folder with its dataset_info.json is a finished build.
      if m and os.path.isfile(os.path.join(parent, v, 'dataset_info.json')):
        versions.append((tuple(int(g) for g in m.groups()), v))
  if not versions:
    raise FileNotFoundError(
        f'{parent}: no prepared {name}{"/" + config if config else ""} dataset '
        f'(expected {parent}/<version>/dataset_info.json). Make it with:\n  '
        + build_command(name, data_dir, config))
  return os.path.join(parent, max(versions)[1])


class DataSource:
  """Random-access source of example dicts (grain `RandomAccessDataSource` protocol).

  `source[i]` is `{'blur': uint8[H,W,3], 'sharp': uint8[7,H,W,3], 'id': str}`
  plus, for B-Aist++, `'guidance': int32[H,W]` and `'bbox': float32[4]`
  (ymin, xmin, ymax, xmax in [0,1]). Reading needs no TensorFlow. Picklable, so
  grain worker processes can hold it.
  """

  def __init__(self, path, split):
    self._path = path
    self._split = split
    self._source = None

  def _src(self):
    if self._source is None:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      builder = tfds.builder_from_directory(self._path)
      if self._split not in builder.info.splits:
        raise ValueError(f'split={self._split!r} not in {self._path}; available: '
                         f'{sorted(builder.info.splits)}.')
      self._source = builder.as_data_source(split=self._split)
    return self._source

  def __len__(self):
    return len(self._src())

  def __getitem__(self, index):
    return _convert(self._src()[index])

  def __getitems__(self, indices):
    return [_convert(r) for r in self._src().__getitems__(indices)]

  def __getstate__(self):
    return {'path': self._path, 'split': self._split}

  def __setstate__(self, state):
    self.__init__(state['path'], state['split'])

  def __repr__(self):
    return f'DataSource(path={self._path!r}, split={self._split!r})'


def _convert(record):
  out = dict(record)
  out['sharp'] = np.stack(record['sharp'])
  if isinstance(out['id'], bytes):
    out['id'] = out['id'].decode('utf-8')
  return out


def data_source(name, split, data_dir, config=None):
  """Opens a prepared dataset for random access, without TensorFlow.

  Args:
    name: 'rb2v', 'reds' or 'baist'.
    split: 'train', 'test' (or 'validation' where the data has one).
    data_dir: the `--data_dir` the dataset was built into.
    config: builder config ('street'|'face'|'hand' for rb2v, 'linear'|'srgb' or
      a custom RedsConfig name for reds, None for baist); None = the default.

  Returns:
    a `DataSource` (len + getitem) of dicts as described there.
  """
  path = prepared_dir(name, data_dir, config)
  source = DataSource(path, split)
  source._src()  # pylint: disable=protected-access  # fail now on a bad split.
  return source

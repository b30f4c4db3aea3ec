"""Data sources and input pipelines.

`get_source(data_config, split)` returns a grain `RandomAccessDataSource` of
examples `{'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}` (+
`'guidance'` where a dataset has it, or computed from the sharp frames with
`data_config.guidance=True`); `pipeline` turns it into train and eval
batches. Importing this package reads no file and touches no device.
"""
import threading

import numpy as np

from hypercut_jax.data import guidance as guidance_lib
from hypercut_jax.data import synthetic

NAMES = ('synthetic', 'rb2v', 'reds', 'baist')

# Optional SyntheticBlur2Vid arguments a data config may set (else the class
# defaults apply).
_SYNTHETIC_OPTIONAL = ('blur_space', 'sub_frames', 'max_sprites',
                       'motion_scale', 'scenes', 'view_scale')


def has_guidance(data_config) -> bool:
  """Whether examples of this data carry motion guidance: B-Aist++ ships
  it; any other dataset computes it from the sharp frames with
  `guidance=True`. data_config: the data ConfigDict or a plain dict."""
  return (data_config.get('name') == 'baist'
          or data_config.get('guidance') is True)


def _field(config, name: str):
  if name not in config:
    raise ValueError(f'data config {config.get("name")!r} needs field '
                     f'config.data.{name}')
  return config[name]


# Keyword arguments of `guidance.compute_guidance` a data config may set in
# `data.guidance_kwargs`.
GUIDANCE_KWARGS = ('threshold', 'radius', 'window', 'levels', 'downsample',
                   'penalty')


class GuidanceSource:
  """A source whose examples gain `'guidance': i32[H,W]` from their frames.

  Wraps a random-access source of `{'blur', 'sharp', ...}` examples; record
  `i` is `source[i]` plus `guidance.compute_guidance(sharp, **kwargs)` (a
  pure function of the frames, so the same in every process and call).
  Examples that already carry a 'guidance' keep it. The last `cache_size`
  computed maps are kept (block matching costs ~40-300 ms per 64 px record
  on a shared CPU); the cache is per process and dropped when pickled.
  """

  def __init__(self, source, cache_size: int = 4096, **kwargs):
    unknown = sorted(set(kwargs) - set(GUIDANCE_KWARGS))
    if unknown:
      raise ValueError(f'config.data.guidance_kwargs has unknown fields '
                       f'{unknown}; known: {list(GUIDANCE_KWARGS)}')
    if not isinstance(cache_size, int) or cache_size < 0:
      raise ValueError(f'cache_size={cache_size!r}; must be an int >= 0')
    self.source = source
    self.kwargs = dict(kwargs)
    self.cache_size = cache_size
    self._cache = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index) -> dict:
    example = dict(self.source[index])
    if 'guidance' in example:
      return example
    key = int(index)
    with self._lock:
      labels = self._cache.get(key)
    if labels is None:
      labels = guidance_lib.compute_guidance(example['sharp'], **self.kwargs)
      labels = labels.astype(np.int32)
      with self._lock:
        if len(self._cache) >= self.cache_size > 0:
          self._cache.pop(next(iter(self._cache)))
        if self.cache_size:
          self._cache[key] = labels
    example['guidance'] = labels.copy()
    return example

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_cache'], state['_lock'] = {}, None
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __repr__(self) -> str:
    return f'GuidanceSource({self.source!r}, {self.kwargs})'


def _with_guidance(data_config, source):
  """`source` wrapped by GuidanceSource when `data_config.guidance` is True."""
  flag = data_config.get('guidance', False) if hasattr(data_config, 'get') else False
  if flag is None or flag is False:
    return source
  if flag is not True:
    raise ValueError(f'config.data.guidance={flag!r}; expected True or False')
  kwargs = data_config.get('guidance_kwargs') or {}
  if hasattr(kwargs, 'to_dict'):
    kwargs = kwargs.to_dict()
  return GuidanceSource(source, **dict(kwargs))


def get_source(data_config, split: str):
  """The dataset named by `data_config.name`, split `split`.

  data_config (an `ml_collections.ConfigDict` or a dict):
    synthetic: seed, num_train, num_test, size ((H, W) or int), optional
      blur_space, sub_frames, max_sprites, motion_scale, scenes, view_scale (see
      `synthetic.SyntheticBlur2Vid`; bad values raise ValueError there);
      split in {'train', 'test'}.
    rb2v / reds / baist: data_dir (where the TFDS datasets were prepared),
      optional subset (the builder config, e.g. 'street'); read with
      `hypercut_datasets.data_source`, no TensorFlow needed.
    any dataset: optional guidance (bool, default False): add a motion
      guidance map computed from the sharp frames (`GuidanceSource`; a
      dataset that ships one, B-Aist++, keeps its own) and guidance_kwargs
      (dict of `guidance.compute_guidance` arguments, e.g. {'downsample': 2}).
  Raises ValueError for an unknown name, split or a missing field.
  """
  name = data_config.get('name') if hasattr(data_config, 'get') else None
  if name not in NAMES:
    raise ValueError(f'config.data.name={name!r}; known: {list(NAMES)}')
  if name == 'synthetic':
    if split not in synthetic.SPLITS:
      raise ValueError(f'split={split!r}; known for synthetic: '
                       f'{sorted(synthetic.SPLITS)}')
    size = _field(data_config, 'size')
    size = (size, size) if isinstance(size, int) else tuple(size)
    num = _field(data_config, 'num_train' if split == 'train' else 'num_test')
    kwargs = {k: data_config[k] for k in _SYNTHETIC_OPTIONAL
              if k in data_config and data_config[k] is not None}
    seed = _field(data_config, 'seed')
    try:
      source = synthetic.SyntheticBlur2Vid(
          split, seed=seed, num_records=num, size=size, **kwargs)
    except ValueError as e:   # name the config section in the message
      raise ValueError(f'config.data: {e}') from None
    return _with_guidance(data_config, source)
  import hypercut_datasets  # pylint: disable=g-import-not-at-top
  return _with_guidance(data_config, hypercut_datasets.data_source(
      name, split, data_dir=_field(data_config, 'data_dir'),
      config=data_config.get('subset')))

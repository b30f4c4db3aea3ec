"""Data sources and input pipelines.

`get_source(data_config, split)` returns a grain `RandomAccessDataSource` of
examples `{'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}` (+
`'guidance'` where a dataset has it); `pipeline` turns it into train and eval
batches. Importing this package reads no file and touches no device.
"""
from hypercut_jax.data import synthetic

NAMES = ('synthetic', 'rb2v', 'reds', 'baist')

# Optional SyntheticBlur2Vid arguments a data config may set (else the class
# defaults apply).
_SYNTHETIC_OPTIONAL = ('blur_space', 'sub_frames', 'max_sprites', 'motion_scale')


def _field(config, name: str):
  if name not in config:
    raise ValueError(f'data config {config.get("name")!r} needs field '
                     f'config.data.{name}')
  return config[name]


def get_source(data_config, split: str):
  """The dataset named by `data_config.name`, split `split`.

  data_config (an `ml_collections.ConfigDict` or a dict):
    synthetic: seed, num_train, num_test, size ((H, W) or int), optional
      blur_space, sub_frames, max_sprites, motion_scale (see
      `synthetic.SyntheticBlur2Vid`); split in {'train', 'test'}.
    rb2v / reds / baist: data_dir (where the TFDS datasets were prepared),
      optional subset (the builder config, e.g. 'street'); read with
      `hypercut_datasets.data_source`, no TensorFlow needed.
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
    return synthetic.SyntheticBlur2Vid(
        split, seed=_field(data_config, 'seed'), num_records=num, size=size,
        **kwargs)
  import hypercut_datasets  # pylint: disable=g-import-not-at-top
  return hypercut_datasets.data_source(
      name, split, data_dir=_field(data_config, 'data_dir'),
      config=data_config.get('subset'))

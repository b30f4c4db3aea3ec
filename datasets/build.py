r"""Prepares a dataset into array_record files, without TensorFlow.

  python -m hypercut_datasets.build rb2v --config=face --manual_dir=RAW --data_dir=DATA
  python -m hypercut_datasets.build reds --manual_dir=RAW --data_dir=DATA \
      [--stride=3] [--blur_space=srgb]
  python -m hypercut_datasets.build baist --manual_dir=RAW --data_dir=DATA

(`tfds build datasets/<name> ...` does the same but the `tfds` command itself
imports TensorFlow in tensorflow-datasets 4.9.10.) For REDS, `--stride` /
`--blur_space` other than a predefined config make a config named
`<blur_space>_stride<stride>`, readable with `data_source('reds', split,
data_dir, config='<blur_space>_stride<stride>')`.
"""
import argparse
import importlib
import os

import hypercut_datasets


def builder_class(name):
  """The `Builder` class of dataset `name` ('rb2v', 'reds' or 'baist')."""
  if name not in hypercut_datasets.DATASETS:
    raise ValueError(f'dataset name={name!r}; known: {sorted(hypercut_datasets.DATASETS)}.')
  return importlib.import_module(f'hypercut_datasets.{name}.{name}_dataset_builder').Builder


def reds_config(stride=None, blur_space=None):
  """Name of a predefined REDS config, or a `RedsConfig` for other stride/blur_space."""
  # pylint: disable-next=g-import-not-at-top
  from hypercut_datasets.reds import reds_dataset_builder as reds
  stride = reds.N_FRAMES if stride is None else stride
  blur_space = 'linear' if blur_space is None else blur_space
  for cfg in reds.Builder.BUILDER_CONFIGS:
    if (cfg.stride, cfg.blur_space) == (stride, blur_space):
      return cfg.name
  return reds.RedsConfig(name=f'{blur_space}_stride{stride}', stride=stride, blur_space=blur_space,
                         description=f'stride {stride}; blur averaged in {blur_space}.')


def build(name, *, manual_dir, data_dir, config=None):
  """Builds `name` (with `config`: a name or a BuilderConfig) from `manual_dir` into `data_dir`.

  Returns:
    the prepared version folder, `<data_dir>/<name>[/<config>]/<version>`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cls = builder_class(name)
  kwargs = {} if config is None else {'config': config}
  builder = cls(data_dir=os.fspath(data_dir), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return os.fspath(builder.data_dir)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('name', choices=sorted(hypercut_datasets.DATASETS))
  parser.add_argument('--config', default=None, help='builder config (rb2v: street|face|hand).')
  parser.add_argument('--manual_dir', required=True, help='folder holding the raw data.')
  parser.add_argument('--data_dir', required=True, help='where the prepared dataset goes.')
  parser.add_argument('--stride', type=int, default=None, help='REDS only: window stride.')
  parser.add_argument('--blur_space', default=None, help='REDS only: linear | srgb.')
  args = parser.parse_args(argv)
  config = args.config
  if args.name == 'reds' and config is None:
    config = reds_config(args.stride, args.blur_space)
  elif args.stride is not None or args.blur_space is not None:
    parser.error('--stride / --blur_space apply to reds without --config only.')
  path = build(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir, config=config)
  print(f'prepared {path}')


if __name__ == '__main__':
  main()

"""The stage's input: data sources and grain iterators from the config.

`sources(cfg)` builds the train and test sources of `config.data` (the test
split cut to `eval.max_examples`) and checks that the crops fit the records;
`train_iterator` and `eval_batches_fn` give each process its share of the
global batch (`data/pipeline.py`).
"""
import jax
import numpy as np

from hypercut_jax import data as data_lib
from hypercut_jax.data import pipeline


def sources(cfg):
  """(train, test) sources of the stage config `cfg`, crops checked."""
  train = data_lib.get_source(cfg.data, 'train')
  test = data_lib.get_source(cfg.data, 'test')
  limit = cfg.eval.get('max_examples')
  if limit is not None:
    test = pipeline.Prefix(test, limit)
  if len(train) < 1 or len(test) < 1:
    raise ValueError(f'config.data={cfg.data.name!r} gives {len(train)} train '
                     f'and {len(test)} test examples; need >= 1 each')
  check_crops(cfg, train, test)
  return train, test


def check_crops(cfg, train, test) -> None:
  """input.crop / input.eval_crop fit the records (read from record 0)."""
  for field, source in (('crop', train), ('eval_crop', test)):
    crop = cfg.input.get(field)
    if crop is None:
      continue
    ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    h, w = np.shape(source[0]['blur'])[:2]
    if ch > h or cw > w:
      raise ValueError(
          f'input.{field}={crop!r} ({cfg.stage} stage) is larger than the '
          f'{cfg.data.name!r} records ({h}x{w}); use a crop of at most '
          f'{min(h, w)}')


def train_iterator(cfg, source):
  """The grain training iterator of this process (its share of the batch)."""
  per_process = cfg.input.batch_size // jax.process_count()
  augment = cfg.input.get('augment')
  kwargs = dict(batch_size=per_process, crop=cfg.input.crop, seed=cfg.seed,
                worker_count=cfg.input.get('worker_count', 0))
  if augment:
    kwargs['augment'] = augment.to_dict() if hasattr(augment, 'to_dict') else dict(augment)
  return pipeline.make_train_iterator(source, **kwargs)


def eval_batches_fn(cfg, source):
  """batches_fn() -> this process's eval batches (for the evaluators)."""
  per_process = cfg.input.eval_batch_size // jax.process_count()
  crop = cfg.input.get('eval_crop')
  return lambda: pipeline.make_eval_batches(source, batch_size=per_process,
                                            crop=crop)

"""grain input pipelines: a checkpointable train iterator and eval batches.

Training (`make_train_iterator`):

  source -> this process's shard of the records -> shuffle(seed) -> repeat
  -> random_map(augment) -> batch(batch_size, drop_remainder) -> iterator
  (-> multiprocess prefetch when worker_count > 0)

Each process reads a disjoint, contiguous slice of the records; together the
slices cover the data. `batch_size` is per process. Batches are numpy dicts
`{'blur': u8[B,h,w,3], 'sharp': u8[B,7,h,w,3]}` (+ `'guidance'`); `'id'` and
any other key (e.g. B-Aist++'s `'bbox'`) are dropped, and pixels stay uint8
(the trainer converts inside its jitted step).
The iterator is a `grain.DatasetIterator`: `get_state()` returns a small
JSON-able dict and `set_state(state)` on a fresh iterator built with the same
arguments resumes exactly at the next batch (with or without worker
processes).

Checkpointing with orbax (grain 0.2.18): the handler is
`grain.checkpoint.CheckpointHandler` (one JSON file per process,
`process_<i>-of-<n>.json`); its args are `grain.checkpoint.CheckpointSave(it)`
and `grain.checkpoint.CheckpointRestore(it)`. Put them next to the train state
in one `ocp.CheckpointManager`:

  mngr = ocp.CheckpointManager(dir, item_handlers={
      'state': ocp.StandardCheckpointHandler(),
      'data': grain.checkpoint.CheckpointHandler()})
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(it)))
  it = mngr.restore(step, args=ocp.args.Composite(
      state=..., data=grain.checkpoint.CheckpointRestore(fresh_it)))['data']

Evaluation (`make_eval_batches`): every example of this process's shard
exactly once, in record order, centre-cropped (or full size), in batches of
`batch_size`; the last batch is padded with copies of a real example and
`'mask': bool[B]` is False there. `'id'` is kept ('' on padding); other
extra keys are kept only when `crop=None` (a crop would make a bbox stale).
Every process yields the same number of batches (the largest shard decides),
so multi-host evaluation steps stay in lock-step. Sum masked per-example
values, divide once at the end.
"""
from collections.abc import Mapping
import dataclasses
import math

import grain
import numpy as np

from hypercut_jax.data import augment as augment_lib


def _process(process_index, process_count) -> tuple[int, int]:
  """(index, count), defaulting to jax's; validated."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index}, process_count='
                     f'{process_count}; need 0 <= index < count')
  return int(process_index), int(process_count)


def shard_bounds(num_records: int, process_index: int,
                 process_count: int) -> tuple[int, int]:
  """[start, stop) of process `process_index`'s contiguous shard.

  Shards differ in size by at most one record, are disjoint and cover
  `range(num_records)`.
  """
  start = num_records * process_index // process_count
  stop = num_records * (process_index + 1) // process_count
  return start, stop


def _as_augment_config(augment) -> augment_lib.AugmentConfig:
  if augment is None:   # crop only
    return augment_lib.AugmentConfig(hflip=False, brightness=0.0,
                                     contrast=0.0, saturation=0.0)
  if isinstance(augment, augment_lib.AugmentConfig):
    return augment
  if isinstance(augment, Mapping) or hasattr(augment, 'to_dict'):
    fields = dict(augment.to_dict() if hasattr(augment, 'to_dict') else augment)
    known = {f.name for f in dataclasses.fields(augment_lib.AugmentConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(f'augment fields {unknown} unknown; known: {sorted(known)}')
    return augment_lib.AugmentConfig(**fields)
  raise ValueError(f'augment={augment!r}; expected an AugmentConfig, a mapping '
                   'of its fields, or None (crop only)')


# Keys the augmentation transforms consistently; training batches keep only
# these (an 'id' cannot be batched into the step, and a B-Aist++ 'bbox' would
# be stale after a crop or flip).
IMAGE_KEYS = ('blur', 'sharp', 'guidance')


class _TrainTransform(grain.transforms.RandomMap):
  """Augments one example, keeping only `IMAGE_KEYS` (picklable)."""

  def __init__(self, crop, config: augment_lib.AugmentConfig):
    self.crop = crop
    self.config = config

  def random_map(self, element, rng: np.random.Generator):
    element = {k: v for k, v in element.items() if k in IMAGE_KEYS}
    return augment_lib.augment(element, rng, crop=self.crop, config=self.config)


def _ensure_flags_parsed() -> None:
  """grain's worker processes read absl flags (grain 0.2.18 reads
  --grain_enable_multiprocess_worker_profiling unguarded); outside an
  `absl.app.run` program nobody parsed them, so take their defaults."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _fold_seed(seed: int, process_index: int) -> int:
  """A 32-bit pipeline seed per (seed, process): hosts augment differently."""
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed={seed!r}; must be a non-negative int')
  return int(np.random.SeedSequence([int(seed), process_index]).generate_state(1)[0])


def make_train_iterator(source, *, batch_size: int, crop, seed: int,
                        augment=augment_lib.AugmentConfig(),
                        process_index: int | None = None,
                        process_count: int | None = None,
                        worker_count: int = 0, prefetch: int = 2,
                        read_threads: int = 2) -> grain.DatasetIterator:
  """Infinite, shuffled, augmented batches of this process's shard.

  Args:
    source: a grain RandomAccessDataSource of example dicts.
    batch_size: examples per batch in this process (the global batch is
      batch_size * process_count).
    crop: int or (h, w) training crop; None keeps the full size.
    seed: non-negative int; fixes the shuffle and augmentation (folded with
      the process index).
    augment: an `augment.AugmentConfig`, a mapping of its fields (e.g. a
      ConfigDict), or None for crop only.
    process_index, process_count: this process's shard (default: jax's).
    worker_count: grain worker processes (0 = in this process).
    prefetch: batches buffered (per worker when worker_count > 0).
    read_threads: threads producing batches in each process.

  Returns:
    a `grain.DatasetIterator` of {'blur': u8[B,h,w,3], 'sharp':
    u8[B,7,h,w,3]} (+ 'guidance'), with exact `get_state`/`set_state`.
  """
  process_index, process_count = _process(process_index, process_count)
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}; must be >= 1')
  if worker_count < 0 or prefetch < 0 or read_threads < 0:
    raise ValueError(f'worker_count={worker_count}, prefetch={prefetch}, '
                     f'read_threads={read_threads}; must be >= 0')
  start, stop = shard_bounds(len(source), process_index, process_count)
  if stop - start < batch_size:
    raise ValueError(
        f'process {process_index}/{process_count} has {stop - start} of '
        f'{len(source)} records, fewer than batch_size={batch_size}')
  config = _as_augment_config(augment)
  ds = (grain.MapDataset.source(source)
        .slice(slice(start, stop))
        .seed(_fold_seed(seed, process_index))
        .shuffle()
        .repeat()
        .random_map(_TrainTransform(crop, config))
        .batch(batch_size, drop_remainder=True))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=read_threads, prefetch_buffer_size=max(prefetch, read_threads)))
  if worker_count > 0:
    _ensure_flags_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=max(prefetch, 1)))
  return iter(it_ds)


class Prefix:
  """The first `n` records of a random-access source (evaluation subsets)."""

  def __init__(self, source, n: int):
    self.source, self.n = source, min(int(n), len(source))

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if not 0 <= int(i) < self.n:
      raise IndexError(i)
    return self.source[int(i)]


class _EvalRead(grain.transforms.Map):
  """Padded position -> centre-cropped example with 'mask' (picklable)."""

  def __init__(self, source, start: int, stop: int, crop):
    self.source = source
    self.start, self.stop = start, stop
    self.crop = crop

  def map(self, position):
    position = int(position)
    real = position < self.stop - self.start
    if real:
      index = self.start + position
    else:   # padding: a real example (finite values everywhere), masked out
      index = self.start if self.stop > self.start else 0
    example = dict(self.source[index])
    if self.crop is not None:   # other keys (e.g. a bbox) would be stale
      example = {k: v for k, v in example.items() if k in IMAGE_KEYS + ('id',)}
    example = augment_lib.center_crop(example, self.crop)
    example = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
               for k, v in example.items()}
    if 'id' in example and not real:
      example['id'] = ''
    example['mask'] = np.bool_(real)
    return example


@dataclasses.dataclass(frozen=True)
class EvalBatches:
  """A finite, re-iterable sequence of eval batches; `len` = batches."""
  dataset: grain.IterDataset
  num_batches: int
  num_examples: int   # real (unmasked) examples of this process

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self):
    return iter(self.dataset)


def make_eval_batches(source, *, batch_size: int, crop=None,
                      process_index: int | None = None,
                      process_count: int | None = None,
                      read_threads: int = 2) -> EvalBatches:
  """Every example of this process's shard once, in order, padded + masked.

  Args:
    source: a grain RandomAccessDataSource of example dicts (all of one size
      after cropping).
    batch_size: examples per batch in this process.
    crop: int or (h, w) centre crop; None keeps the full size.
    process_index, process_count: this process's shard (default: jax's).

  Returns:
    `EvalBatches`: iterating yields {'blur': u8[B,h,w,3], 'sharp':
    u8[B,7,h,w,3], 'id': str[B] ('' on padding), 'mask': bool[B]} (+
    'guidance'), the same number of batches in every process.
  """
  process_index, process_count = _process(process_index, process_count)
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}; must be >= 1')
  n = len(source)
  start, stop = shard_bounds(n, process_index, process_count)
  largest = math.ceil(n / process_count)
  num_batches = math.ceil(largest / batch_size)
  ds = (grain.MapDataset.range(num_batches * batch_size)
        .map(_EvalRead(source, start, stop, crop))
        .batch(batch_size))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=read_threads, prefetch_buffer_size=max(read_threads, 1)))
  return EvalBatches(it_ds, num_batches, stop - start)

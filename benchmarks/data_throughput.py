r"""Input pipeline throughput: examples/s per worker, synthetic and TFDS.

  python -m benchmarks.data_throughput [--sizes=128,256] [--seconds=5] \
      [--workers=2] [--batch_size=8]

Columns: examples/s per worker (wall clock), examples per CPU second of the
measuring process (what one free core would give; not for worker rows), and
the total rate with worker processes. Rows, for each synthetic size:
  source             `SyntheticBlur2Vid[i]` in a loop (rendering only), one core;
  pipeline, 1 thread `make_train_iterator` (shuffle, augment: random crop to
                     7/8 of the side, flip, colour jitter, batch) in this
                     process with one read thread: examples/s per worker;
  pipeline, W procs  the same with `worker_count=W` grain worker processes
                     (total and per worker; bounded by the cores you have).
If `hypercut_datasets` is importable, the RB2V dummy data (40x48 px) is built
into a temporary folder and read back the same way (array_record + PNG
decoding, no TensorFlow); with only 3 records its pipeline rows measure
grain's `shuffle` more than reading: grain 0.2.18's `index_shuffle` costs
about 14 ms per element on a 3-element dataset, 0.8 ms on 64 and 30 us on
4096. Timings include no warm-up (textures and the first
batches are read before the clock starts). Numbers depend on the CPU and on
its load; the load average is printed with them.
"""
import os
import tempfile
import time

from absl import app
from absl import flags

from hypercut_jax.data import pipeline
from hypercut_jax.data import synthetic

_SIZES = flags.DEFINE_list('sizes', ['128', '256'], 'synthetic image sides.')
_SECONDS = flags.DEFINE_float('seconds', 5.0, 'time per measurement.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'grain worker processes (0: skip).')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'examples per batch.')
_TFDS = flags.DEFINE_bool('tfds', True, 'also measure the RB2V dummy data.')


def _rate(step, seconds: float, per_call: int) -> tuple[float, float]:
  """(examples per wall second, per CPU second of this process) of `step()`.

  `step()` yields `per_call` examples. CPU seconds count every thread of
  this process (not worker processes); on a loaded machine they estimate
  what one free core would do.
  """
  step()   # warm-up
  n, start, cpu = 0, time.perf_counter(), time.process_time()
  while True:
    step()
    n += 1
    elapsed = time.perf_counter() - start
    if elapsed >= seconds and n >= 2:
      return (n * per_call / elapsed,
              n * per_call / max(time.process_time() - cpu, 1e-9))


def _source_rate(src, seconds: float) -> float:
  counter = iter(range(10 ** 9))
  return _rate(lambda: src[next(counter) % len(src)], seconds, 1)


def _pipeline_rate(src, crop, seconds: float, workers: int, batch: int) -> float:
  it = pipeline.make_train_iterator(
      src, batch_size=batch, crop=crop, seed=0, process_index=0,
      process_count=1, worker_count=workers, read_threads=1,
      prefetch=2)
  try:
    if workers:
      for _ in range(2 * workers):   # let the workers start and fill up
        next(it)
    return _rate(lambda: next(it), seconds, batch)
  finally:
    if workers:
      it.close()


def _rows_for(name, src, crop, seconds, workers, batch):
  """[(data, path, per worker /s, per CPU s, total /s)]."""
  rows = [(name, 'source', *_source_rate(src, seconds), None)]
  wall, cpu = _pipeline_rate(src, crop, seconds, 0, batch)
  rows.append((name, 'pipeline, 1 thread', wall, cpu, None))
  if workers:
    total, _ = _pipeline_rate(src, crop, seconds, workers, batch)
    rows.append((name, f'pipeline, {workers} procs', total / workers, None,
                 total))
  return rows


def _tfds_source(tmp):
  try:
    import hypercut_datasets  # pylint: disable=g-import-not-at-top
    from hypercut_datasets import build as build_lib  # pylint: disable=g-import-not-at-top
    from hypercut_datasets import testing  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'TFDS rows skipped: hypercut_datasets not importable ({e})')
    return None
  build_lib.build('rb2v', manual_dir=testing.dummy_dir('rb2v'), data_dir=tmp,
                  config='street')
  return hypercut_datasets.data_source('rb2v', 'train', tmp, 'street')


def main(argv):
  del argv
  seconds, workers, batch = _SECONDS.value, _WORKERS.value, _BATCH.value
  rows = []
  for side in (int(s) for s in _SIZES.value):
    src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=4096,
                                      size=(side, side))
    for i in range(len(synthetic.TEXTURES) * 3):   # load every texture level
      src[i]
    rows += _rows_for(f'synthetic {side}x{side}', src, side * 7 // 8,
                      seconds, workers, batch)
  if _TFDS.value:
    with tempfile.TemporaryDirectory() as tmp:
      src = _tfds_source(tmp)
      if src is not None:
        h, w = src[0]['blur'].shape[:2]
        rows += _rows_for(f'RB2V dummy {h}x{w} ({len(src)} records)', src,
                          (h * 7 // 8, w * 7 // 8), seconds, workers,
                          min(batch, len(src)))
  load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
  print(f'\n{os.cpu_count()} CPUs, load average {load}; batch {batch}, '
        f'{seconds:g} s per row\n')
  print('| data | path | examples/s per worker | examples per CPU-s | '
        'examples/s total |')
  print('|---|---|---:|---:|---:|')
  fmt = lambda x: '' if x is None else f'{x:.1f}'
  for name, path, per_worker, per_cpu, total in rows:
    print(f'| {name} | {path} | {fmt(per_worker)} | {fmt(per_cpu)} | '
          f'{fmt(total)} |')


if __name__ == '__main__':
  app.run(main)

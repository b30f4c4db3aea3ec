r"""Wall time and peak memory of `predict` on one large photo (tiled).

  python -m benchmarks.predict_memory                  # 4000x3000, narrow
  python -m benchmarks.predict_memory --height=1500 --width=2000
  python -m benchmarks.predict_memory --model=smoke --compare

Writes a synthetic photo (smooth gradients, discs and fine noise; no
download) and a jin2018 generator checkpoint with random weights (the
trainer's `make_init` shapes and `train.checkpoint.save`) into a temporary
folder, then runs `python -m hypercut_jax.predict --gif` on it in a child
process with the default tiling flags and reports the child's wall time and
peak resident memory (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`),
and the sizes of the strip and the GIF. `--model`: `narrow` (default) is
the generator of `configs/synthetic.py` (the main job's, 164,352 parameters),
`smoke` the tests' smallest jin2018; `--checkpoint=DIR` uses a trained
generator instead (e.g. `<workdir>/generator` of the synthetic main job).

`--compare` also runs the same model on a --compare_size x --compare_size
crop of the photo untiled (`--tile=0`) and tiled (`--tile_above=0`) and
prints how far the tiled frames are from the untiled ones (8-bit frames,
in [0,1] units): jin2018's InstanceNorm takes statistics over whatever it
is given, so tiles cannot match the whole image exactly.

Not part of the test suite (minutes of CPU time).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from hypercut_jax import predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_checkpoint(workdir: str, model_size: str) -> str:
  """A jin2018 generator checkpoint with random weights; returns workdir."""
  # pylint: disable=g-import-not-at-top
  import jax
  import optax
  from hypercut_jax.configs import common
  from hypercut_jax.configs import reproduce as reproduce_configs
  from hypercut_jax.configs import synthetic as synthetic_configs
  from hypercut_jax.train import checkpoint as ckpt_lib
  from hypercut_jax.train import generator as generator_lib
  # pylint: enable=g-import-not-at-top
  cfg = synthetic_configs.get_config(
      'stage=generator' if model_size == 'narrow' else 'smoke,stage=generator')
  # The narrow Jin cascade of `reproduce --mode=cpu` (the numbers in the
  # docstring), or the tests' smallest one.
  cfg.model.name = 'jin2018'
  cfg.model.kwargs = dict(reproduce_configs.CPU_JIN if model_size == 'narrow'
                          else common.TINY['jin2018'])
  model = generator_lib.make_model(cfg.model.name, cfg.model.kwargs)
  init = generator_lib.make_init(model, optax.identity(), cfg.input.crop)
  abstract = jax.eval_shape(init, jax.random.key(0))
  rng = np.random.RandomState(0)
  params = jax.tree.map(
      lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
      abstract.params)
  state = abstract.replace(step=np.zeros([], np.int32), params=params,
                           opt_state=optax.identity().init(params))
  mngr = ckpt_lib.make_manager(os.path.join(workdir, 'checkpoints'),
                               async_save=False)
  ckpt_lib.save(mngr, 1, state, config=cfg)
  mngr.wait_until_finished()
  mngr.close()
  return workdir


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
  """uint8[h,w,3]: colour gradients, a few discs and fine noise."""
  rng = np.random.RandomState(seed)
  yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
  xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
  img = np.empty((h, w, 3), np.float32)
  for c in range(3):
    a, b, f = rng.uniform(0.2, 0.8, 3)
    img[..., c] = 0.5 + 0.25 * np.sin(6.0 * f * xx + 4.0 * a * yy + b)
  for _ in range(12):
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r = rng.uniform(0.02, 0.15) * min(h, w)
    rows = slice(max(0, int(cy - r)), min(h, int(cy + r) + 1))
    cols = slice(max(0, int(cx - r)), min(w, int(cx + r) + 1))
    dy = np.arange(rows.start, rows.stop)[:, None] - cy
    dx = np.arange(cols.start, cols.stop)[None, :] - cx
    img[rows, cols][(dy ** 2 + dx ** 2) < r ** 2] = rng.uniform(0, 1, 3)
  img += rng.normal(0.0, 0.02, (h, w, 1)).astype(np.float32)
  return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def run_predict(checkpoint: str, image: str, output: str,
                extra: list[str]) -> tuple[float, float]:
  """(wall seconds, peak RSS GiB of any child so far) of one predict run."""
  cmd = [sys.executable, '-m', 'hypercut_jax.predict',
         f'--checkpoint={checkpoint}', f'--input={image}',
         f'--output={output}', '--gif', '--no_progress', *extra]
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
             + os.environ.get('PYTHONPATH', ''))
  start = time.perf_counter()
  subprocess.run(cmd, check=True, env=env)
  wall = time.perf_counter() - start
  peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  return wall, peak_kib / 2 ** 20


def frame_difference(dir_a: str, dir_b: str, stem: str) -> dict:
  """Mean, 99th percentile and max |a - b| over the 7 frames, in [0,1]."""
  diffs = []
  for i in range(1, 8):
    a = np.asarray(Image.open(os.path.join(dir_a, f'{stem}_f{i}.png')))
    b = np.asarray(Image.open(os.path.join(dir_b, f'{stem}_f{i}.png')))
    diffs.append(np.abs(a.astype(np.int16) - b).astype(np.float32) / 255.0)
  d = np.stack(diffs)
  return {'mean': float(d.mean()), 'p99': float(np.percentile(d, 99)),
          'max': float(d.max())}


def _describe_outputs(output: str, stem: str) -> str:
  with Image.open(os.path.join(output, f'{stem}_strip.png')) as im:
    strip = im.size
  gif_path = os.path.join(output, f'{stem}.gif')
  with Image.open(gif_path) as im:
    gif = im.size
  with Image.open(os.path.join(output, f'{stem}_f1.png')) as im:
    frame = im.size
  return (f'frames {frame[0]}x{frame[1]}, strip {strip[0]}x{strip[1]}, '
          f'GIF {gif[0]}x{gif[1]} ({os.path.getsize(gif_path) / 1e6:.2f} MB)')


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m benchmarks.predict_memory',
                              description=__doc__.split('\n')[0])
  p.add_argument('--height', type=int, default=3000)
  p.add_argument('--width', type=int, default=4000)
  p.add_argument('--model', choices=('narrow', 'smoke'), default='narrow')
  p.add_argument('--checkpoint', default=None,
                 help='a trained generator checkpoint (default: random '
                 'weights of --model)')
  p.add_argument('--compare', action='store_true',
                 help='also measure tiled vs untiled on a crop')
  p.add_argument('--compare_size', type=int, default=1040)
  p.add_argument('--predict_flags', default='',
                 help='extra predict flags, space-separated')
  args = p.parse_args(argv)
  extra = args.predict_flags.split()
  with tempfile.TemporaryDirectory() as tmp:
    checkpoint = args.checkpoint or write_checkpoint(
        os.path.join(tmp, 'ckpt'), args.model)
    model = 'trained' if args.checkpoint else args.model
    photo = synthetic_photo(args.height, args.width)
    image = os.path.join(tmp, 'photo.png')
    Image.fromarray(photo).save(image)
    load = os.getloadavg()[0]
    wall, peak = run_predict(checkpoint, image, os.path.join(tmp, 'out'),
                             extra)
    mp = args.height * args.width / 1e6
    print(f'predict {args.width}x{args.height} ({mp:.1f} MP; tiled above '
          f'{predict.TILE_ABOVE / 1e6:.2f} MP by default), model '
          f'{model}, flags {extra or "default"}: {wall:.1f} s wall, '
          f'peak RSS {peak:.2f} GiB; load average {load:.2f} on '
          f'{os.cpu_count()} CPUs')
    print('  ' + _describe_outputs(os.path.join(tmp, 'out'), 'photo'))
    if args.compare:
      s = args.compare_size
      crop = os.path.join(tmp, 'crop.png')
      Image.fromarray(photo[:s, :s]).save(crop)
      outs = {}
      for name, flags in (('untiled', ['--tile=0']),
                          ('tiled', ['--tile_above=0'])):
        outs[name] = os.path.join(tmp, name)
        wall, _ = run_predict(checkpoint, crop, outs[name], extra + flags)
        print(f'{name} {s}x{s}: {wall:.1f} s wall')
      d = frame_difference(outs['untiled'], outs['tiled'], 'crop')
      print(f'tiled vs untiled, {s}x{s}, 8-bit frames in [0,1] units: '
            f'mean {d["mean"]:.4f}, p99 {d["p99"]:.4f}, max {d["max"]:.4f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

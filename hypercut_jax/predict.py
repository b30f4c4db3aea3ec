r"""Blurry image(s) -> 7 sharp frames with a trained generator.

  python -m hypercut_jax.predict --checkpoint=/tmp/hc/generator \
      --input=photos/ --output=/tmp/frames --gif

--checkpoint  a generator-stage workdir, its checkpoints/ directory, one
              step directory, or a `stage=both` workdir; the model is
              rebuilt from the config saved with the checkpoint.
--input       an image file, a directory (its non-hidden files, not
              recursive) or a quoted glob ('shots/*.jpg').
--output      directory for `<name>_f1.png .. <name>_f7.png` (the 7 frames
              in time order), `<name>_strip.png` (blur | f1 .. f7) and, with
              --gif, `<name>.gif` (f1 .. f7 looping forward, with a timeline
              bar under each frame).
--batch_size  images of the same size are run together, this many at once.
--overwrite   replace existing outputs (otherwise an input whose outputs
              exist is reported and skipped; nothing is replaced).

Any image size works (`models.predict` pads to the model's size multiple and
crops back). Inputs are read by `hypercut_jax.imageio.read_image`: 8/16-bit
PNG, JPEG, ...; grayscale is repeated to RGB, alpha is dropped. Purohit et
al. get no middle frame: the model estimates it itself (`middle=None`).

A bad input (unreadable, truncated, empty, not an image, outputs already
there) is reported in one line naming the file; a multi-input run goes on
with the others and lists the failures at the end. Exit status: 0 when every
input was written, 1 otherwise (also for a bad checkpoint or flag).
"""
import argparse
import collections
import dataclasses
import os
import sys

import numpy as np

from hypercut_jax import imageio

N_FRAMES = 7


@dataclasses.dataclass
class Summary:
  """written: {input: [output files]}; failed: {input: one-line reason}."""
  written: dict
  failed: dict


def output_paths(output_dir: str, stem: str, gif: bool) -> dict:
  """{'frames': [7 paths], 'strip': path, 'gif': path | None}."""
  return {
      'frames': [os.path.join(output_dir, f'{stem}_f{i}.png')
                 for i in range(1, N_FRAMES + 1)],
      'strip': os.path.join(output_dir, f'{stem}_strip.png'),
      'gif': os.path.join(output_dir, f'{stem}.gif') if gif else None,
  }


def _all_paths(paths: dict) -> list[str]:
  return [*paths['frames'], paths['strip']] + ([paths['gif']] if paths['gif']
                                               else [])


def make_predict_fn(loaded):
  """jitted fn(params, blur f32[B,H,W,3] in [0,1]) -> f32[B,7,H,W,3] in [0,1].

  Compiles once per (B, H, W); no middle frame or guidance is given.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  model = loaded.model

  def fn(params, blur):
    return models.predict(model, {'params': params}, blur)
  return jax.jit(fn)


def _stems(files: list[str]) -> dict:
  """{file: output stem}; clashing stems (a.png, a.jpg) get the extension."""
  base = {f: os.path.splitext(os.path.basename(f))[0] for f in files}
  counts = collections.Counter(base.values())
  return {f: (s if counts[s] == 1 else
              f'{s}_{os.path.splitext(f)[1].lstrip(".").lower() or "noext"}')
          for f, s in base.items()}


def write_outputs(paths: dict, blur, frames, *, overwrite: bool) -> list[str]:
  """Writes the frame PNGs, the strip and the GIF of one image."""
  frames8 = imageio.to_uint8(frames)
  out = []
  for path, frame in zip(paths['frames'], frames8):
    out.append(imageio.write_png(path, frame, overwrite=overwrite))
  strip = imageio.make_strip([blur, *frames8])
  out.append(imageio.write_png(paths['strip'], strip, overwrite=overwrite))
  if paths['gif']:
    out.append(imageio.write_gif(paths['gif'], frames8, overwrite=overwrite))
  return out


def run(checkpoint: str, inputs: str, output: str, *, gif: bool = False,
        batch_size: int = 4, overwrite: bool = False,
        progress: bool = True) -> Summary:
  """Predicts 7 frames for every input image; see the module docstring.

  Raises (FileNotFoundError / ValueError naming the path) for a bad
  checkpoint, output or a single bad input given by name; a multi-input run
  records per-file failures in the returned Summary instead.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  from hypercut_jax import inference  # pylint: disable=g-import-not-at-top
  if batch_size < 1:
    raise ValueError(f'--batch_size={batch_size}; must be >= 1')
  files, multi = imageio.expand_inputs(inputs)
  output = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(output) and not os.path.isdir(output):
    raise FileExistsError(f'--output={output}: exists and is not a directory')
  stems = _stems(files)
  failed, todo = {}, []
  for f in files:
    paths = output_paths(output, stems[f], gif)
    try:
      for p in _all_paths(paths):
        imageio.check_writable(p, overwrite)
    except FileExistsError as e:
      failed[f] = str(e)
      continue
    todo.append((f, paths))
  if not multi and failed:
    raise FileExistsError(failed[files[0]])
  # A single input is decoded before the (slower) model load: fail fast.
  preloaded = {files[0]: imageio.read_image(files[0])} if not multi else {}
  loaded = inference.load_generator(checkpoint)
  os.makedirs(output, exist_ok=True)
  predict = make_predict_fn(loaded)
  todo_paths = dict(todo)
  written, full_shapes = {}, set()
  bar = tqdm.tqdm(total=len(todo), unit='img', disable=not progress,
                  file=sys.stderr)

  def flush(chunk):
    n = len(chunk)
    blur = np.stack([im for _, im in chunk])
    if n < batch_size and blur.shape[1:] in full_shapes:
      # Pad to the compiled batch size rather than compile a second one.
      blur = np.concatenate([blur, np.repeat(blur[-1:], batch_size - n, 0)])
    if n == batch_size:
      full_shapes.add(blur.shape[1:])
    try:
      frames = np.asarray(jax.device_get(predict(loaded.params, blur)))[:n]
    except ValueError as e:  # e.g. an image too small to pad
      if not multi:
        raise ValueError(f'{chunk[0][0]}: {e}') from None
      for f, _ in chunk:
        failed[f] = f'{f}: {" ".join(str(e).split())}'
      bar.update(n)
      return
    for (f, im), fr in zip(chunk, frames):
      written[f] = write_outputs(todo_paths[f], im, fr, overwrite=overwrite)
      bar.update(1)

  try:
    # Decode as we go; a batch runs as soon as batch_size images of one
    # size are in, so memory stays bounded by the number of sizes.
    pending = {}
    for f, _ in todo:
      try:
        image = preloaded.pop(f) if f in preloaded else imageio.read_image(f)
      except (imageio.ImageReadError, FileNotFoundError) as e:
        if not multi:
          raise
        failed[f] = str(e)
        bar.update(1)
        continue
      group = pending.setdefault(image.shape, [])
      group.append((f, image))
      if len(group) == batch_size:
        flush(pending.pop(image.shape))
    for group in pending.values():
      flush(group)
  finally:
    bar.close()
  return Summary(written=written, failed=failed)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m hypercut_jax.predict',
      description='Blurry image(s) -> 7 sharp frames (PNG, strip, GIF).')
  p.add_argument('--checkpoint', required=True,
                 help='generator workdir, checkpoints/ dir or step dir')
  p.add_argument('--input', required=True,
                 help='an image, a directory of images or a quoted glob')
  p.add_argument('--output', required=True, help='output directory')
  p.add_argument('--gif', action='store_true',
                 help='also write <name>.gif (frames looping forward)')
  p.add_argument('--batch_size', type=int, default=4,
                 help='same-size images run together (default 4)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files')
  p.add_argument('--no_progress', action='store_true',
                 help='hide the progress bar')
  return p


def main(argv=None) -> int:
  """CLI entry point; returns the exit status (see module docstring)."""
  args = _parser().parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # orbax's read-only notices
  try:
    summary = run(args.checkpoint, args.input, args.output, gif=args.gif,
                  batch_size=args.batch_size, overwrite=args.overwrite,
                  progress=not args.no_progress)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  n_files = sum(len(v) for v in summary.written.values())
  print(f'wrote {len(summary.written)} image(s), {n_files} file(s) to '
        f'{os.path.abspath(args.output)}')
  if summary.failed:
    print(f'{len(summary.failed)} input(s) failed:', file=sys.stderr)
    for reason in summary.failed.values():
      print(f'  {reason}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())

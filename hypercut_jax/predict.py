r"""Blurry image(s) -> 7 sharp frames with a trained generator.

  python -m hypercut_jax.predict --checkpoint=/tmp/hc/generator \
      --input=photos/ --output=/tmp/frames --gif --mp4 --pingpong

--checkpoint    a generator-stage workdir, its checkpoints/ directory, one
                step directory, or a `stage=both` workdir; the model is
                rebuilt from the config saved with the checkpoint.
--input         an image file, a directory (its non-hidden files, not
                recursive) or a quoted glob ('shots/*.jpg').
--output        directory for `<name>_f1.png .. <name>_f7.png` (the 7
                frames in time order, at the input's size),
                `<name>_strip.png` (blur | f1 .. f7, shrunk to at most
                STRIP_MAX_WIDTH x STRIP_MAX_HEIGHT = 4096 x 4096 px) and,
                with --gif, `<name>.gif` (f1 .. f7 looping forward, with a
                timeline bar under each frame, shrunk to at most
                GIF_MAX_SIDE = 640 px a side) and, with --mp4,
                `<name>.mp4` (below).
--mp4           also write `<name>.mp4`: the frames at full size, H.264
                (libx264; MPEG-4 Part 2 where PyAV lacks it), yuv420p, an
                odd side edge-padded by 1 px to even (`video.write_mp4`).
                Needs PyAV: `pip install "hypercut_jax[video]"`; without it
                --mp4 stops the run at once with one line saying so.
--fps           frames a second of the MP4 (default FPS = 8).
--pingpong      the MP4 plays f1 .. f7 then f6 .. f2 (12 frames; loops
                smoothly), instead of f1 .. f7. --fps and --pingpong need
                --mp4; the GIF is unaffected.
--batch_size    images of the same size are run together, this many at
                once (the tiles of a large image run one at a time).
--overwrite     replace existing outputs (otherwise an input whose outputs
                exist is reported and skipped; nothing is replaced).
--tile, --tile_overlap, --tile_above: large images, below.

Any image size works (`models.predict` pads to the model's size multiple and
crops back). Inputs are read by `hypercut_jax.imageio.read_image`: 8/16-bit
PNG, JPEG, ...; grayscale is repeated to RGB, alpha is dropped. Purohit et
al. get no middle frame: the model estimates it itself (`middle=None`).

Large images. An image of more than --tile_above pixels (default
TILE_ABOVE = 1024 * 1024) is run in overlapping square tiles of --tile px
(default TILE = 512) sharing --tile_overlap px (default TILE_OVERLAP = 64)
with their neighbours, both rounded up to the model's size multiple (20 for
jin2018, 8 for purohit2019: 520 and 80 for jin2018); --tile=0 never tiles.
The image is reflect-padded to the size multiple first, as untiled. Each
output pixel blends the tiles that cover it: a tile's weight ramps linearly
across the central half of its overlap with a neighbour and is 0 within
overlap/4 px of its inner edges (`axis_weights`). Frames are accumulated
one row of tiles at a time (float32, 7 x 3 x tile x width) and stored in an
8-bit canvas of the image's size (7 x 3 bytes a pixel): memory grows with
the image, not with the model's activations on it (`predict_tiled`). A
4000x3000 photo with the synthetic config's jin2018 on a 2-core CPU: 66 s,
peak RSS 1.1 GiB (untiled, --tile=0: 61 s, 4.3 GiB).
  - A network without image-wide statistics whose receptive field reaches
    at most overlap/4 px gives the untiled frames up to float rounding
    (measured: max |difference| 2e-7 for a 3-layer conv net, 48 px tiles,
    24 px overlap; tests/predict_robust_test.py).
  - jin2018 normalises with InstanceNorm (statistics over the whole
    input), and purohit2019's centre net is jin2018's: tiled and untiled
    frames cannot agree exactly. Measured |difference| of the 8-bit frames
    in [0,1] units: the synthetic config's narrow jin2018 trained 1000
    steps, default tiles, 1040x1040 image: mean 0.0026, 99th percentile
    0.020, max 0.067 (the same net with random weights: 0.031, 0.15,
    0.52; benchmarks/predict_memory.py --compare); the smoke jin2018 of
    tests/predict_robust_test.py, random weights, 40 px tiles, 20 px
    overlap, 60x100 image: mean 0.003, max 0.035 (asserted < 0.01, < 0.1).

Outputs are finite or nothing is written: NaN or inf in a batch's frames
(checked before clipping; e.g. a diverged checkpoint) stops the run with one
line naming the input and the checkpoint (`NonFiniteOutputError`); nothing
is written for that batch, inputs finished before keep their outputs.

Writes are all or nothing per input: its files (7 frames, strip, GIF) are
written as `.<file>.tmp-<pid>` in --output and renamed into place together
once all are complete (`imageio.FileGroup`); the MP4 is encoded last,
likewise under a temporary name, and renamed into place just before them
(`video.write_mp4`), and removed again if renaming the others fails. A
failed write (full disk, permissions, an encoder error) removes them and
stops the run with one line naming the file (`imageio.ImageWriteError`),
so a rerun finds no partial outputs.

A bad input (unreadable, truncated, empty, not an image, outputs already
there, the MP4 included) is reported in one line naming the file; a
multi-input run goes on with the others and lists the failures at the end.
Exit status: 0 when every input was written, 1 otherwise (also for a bad
checkpoint or flag, --mp4 without PyAV, a non-finite output or a failed
write).
"""
import argparse
import collections
import dataclasses
import os
import sys
from typing import Any

import numpy as np

from hypercut_jax import imageio
from hypercut_jax import video

N_FRAMES = 7
# Images with more pixels than this are run in tiles (--tile_above).
TILE_ABOVE = 1024 * 1024
TILE = 512  # --tile: side of a square tile, px
TILE_OVERLAP = 64  # --tile_overlap: px shared by neighbouring tiles
# The strip is shrunk (aspect kept) to fit within these; frames are not.
STRIP_MAX_WIDTH = 4096
STRIP_MAX_HEIGHT = 4096
GIF_MAX_SIDE = 640  # the GIF (timeline bar included) fits in this square
FPS = 8.0  # --fps: frames a second of the MP4


class NonFiniteOutputError(RuntimeError):
  """The generator output NaN/inf; str() names the input and checkpoint."""


@dataclasses.dataclass
class Summary:
  """written: {input: [output files]}; failed: {input: one-line reason}."""
  written: dict
  failed: dict


@dataclasses.dataclass(frozen=True)
class Tiling:
  """How large images are split (see the module docstring).

  tile: side of a square tile in px (0: never tile); overlap: px shared by
  neighbouring tiles (at most tile / 2); above: images with more pixels
  than this are tiled.
  """
  tile: int = TILE
  overlap: int = TILE_OVERLAP
  above: int = TILE_ABOVE

  def check(self) -> None:
    """ValueError naming the flag when a field is out of range."""
    if self.tile < 0:
      raise ValueError(f'--tile={self.tile}; must be >= 0 (0: never tile)')
    if self.overlap < 0 or 2 * self.overlap > self.tile > 0:
      raise ValueError(f'--tile_overlap={self.overlap}; must be >= 0 and at '
                       f'most half of --tile={self.tile}')
    if self.above < 0:
      raise ValueError(f'--tile_above={self.above}; must be >= 0')

  def applies(self, h: int, w: int) -> bool:
    """Whether an h x w image is tiled."""
    return self.tile > 0 and h * w > self.above

  def rounded(self, multiple: int) -> tuple[int, int]:
    """(tile, overlap) rounded up to multiples of `multiple`.

    The tile grows to twice the overlap if rounding put it below that.
    """
    up = lambda n: -(-n // multiple) * multiple
    overlap = up(self.overlap)
    return max(up(self.tile), 2 * overlap, multiple), overlap


def output_paths(output_dir: str, stem: str, gif: bool,
                 mp4: bool = False) -> dict:
  """{'frames': [7 paths], 'strip': path, 'gif': path | None, 'mp4': ...}.

  'mp4' is the MP4's path, or None without `mp4`.
  """
  return {
      'frames': [os.path.join(output_dir, f'{stem}_f{i}.png')
                 for i in range(1, N_FRAMES + 1)],
      'strip': os.path.join(output_dir, f'{stem}_strip.png'),
      'gif': os.path.join(output_dir, f'{stem}.gif') if gif else None,
      'mp4': os.path.join(output_dir, f'{stem}.mp4') if mp4 else None,
  }


def _all_paths(paths: dict) -> list[str]:
  return [*paths['frames'], paths['strip']] + [
      p for p in (paths['gif'], paths.get('mp4')) if p]


class _Checked:
  """A generator for `models.predict` that also reports finite outputs.

  `models.predict` clips the frames to [0, 1], which hides inf (it becomes
  0 or 1); this wrapper records, per example, whether the model's raw frames
  are all finite (`finite`: bool[B], set while tracing).
  """

  def __init__(self, model):
    self.model = model
    self.size_multiple = int(getattr(model, 'size_multiple', 1))
    self.finite = None

  def apply(self, variables, x, **kw):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    out = self.model.apply(variables, x, **kw)
    self.finite = jnp.isfinite(out['frames']).all(axis=(1, 2, 3, 4))
    return out


def make_predict_fn(loaded):
  """jitted fn(params, blur f32[B,H,W,3] in [0,1]) -> (frames, finite).

  frames: f32[B,7,H,W,3] in [0,1]; finite: bool[B], whether the model's
  frames for that example were free of NaN/inf before clipping. Compiles
  once per (B, H, W); no middle frame or guidance is given.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  model = loaded.model

  def fn(params, blur):
    checked = _Checked(model)
    frames = models.predict(checked, {'params': params}, blur)
    return frames, checked.finite
  return jax.jit(fn)


def _stems(files: list[str]) -> dict:
  """{file: output stem}; clashing stems (a.png, a.jpg) get the extension."""
  base = {f: os.path.splitext(os.path.basename(f))[0] for f in files}
  counts = collections.Counter(base.values())
  return {f: (s if counts[s] == 1 else
              f'{s}_{os.path.splitext(f)[1].lstrip(".").lower() or "noext"}')
          for f, s in base.items()}


def write_outputs(paths: dict, blur, frames, *, overwrite: bool,
                  fps: float = FPS, loop: str = 'forward') -> list[str]:
  """Writes one image's frame PNGs, strip, GIF and MP4, or none of them.

  blur: f32[H,W,3]; frames: uint8[7,H,W,3] (or f32 in [0,1]). The images
  are renamed into place together (`imageio.FileGroup`); the MP4
  (paths['mp4'], if set; `video.write_mp4` at `fps`, `loop` 'forward' or
  'pingpong') is encoded last and placed just before them, and removed
  again if they fail. An error removes them all and raises
  (`imageio.ImageWriteError` naming the file for a failed write). Returns
  the paths written.
  """
  frames8 = imageio.to_uint8(frames)
  mp4 = []  # the MP4 once renamed into place
  try:
    with imageio.FileGroup(overwrite) as group:
      for path, frame in zip(paths['frames'], frames8):
        group.png(path, frame)
      strip = imageio.make_strip([blur, *frames8], max_width=STRIP_MAX_WIDTH,
                                 max_height=STRIP_MAX_HEIGHT)
      group.png(paths['strip'], strip)
      if paths['gif']:
        group.gif(paths['gif'], frames8, max_side=GIF_MAX_SIDE)
      if paths.get('mp4'):
        # FileGroup holds images only: the MP4 goes through its own atomic
        # write, last, so an encoder error still discards the group's files.
        mp4.append(video.write_mp4(paths['mp4'], frames8, fps=fps, loop=loop,
                                   overwrite=overwrite))
  except BaseException:
    for path in mp4:
      try:
        os.remove(path)
      except FileNotFoundError:
        pass
    raise
  return group.paths + mp4


# ---------------------------------------------------------------- tiling ---
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Starts of `tile`-px tiles that cover [0, size) along one axis.

  Starts step by tile - overlap, so neighbours share at least `overlap` px;
  the last tile ends at `size` (it may share more with its neighbours). One
  tile at 0 when size <= tile.
  """
  if size <= tile:
    return [0]
  return list(range(0, size - tile, tile - overlap)) + [size - tile]


def axis_weights(size: int, starts: list[int], length: int,
                 overlap: int) -> np.ndarray:
  """f32[len(starts), length]: each tile's blend weight along one axis.

  Where tiles overlap their weights sum to 1. A tile's weight is 0 within
  overlap // 4 px of an edge inside the image (edges on the image border
  do not count) and ramps up linearly over the next overlap / 2 px, so it
  crosses its neighbour's ramp in the middle of their overlap.
  """
  margin = overlap // 4
  ramp = max(1, overlap - 2 * margin)
  pos = np.arange(length, dtype=np.float64)
  raw = []
  for s in starts:
    dist = np.full(length, np.inf)
    if s > 0:
      dist = np.minimum(dist, pos)
    if s + length < size:
      dist = np.minimum(dist, length - 1 - pos)
    raw.append(np.clip((dist - margin + 0.5) / ramp, 0.0, 1.0))
  total = np.zeros(size)
  for s, r in zip(starts, raw):
    total[s:s + length] += r
  return np.stack([r / total[s:s + length]
                   for s, r in zip(starts, raw)]).astype(np.float32)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
  """f32[H,W,3] reflect-padded at the bottom/right to a size multiple.

  Pads as `models.predict` does; returns the image itself when H and W are
  multiples of `multiple` already.
  """
  h, w = image.shape[:2]
  ph, pw = -h % multiple, -w % multiple
  if not (ph or pw):
    return image
  if h < 2 or w < 2:
    raise ValueError(f'blur of size {h}x{w} is too small to reflect-pad')
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode='reflect')


def _store(out: np.ndarray, y0: int, rows: np.ndarray) -> None:
  """Writes blended rows f32[7,n,W',3] at row y0 of out [7,H,W,3].

  Cropped to out's size. For a uint8 `out`, `rows` is rounded in place
  like `imageio.to_uint8`.
  """
  h, w = out.shape[1:3]
  n = min(rows.shape[1], h - y0)
  if n <= 0:
    return
  src = rows[:, :n, :w]
  if out.dtype == np.uint8:
    np.clip(src, 0.0, 1.0, out=src)
    src *= 255.0
    np.rint(src, out=src)
  out[:, y0:y0 + n] = src


def predict_tiled(fn, blur: np.ndarray, *, tile: int, overlap: int,
                  multiple: int = 1, out: np.ndarray | None = None
                  ) -> np.ndarray:
  """The 7 frames of one image, computed tile by tile (module docstring).

  fn: f32[1,th,tw,3] -> f32[1,7,th,tw,3] in [0,1]; it gets the tiles, one
  at a time, of the image reflect-padded to multiples of `multiple`, with
  th = min(tile, padded H) and tw likewise. blur: f32[H,W,3] in [0,1].
  tile, overlap: multiples of `multiple` (`Tiling.rounded`), overlap at
  most tile / 2. out: [7,H,W,3], uint8 (rounded like `imageio.to_uint8`)
  or float (the blend itself); default a new uint8 array. Returns out.
  Besides out it holds one row of tiles' frames, f32[7,th,padded W,3].
  """
  h, w = blur.shape[:2]
  padded = pad_to_multiple(blur, multiple)
  hp, wp = padded.shape[:2]
  ys, xs = tile_starts(hp, tile, overlap), tile_starts(wp, tile, overlap)
  th, tw = min(tile, hp), min(tile, wp)
  wy = axis_weights(hp, ys, th, overlap)
  wx = axis_weights(wp, xs, tw, overlap)
  if out is None:
    out = np.empty((N_FRAMES, h, w, 3), np.uint8)
  acc = np.zeros((N_FRAMES, th, wp, 3), np.float32)
  for i, y0 in enumerate(ys):
    for j, x0 in enumerate(xs):
      frames = np.asarray(fn(padded[None, y0:y0 + th, x0:x0 + tw]))[0]
      acc[:, :, x0:x0 + tw] += frames * (wy[i][:, None, None]
                                         * wx[j][None, :, None])
      del frames
    done = (ys[i + 1] if i + 1 < len(ys) else hp) - y0
    _store(out, y0, acc[:, :done])
    # Rows shared with the next row of tiles move to the top.
    acc[:, :th - done] = acc[:, done:]
    acc[:, th - done:] = 0.0
  return out


# ------------------------------------------------------------------- run ---
def _check_finite(finite, files: list[str], checkpoint: str,
                  step: int) -> None:
  """NonFiniteOutputError naming the first of `files` whose flag is False."""
  bad = [f for f, ok in zip(files, np.asarray(finite)) if not ok]
  if not bad:
    return
  others = len(files) - 1
  batch = (f' or the {others} other input(s) of its batch' if others
           else '')
  raise NonFiniteOutputError(
      f'{bad[0]}: the generator output NaN/inf (checkpoint {checkpoint}, '
      f'step {step}); nothing written for it{batch}')


@dataclasses.dataclass
class _Job:
  """What `run` shares between batches: the model, flags and results."""
  loaded: Any
  predict: Any
  checkpoint: str
  paths: dict
  batch_size: int
  overwrite: bool
  tiling: Tiling
  fps: float
  loop: str
  multi: bool
  bar: Any
  written: dict = dataclasses.field(default_factory=dict)
  failed: dict = dataclasses.field(default_factory=dict)
  full_shapes: set = dataclasses.field(default_factory=set)

  def _apply(self, blur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames f32[B,7,H,W,3], finite bool[B]) of blur f32[B,H,W,3]."""
    import jax  # pylint: disable=g-import-not-at-top
    frames, finite = jax.device_get(self.predict(self.loaded.params, blur))
    return np.asarray(frames), np.asarray(finite)

  def _tile_fn(self, f: str):
    """`predict_tiled`'s fn for the tiles of input `f` (checks NaN/inf)."""
    def fn(tiles):
      frames, finite = self._apply(tiles)
      _check_finite([finite.all()], [f], self.checkpoint, self.loaded.step)
      return frames
    return fn

  def _model_error(self, files: list[str], error: ValueError) -> None:
    """A model-side ValueError (e.g. too small to pad) for `files`."""
    if not self.multi:
      raise ValueError(f'{files[0]}: {error}') from None
    for f in files:
      self.failed[f] = f'{f}: {" ".join(str(error).split())}'
    self.bar.update(len(files))

  def _write(self, f: str, blur: np.ndarray, frames8: np.ndarray) -> None:
    """Writes the outputs of input `f`; a failed write names both."""
    try:
      self.written[f] = write_outputs(self.paths[f], blur, frames8,
                                      overwrite=self.overwrite, fps=self.fps,
                                      loop=self.loop)
    except imageio.ImageWriteError as e:
      error = imageio.ImageWriteError(f'{e}; nothing written for {f}')
      error.errno = e.errno
      raise error from None
    self.bar.update(1)

  def batch(self, chunk: list) -> None:
    """Runs [(file, image)] of one size together and writes their outputs."""
    n, files = len(chunk), [f for f, _ in chunk]
    blur = np.stack([im for _, im in chunk])
    if n < self.batch_size and blur.shape[1:] in self.full_shapes:
      # Pad to the compiled batch size rather than compile a second one.
      blur = np.concatenate([blur, np.repeat(blur[-1:], self.batch_size - n,
                                             0)])
    if n == self.batch_size:
      self.full_shapes.add(blur.shape[1:])
    try:
      frames, finite = self._apply(blur)
    except ValueError as e:
      self._model_error(files, e)
      return
    _check_finite(finite[:n], files, self.checkpoint, self.loaded.step)
    frames8 = [imageio.to_uint8(fr) for fr in frames[:n]]
    del frames
    for (f, im), fr in zip(chunk, frames8):
      self._write(f, im, fr)

  def tiled(self, f: str, image: np.ndarray) -> None:
    """Runs one large image tile by tile and writes its outputs."""
    multiple = int(getattr(self.loaded.model, 'size_multiple', 1))
    tile, overlap = self.tiling.rounded(multiple)
    try:
      frames8 = predict_tiled(self._tile_fn(f), image, tile=tile,
                              overlap=overlap, multiple=multiple)
    except ValueError as e:
      self._model_error([f], e)
      return
    self._write(f, image, frames8)


def _plan(files: list[str], output: str, gif: bool, overwrite: bool,
          mp4: bool = False) -> tuple[dict, dict]:
  """({file: output paths} to run, {file: reason} for existing outputs)."""
  stems = _stems(files)
  todo, failed = {}, {}
  for f in files:
    paths = output_paths(output, stems[f], gif, mp4)
    try:
      for p in _all_paths(paths):
        imageio.check_writable(p, overwrite)
    except FileExistsError as e:
      failed[f] = str(e)
      continue
    todo[f] = paths
  return todo, failed


def run(checkpoint: str, inputs: str, output: str, *, gif: bool = False,
        batch_size: int = 4, overwrite: bool = False, progress: bool = True,
        tiling: Tiling = Tiling(), mp4: bool = False, fps: float = FPS,
        pingpong: bool = False) -> Summary:
  """Predicts 7 frames for every input image; see the module docstring.

  mp4: also write `<name>.mp4` at `fps`, looping forward and back with
  `pingpong`. Raises (FileNotFoundError / ValueError naming the path) for
  a bad checkpoint, output or flag or a single bad input given by name,
  and video.VideoUnavailableError (before any work) for `mp4` without
  PyAV; a multi-input run records per-file failures in the returned
  Summary instead. NonFiniteOutputError and imageio.ImageWriteError stop
  any run.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  from hypercut_jax import inference  # pylint: disable=g-import-not-at-top
  if batch_size < 1:
    raise ValueError(f'--batch_size={batch_size}; must be >= 1')
  tiling.check()
  loop = 'pingpong' if pingpong else 'forward'
  if mp4:
    try:
      video.check_options(fps=fps, loop=loop)
    except ValueError as e:
      raise ValueError(f'--{e}') from None  # names the flag: --fps=...
    video.codec()  # PyAV and an encoder are there: fail before any work
  files, multi = imageio.expand_inputs(inputs)
  output = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(output) and not os.path.isdir(output):
    raise FileExistsError(f'--output={output}: exists and is not a directory')
  todo, failed = _plan(files, output, gif, overwrite, mp4)
  if not multi and failed:
    raise FileExistsError(failed[files[0]])
  # A single input is decoded before the (slower) model load: fail fast.
  preloaded = {files[0]: imageio.read_image(files[0])} if not multi else {}
  loaded = inference.load_generator(checkpoint)
  os.makedirs(output, exist_ok=True)
  bar = tqdm.tqdm(total=len(todo), unit='img', disable=not progress,
                  file=sys.stderr)
  job = _Job(loaded=loaded, predict=make_predict_fn(loaded),
             checkpoint=checkpoint, paths=todo, batch_size=batch_size,
             overwrite=overwrite, tiling=tiling, fps=fps, loop=loop,
             multi=multi, bar=bar, failed=failed)
  try:
    # Decode as we go; a batch runs as soon as batch_size images of one
    # size are in, so memory stays bounded by the number of sizes. Large
    # images run alone, in tiles.
    pending = {}
    for f in todo:
      try:
        image = preloaded.pop(f) if f in preloaded else imageio.read_image(f)
      except (imageio.ImageReadError, FileNotFoundError) as e:
        if not multi:
          raise
        job.failed[f] = str(e)
        bar.update(1)
        continue
      if tiling.applies(*image.shape[:2]):
        job.tiled(f, image)
        continue
      group = pending.setdefault(image.shape, [])
      group.append((f, image))
      if len(group) == batch_size:
        job.batch(pending.pop(image.shape))
    for group in pending.values():
      job.batch(group)
  finally:
    bar.close()
  return Summary(written=job.written, failed=job.failed)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m hypercut_jax.predict',
      description='Blurry image(s) -> 7 sharp frames (PNG, strip, GIF, '
      'MP4).')
  p.add_argument('--checkpoint', required=True,
                 help='generator workdir, checkpoints/ dir or step dir')
  p.add_argument('--input', required=True,
                 help='an image, a directory of images or a quoted glob')
  p.add_argument('--output', required=True, help='output directory')
  p.add_argument('--gif', action='store_true',
                 help='also write <name>.gif (frames looping forward, at '
                 f'most {GIF_MAX_SIDE} px a side)')
  p.add_argument('--mp4', action='store_true',
                 help='also write <name>.mp4 (full size, H.264 or, where '
                 'PyAV lacks it, MPEG-4; an odd side is padded by 1 px); '
                 'needs PyAV: pip install "hypercut_jax[video]"')
  p.add_argument('--fps', type=float, default=None,
                 help=f'frames a second of the MP4 (default {FPS:g}); needs '
                 '--mp4')
  p.add_argument('--pingpong', action='store_true',
                 help='the MP4 plays f1..f7 then f6..f2 (loops smoothly); '
                 'needs --mp4')
  p.add_argument('--batch_size', type=int, default=4,
                 help='same-size images run together (default 4); tiles run '
                 'one at a time')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files')
  p.add_argument('--tile_above', type=int, default=TILE_ABOVE,
                 help='images with more pixels than this run in overlapping '
                 f'tiles (default {TILE_ABOVE} = 1024x1024)')
  p.add_argument('--tile', type=int, default=TILE,
                 help='tile side in px, rounded up to the model\'s size '
                 f'multiple; 0: never tile (default {TILE}). jin2018 '
                 '(InstanceNorm) gives tiled frames close to, not equal to, '
                 'untiled ones')
  p.add_argument('--tile_overlap', type=int, default=TILE_OVERLAP,
                 help='px shared by neighbouring tiles, blended; at most '
                 f'--tile/2 (default {TILE_OVERLAP})')
  p.add_argument('--no_progress', action='store_true',
                 help='hide the progress bar')
  return p


def main(argv=None) -> int:
  """CLI entry point; returns the exit status (see module docstring)."""
  args = _parser().parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # orbax's read-only notices
  tiling = Tiling(tile=args.tile, overlap=args.tile_overlap,
                  above=args.tile_above)
  try:
    if not args.mp4 and (args.fps is not None or args.pingpong):
      raise ValueError('--fps and --pingpong set up the MP4; add --mp4')
    summary = run(args.checkpoint, args.input, args.output, gif=args.gif,
                  batch_size=args.batch_size, overwrite=args.overwrite,
                  progress=not args.no_progress, tiling=tiling, mp4=args.mp4,
                  fps=FPS if args.fps is None else args.fps,
                  pingpong=args.pingpong)
  except (ValueError, OSError, RuntimeError, video.VideoUnavailableError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
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

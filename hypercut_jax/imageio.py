"""Image files in and out for the command-line tools (one home).

Reading (`read_image`) gives f32[H,W,3] RGB in [0,1] from any file Pillow
decodes: 8-bit and 16-bit PNG, JPEG, BMP, TIFF, WebP, ...
  - grayscale (1, L, I;16, I, F) is repeated to 3 channels;
  - an alpha channel (RGBA, LA, PA, transparent palettes) is dropped, not
    composited: the colour values are used as stored;
  - 16-bit grayscale keeps its full precision (/65535; 32-bit integer
    images are read as 16-bit); 16-bit colour PNGs are decoded by Pillow,
    which keeps the high byte (8-bit precision);
  - the EXIF orientation tag is applied (photos from phones come out upright).
A file that is missing, empty, truncated, not an image, or has a zero side
raises `ImageReadError` (a ValueError) whose one-line message names it.

Writing: `write_png` (8-bit RGB), `write_gif` (frames looping forward) and
`make_strip` (images side by side, optionally shrunk to a maximum size;
`write_gif` too). Writers refuse to replace an existing file unless
`overwrite=True`, raising `FileExistsError` naming it. Every file is
written under a temporary name in its folder, `.<name>.tmp-<pid>`, and
renamed into place when complete; `FileGroup` does this for several files
at once (all renamed together, or none on an error). A failed write
raises `ImageWriteError` (an OSError, errno kept) whose one-line message
names the file, and leaves no temporary behind.

Inputs: `expand_inputs(spec)` turns a file, a directory or a glob into a
sorted list of files.
"""
import glob
import os
from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

# Extensions listed in docs and used to tell images from other files when a
# choice is needed (decoding itself goes by content, not by name).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff',
                    '.webp', '.gif', '.ppm', '.pgm')
GLOB_CHARS = ('*', '?', '[')


class ImageReadError(ValueError):
  """An input file that cannot be read as an image; str() names the file."""


def read_image(path: str) -> np.ndarray:
  """Decodes `path` to f32[H,W,3] RGB in [0,1] (see module docstring).

  Raises FileNotFoundError (missing file) or ImageReadError naming `path`.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such file')
  if os.path.isdir(path):
    raise ImageReadError(f'{path}: is a directory, not an image')
  if os.path.getsize(path) == 0:
    raise ImageReadError(f'{path}: empty file (0 bytes), not an image')
  try:
    with Image.open(path) as im:
      im.load()  # decode now: truncated data fails here, not later
      if im.width == 0 or im.height == 0:
        raise ImageReadError(
            f'{path}: zero-size image ({im.width}x{im.height})')
      im = ImageOps.exif_transpose(im)
      return _to_rgb_float(im, path)
  except ImageReadError:
    raise
  except UnidentifiedImageError:
    raise ImageReadError(f'{path}: not an image (Pillow cannot identify '
                         'the format)') from None
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    # Pillow reports truncated or corrupt data as OSError/SyntaxError.
    msg = ' '.join(str(e).split()) or type(e).__name__
    raise ImageReadError(f'{path}: unreadable or truncated image ({msg})'
                         ) from None


def _to_rgb_float(im, path: str) -> np.ndarray:
  """A loaded PIL image -> f32[H,W,3] in [0,1]."""
  mode = im.mode
  if mode in ('I;16', 'I;16B', 'I;16L', 'I;16N'):
    x = np.asarray(im).astype(np.float32) / 65535.0
  elif mode == 'I':
    # 32-bit integer grayscale: Pillow's mode for some 16-bit PNG/TIFF data;
    # read as 16-bit (values above 65535 saturate).
    x = np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)
  elif mode == 'F':
    x = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
  else:
    if mode not in ('RGB', 'L'):
      # Palette, 1-bit, CMYK, YCbCr, LAB, HSV, RGBA, LA, PA, ...: alpha
      # dropped by the conversion, colours kept as stored.
      im = im.convert('RGB') if mode not in ('LA', '1') else im.convert('L')
    x = np.asarray(im).astype(np.float32)
    x /= 255.0  # in place: one float copy of a large image, not two
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ImageReadError(f'{path}: unsupported image layout {x.shape} '
                         f'(mode {mode})')
  return np.ascontiguousarray(x)


def to_uint8(images) -> np.ndarray:
  """f32 in [0,1] (clipped) or uint8, any shape -> uint8 (round(x*255)).

  NaN or inf raises ValueError (they would become arbitrary pixels).
  """
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f'images must be uint8 or float in [0,1]; got {x.dtype}')
  if not np.isfinite(x).all():
    n = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise ValueError(f'images hold {n} NaN/inf value(s); refusing to '
                     'convert them to 8-bit')
  y = np.clip(x, 0.0, 1.0)  # one float temporary, updated in place
  y *= 255.0
  return np.rint(y, out=y).astype(np.uint8)


def _check_hw3(image, name: str) -> np.ndarray:
  x = to_uint8(image)
  if x.ndim != 3 or x.shape[-1] != 3 or 0 in x.shape:
    raise ValueError(f'{name} must be [H,W,3] with H, W > 0; got {x.shape}')
  return x


class ImageWriteError(OSError):
  """An output file that could not be written; str() names it.

  `errno` is that of the underlying OSError (e.g. ENOSPC for a full disk).
  """


def check_writable(path: str, overwrite: bool) -> None:
  """FileExistsError naming `path` when it exists and `overwrite` is off."""
  if os.path.lexists(path) and not overwrite:
    raise FileExistsError(f'{path}: exists; pass --overwrite to replace it')
  if os.path.isdir(path):
    raise FileExistsError(f'{path}: is a directory; will not replace it')


def temp_path(path: str) -> str:
  """`.<name>.tmp-<pid>` in the folder of `path`: where it is written first."""
  parent, name = os.path.split(os.fspath(path))
  return os.path.join(parent, f'.{name}.tmp-{os.getpid()}')


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def _write_error(path: str, error: OSError) -> ImageWriteError:
  """ImageWriteError naming `path`, with the errno and reason of `error`."""
  reason = error.strerror or ' '.join(str(error).split()) or type(
      error).__name__
  out = ImageWriteError(f'{path}: cannot write ({reason})')
  out.errno = error.errno
  return out


class FileGroup:
  """Several output files that appear together or not at all.

    with imageio.FileGroup(overwrite=False) as group:
      group.png('out/a_f1.png', frame)
      group.gif('out/a.gif', frames)

  Each file is written to `temp_path(path)`; leaving the block without an
  error renames every temporary into place (`paths` lists them). An error
  while writing or renaming removes the temporaries and any file this group
  already renamed, then propagates; a failed write raises ImageWriteError
  naming the file. Existing files are refused unless `overwrite` (checked
  when a file is added and again before renaming).
  """

  def __init__(self, overwrite: bool = False):
    self.overwrite = overwrite
    self.paths = []
    self._pending = []  # (temporary, final path)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.commit()
    else:
      self.discard()
    return False

  def png(self, path: str, image) -> str:
    """Adds `image` f32[H,W,3] in [0,1] (or uint8) as an 8-bit RGB PNG."""
    x = _check_hw3(image, 'image')
    return self._write(path, Image.fromarray(x, 'RGB'), 'PNG')

  def gif(self, path: str, frames, *, duration_ms: int = 120,
          timeline: bool = True, max_side: int | None = None) -> str:
    """Adds an animated GIF of `frames`; see `write_gif`."""
    ims = _gif_images(frames, timeline, max_side)
    return self._write(path, ims[0], 'GIF', save_all=True,
                       append_images=ims[1:], loop=0,
                       duration=int(duration_ms), disposal=1)

  def _write(self, path: str, im, fmt: str, **kw) -> str:
    path = os.fspath(path)
    check_writable(path, self.overwrite)
    parent = os.path.dirname(path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    tmp = temp_path(path)
    self._pending.append((tmp, path))  # before saving: a partial file goes too
    try:
      im.save(tmp, format=fmt, **kw)
    except OSError as e:
      raise _write_error(path, e) from None
    return path

  def commit(self) -> list[str]:
    """Renames every temporary into place; returns the final paths."""
    placed, path = [], None
    try:
      for _, path in self._pending:
        check_writable(path, self.overwrite)
      for tmp, path in self._pending:
        os.replace(tmp, path)
        placed.append(path)
    except BaseException as e:
      for p in placed:
        _remove(p)
      self.discard()
      if isinstance(e, OSError) and not isinstance(e, FileExistsError):
        raise _write_error(path, e) from None
      raise
    self.paths.extend(placed)
    self._pending = []
    return placed

  def discard(self) -> None:
    """Removes the temporaries written so far (nothing is renamed)."""
    for tmp, _ in self._pending:
      _remove(tmp)
    self._pending = []


def write_png(path: str, image, *, overwrite: bool = False) -> str:
  """Writes image f32[H,W,3] in [0,1] (or uint8) as an 8-bit RGB PNG."""
  with FileGroup(overwrite) as group:
    return group.png(path, image)


def timeline_bar(width: int, height: int, index: int, total: int
                 ) -> np.ndarray:
  """uint8[height,width,3]: a bar filled to (index+1)/total (white on grey)."""
  bar = np.full((height, width, 3), 64, np.uint8)
  bar[:, :max(1, round(width * (index + 1) / total))] = 255
  return bar


def _bar_height(h: int) -> int:
  return max(2, h // 32)


def fit_size(h: int, w: int, max_h: int | None = None,
             max_w: int | None = None) -> tuple[int, int]:
  """(h, w) scaled down, aspect kept, to fit max_h x max_w (None: no limit).

  Never scales up; each side stays >= 1.
  """
  scale = min(1.0, (max_h or h) / h, (max_w or w) / w)
  if scale >= 1.0:
    return h, w
  return (max(1, min(max_h or h, round(h * scale))),
          max(1, min(max_w or w, round(w * scale))))


def resize(image, size: tuple[int, int]) -> np.ndarray:
  """image [H,W,3] (f32 in [0,1] or uint8) -> uint8[size[0], size[1], 3].

  Lanczos, antialiased when shrinking; the image itself (as uint8) when the
  size is unchanged.
  """
  x = _check_hw3(image, 'image')
  h, w = size
  if x.shape[:2] == (h, w):
    return x
  im = Image.fromarray(x, 'RGB').resize((w, h), Image.Resampling.LANCZOS,
                                        reducing_gap=3.0)
  return np.asarray(im)


def _gif_images(frames, timeline: bool, max_side: int | None) -> list:
  """PIL images of the GIF of `frames` (see `write_gif`)."""
  x = to_uint8(frames)
  if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1 or 0 in x.shape[1:3]:
    raise ValueError(f'frames must be [T,H,W,3] with T >= 1; got {x.shape}')
  t, h, w, _ = x.shape
  if max_side:
    # Leave room for the bar: frame + bar stays within max_side.
    room = max_side - (_bar_height(max_side) if timeline else 0)
    h, w = fit_size(h, w, max(1, room), max_side)
  ims = []
  for i in range(t):
    frame = resize(x[i], (h, w))
    if timeline:
      frame = np.concatenate(
          [frame, timeline_bar(w, _bar_height(h), i, t)], 0)
    ims.append(Image.fromarray(frame, 'RGB'))
  return ims


def write_gif(path: str, frames, *, duration_ms: int = 120,
              timeline: bool = True, overwrite: bool = False,
              max_side: int | None = None) -> str:
  """An animated GIF of frames f32[T,H,W,3] (or uint8) looping forward.

  With `timeline` (default) a bar of max(2, H // 32) px under each frame
  fills up to show the position t/T; it also keeps every one of the T
  frames in the file (Pillow drops a frame identical to the previous one,
  so a static clip would otherwise collapse to one frame). Colours are
  quantised to the GIF palette (256 per frame). `max_side`: frames are
  shrunk (Lanczos) so that the GIF, bar included, is at most this many
  pixels wide and high.
  """
  with FileGroup(overwrite) as group:
    return group.gif(path, frames, duration_ms=duration_ms,
                     timeline=timeline, max_side=max_side)


def make_strip(images: Sequence, pad: int = 2, fill: int = 255, *,
               max_width: int | None = None,
               max_height: int | None = None) -> np.ndarray:
  """Images [H,W,3] (same H, W) side by side, `pad` px of `fill` between.

  Returns uint8[h, n*w + (n-1)*pad, 3] with (h, w) = (H, W), or, with
  `max_width` / `max_height`, each image shrunk (Lanczos, aspect kept) so
  that the strip fits within them.
  """
  if not images:
    raise ValueError('make_strip needs at least one image')
  shapes = {np.shape(im) for im in images}
  if len(shapes) != 1:
    raise ValueError(f'strip images must share one shape; got {sorted(shapes)}')
  n = len(images)
  h, w = np.shape(images[0])[:2]
  if max_width is not None:
    room = (max_width - (n - 1) * pad) // n
    if room < 1:
      raise ValueError(f'max_width={max_width} leaves no room for {n} '
                       f'images with {pad} px gaps')
    h, w = fit_size(h, w, max_height, room)
  elif max_height is not None:
    h, w = fit_size(h, w, max_height, None)
  tiles = [resize(_check_hw3(im, f'strip image {i}'), (h, w))
           for i, im in enumerate(images)]
  gap = np.full((h, pad, 3), fill, np.uint8)
  parts = []
  for i, tile in enumerate(tiles):
    if i and pad:
      parts.append(gap)
    parts.append(tile)
  return np.concatenate(parts, axis=1)


def _visible_files(directory: str) -> list[str]:
  names = sorted(n for n in os.listdir(directory) if not n.startswith('.'))
  return [os.path.join(directory, n) for n in names
          if os.path.isfile(os.path.join(directory, n))]


def is_glob(spec: str) -> bool:
  return any(c in spec for c in GLOB_CHARS)


def expand_inputs(spec: str) -> tuple[list[str], bool]:
  """A file, a directory or a glob -> (sorted files, is_multi).

  A directory gives its non-hidden regular files (not recursive), a glob the
  regular files it matches; `is_multi` is False only for a single file given
  by name. Raises FileNotFoundError naming `spec` when nothing is there.
  """
  spec = os.path.expanduser(os.fspath(spec))
  if os.path.isfile(spec):
    return [spec], False
  if os.path.isdir(spec):
    files = _visible_files(spec)
    if not files:
      raise FileNotFoundError(f'{spec}: directory has no files')
    return files, True
  if is_glob(spec):
    files = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
    if not files:
      raise FileNotFoundError(f'{spec}: glob matches no files')
    return files, True
  raise FileNotFoundError(f'{spec}: no such file or directory')

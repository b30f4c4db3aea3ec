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
`make_strip` (images side by side). Writers refuse to replace an existing
file unless `overwrite=True`, raising `FileExistsError` naming it.

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
    x = np.asarray(im).astype(np.float32) / 255.0
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ImageReadError(f'{path}: unsupported image layout {x.shape} '
                         f'(mode {mode})')
  return np.ascontiguousarray(x)


def to_uint8(images) -> np.ndarray:
  """f32 in [0,1] (clipped) or uint8, any shape -> uint8 (round(x*255))."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f'images must be uint8 or float in [0,1]; got {x.dtype}')
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_hw3(image, name: str) -> np.ndarray:
  x = to_uint8(image)
  if x.ndim != 3 or x.shape[-1] != 3 or 0 in x.shape:
    raise ValueError(f'{name} must be [H,W,3] with H, W > 0; got {x.shape}')
  return x


def check_writable(path: str, overwrite: bool) -> None:
  """FileExistsError naming `path` when it exists and `overwrite` is off."""
  if os.path.lexists(path) and not overwrite:
    raise FileExistsError(f'{path}: exists; pass --overwrite to replace it')
  if os.path.isdir(path):
    raise FileExistsError(f'{path}: is a directory; will not replace it')


def _save(im, path: str, overwrite: bool, **kw) -> str:
  """Writes via a temporary file then renames: no half-written outputs."""
  path = os.fspath(path)
  check_writable(path, overwrite)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  ext = os.path.splitext(path)[1]
  tmp = os.path.join(parent or '.',
                     f'.{os.path.basename(path)}.tmp{os.getpid()}{ext}')
  try:
    im.save(tmp, **kw)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def write_png(path: str, image, *, overwrite: bool = False) -> str:
  """Writes image f32[H,W,3] in [0,1] (or uint8) as an 8-bit RGB PNG."""
  x = _check_hw3(image, 'image')
  return _save(Image.fromarray(x, 'RGB'), path, overwrite)


def timeline_bar(width: int, height: int, index: int, total: int
                 ) -> np.ndarray:
  """uint8[height,width,3]: a bar filled to (index+1)/total (white on grey)."""
  bar = np.full((height, width, 3), 64, np.uint8)
  bar[:, :max(1, round(width * (index + 1) / total))] = 255
  return bar


def write_gif(path: str, frames, *, duration_ms: int = 120,
              timeline: bool = True, overwrite: bool = False) -> str:
  """An animated GIF of frames f32[T,H,W,3] (or uint8) looping forward.

  With `timeline` (default) a bar of max(2, H // 32) px under each frame
  fills up to show the position t/T; it also keeps every one of the T
  frames in the file (Pillow drops a frame identical to the previous one,
  so a static clip would otherwise collapse to one frame). Colours are
  quantised to the GIF palette (256 per frame).
  """
  x = to_uint8(frames)
  if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1 or 0 in x.shape[1:3]:
    raise ValueError(f'frames must be [T,H,W,3] with T >= 1; got {x.shape}')
  t, h, w, _ = x.shape
  if timeline:
    bar_h = max(2, h // 32)
    x = np.stack([np.concatenate([x[i], timeline_bar(w, bar_h, i, t)], 0)
                  for i in range(t)])
  ims = [Image.fromarray(f, 'RGB') for f in x]
  return _save(ims[0], path, overwrite, save_all=True, append_images=ims[1:],
               loop=0, duration=int(duration_ms), disposal=1)


def make_strip(images: Sequence, pad: int = 2, fill: int = 255) -> np.ndarray:
  """Images [H,W,3] (same H, W) side by side, `pad` px of `fill` between.

  Returns uint8[H, n*W + (n-1)*pad, 3].
  """
  tiles = [_check_hw3(im, f'strip image {i}') for i, im in enumerate(images)]
  if not tiles:
    raise ValueError('make_strip needs at least one image')
  shapes = {t.shape for t in tiles}
  if len(shapes) != 1:
    raise ValueError(f'strip images must share one shape; got {sorted(shapes)}')
  h = tiles[0].shape[0]
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

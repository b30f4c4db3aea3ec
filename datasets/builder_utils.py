"""Helpers shared by the TFDS builders: checked PNG reading, common features
and their base class `PngBuilder`.

Everything here works without TensorFlow: PNGs are decoded with Pillow (to
check them) and handed to `tfds.features.Image` as encoded bytes, so TFDS
never has to encode an image with TensorFlow.
"""
import io
import os
import re

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

N_FRAMES = 7  # sharp frames per example, in recorded time order.
_FRAME_NAME = re.compile(r'^(\d{8})\.png$')


def read_png(path, *, what='image'):
  """Reads and fully decodes one 8-bit RGB PNG.

  Args:
    path: file to read (str or path-like).
    what: a few words naming the file's role, used in error messages.

  Returns:
    (data, image): the file's bytes, unchanged, and the decoded
    `uint8[H,W,3]` array.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is not a PNG, does not decode, or is not 8-bit RGB.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: {what} not found (expected an RGB PNG file).')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      fmt, mode = im.format, im.mode
      image = np.asarray(im)
  except Exception as e:  # Pillow raises OSError, SyntaxError, zlib.error, ...
    raise ValueError(f'{path}: {what} does not decode as a PNG ({type(e).__name__}: {e}).') from e
  if fmt != 'PNG':
    raise ValueError(f'{path}: {what} is a {fmt} file; expected PNG.')
  if mode != 'RGB' or image.dtype != np.uint8 or image.ndim != 3:
    raise ValueError(f'{path}: {what} has Pillow mode {mode!r}; expected an 8-bit RGB PNG.')
  return data, image


def encode_png(image):
  """uint8[H,W,3] -> PNG bytes (Pillow, lossless)."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'encode_png expects uint8[H,W,3], got {image.dtype}{list(image.shape)}.')
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  return buf.getvalue()


def check_same_size(ref_path, ref_shape, path, shape):
  """Raises ValueError naming both files when two images differ in size."""
  if tuple(shape[:2]) != tuple(ref_shape[:2]):
    raise ValueError(
        f'{os.fspath(path)}: size {shape[0]}x{shape[1]} (HxW) does not match '
        f'{os.fspath(ref_path)} ({ref_shape[0]}x{ref_shape[1]}); the blurry image and '
        f'its {N_FRAMES} sharp frames must all have the same size.')


def load_example_images(blur_path, sharp_paths):
  """Reads one example's PNGs and checks count and sizes.

  Args:
    blur_path: the blurry image.
    sharp_paths: the sharp frames in recorded time order (exactly 7).

  Returns:
    (blur_bytes, [sharp_bytes] * 7, (H, W)).
  """
  if len(sharp_paths) != N_FRAMES:
    raise ValueError(f'{os.fspath(blur_path)}: {len(sharp_paths)} sharp frames; '
                     f'expected {N_FRAMES}.')
  blur, blur_image = read_png(blur_path, what='blurry image')
  sharp = []
  for k, p in enumerate(sharp_paths):
    data, image = read_png(p, what=f'sharp frame {k}')
    check_same_size(blur_path, blur_image.shape, p, image.shape)
    sharp.append(data)
  return blur, sharp, blur_image.shape[:2]


def base_features(**extra):
  """The FeaturesDict every builder shares, plus dataset-specific `extra` features."""
  image = lambda doc: tfds.features.Image(shape=(None, None, 3), encoding_format='png', doc=doc)
  return tfds.features.FeaturesDict({
      'blur': image('uint8[H,W,3] blurry RGB image.'),
      'sharp': tfds.features.Sequence(
          image('sharp RGB frame'), length=N_FRAMES,
          doc=f'uint8[{N_FRAMES},H,W,3] sharp frames in recorded time order.'),
      'id': tfds.features.Text(doc='stable example id (also the example key).'),
      **extra,
  })


def manual_dir(dl_manager):
  """`dl_manager.manual_dir`, raising FileNotFoundError (not AssertionError) when absent."""
  try:
    return dl_manager.manual_dir
  except AssertionError as e:
    raise FileNotFoundError(str(e)) from e


def require_dir(path, what):
  """Raises FileNotFoundError naming `path` unless it is a directory."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path}: {what} not found (expected a directory).')
  return path


def frame_numbers(folder, expected):
  """The numbers of the `%08d.png` files in `folder` (other files ignored).

  Args:
    folder: the directory to list.
    expected: how the frames are named, for the error message.

  Raises:
    ValueError: naming the first other `.png` (any case) found.
  """
  numbers = []
  for name in os.listdir(folder):
    if not name.lower().endswith('.png'):
      continue
    m = _FRAME_NAME.match(name)
    if not m:
      raise ValueError(f'{os.path.join(folder, name)}: unexpected file name; {expected}')
    numbers.append(int(m.group(1)))
  return numbers


class PngBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders: `base_features(**_extra_features())`, array_record files.

  Subclasses set `HOMEPAGE` and `code_path = epath.Path(__file__)`: TFDS
  4.9.10 resolves `code_path` of a packaged builder through the
  `importlib_resources` backport, which it requires only on Python < 3.9;
  pointing it at the builder's own file avoids that (undeclared) dependency
  (and README.md / CITATIONS.bib are read from beside that file).
  """

  HOMEPAGE = None

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=base_features(**self._extra_features()),
        homepage=self.HOMEPAGE,
    )

  def _extra_features(self):
    """Features beside blur, sharp and id (none here)."""
    return {}

"""Per-example augmentation in pure numpy, identical on all 8 images.

An example is `{'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], ...}` (optionally
`'guidance': int[H,W]` motion classes, see `data/guidance.py`; other keys
pass through unchanged). Every geometric and photometric change is drawn once
per example and applied to the blur and to all 7 sharp frames alike, so the
blur stays the mean of the frames (the colour operations are affine per
pixel, which commutes with the mean, up to clipping and 8-bit rounding).

Each random function takes an `np.random.Generator` (grain's `random_map`
hands one to the transform) and nothing else is random.

`augment(example, rng, crop=..., config=AugmentConfig())` applies, in order:
  1. crop: random crop to `crop` (or, with `config.affine`, a random affine
     warp -- rotation, scale, translation, the same for all 8 images --
     sampled directly on the crop grid, mirror padding at the borders);
  2. horizontal flip with probability 1/2 (`config.hflip`);
  3. time reversal of the 7 frames with probability `config.reverse_time`
     (False = never, the default; True = 1/2; or a probability);
  4. colour jitter: brightness, contrast, saturation factors drawn from
     [1 - x, 1 + x] (mild by default);
  5. Gaussian noise with standard deviation `config.noise_std` (in [0,1]
     units, independent per image and pixel; off by default).
The official H training used affine and Gaussian-noise augmentation: both
are offered, both are off by default.

Guidance maps follow the geometry: nearest-neighbour warps, and their classes
are remapped on a flip (`guidance.hflip_guidance`) and on time reversal
(`guidance.reverse_guidance`).
"""
import dataclasses
import math

import numpy as np

from hypercut_jax.data import guidance as guidance_lib

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Augmentation settings (defaults: flip + mild colour jitter).

  hflip: mirror left-right with probability 1/2.
  brightness, contrast, saturation: maximum relative change (>= 0).
  affine: warp with a random rotation (+-max_rotate degrees), scale
    (1 +- max_scale) and translation (+-max_translate of the crop side).
  noise_std: Gaussian noise std in [0,1] units (0 = off).
  reverse_time: False (never), True (probability 1/2) or a probability.
  """
  hflip: bool = True
  brightness: float = 0.1
  contrast: float = 0.1
  saturation: float = 0.1
  affine: bool = False
  max_rotate: float = 5.0
  max_scale: float = 0.05
  max_translate: float = 0.05
  noise_std: float = 0.0
  reverse_time: bool | float = False

  def __post_init__(self):
    for name in ('brightness', 'contrast', 'saturation', 'max_rotate',
                 'max_scale', 'max_translate', 'noise_std'):
      if getattr(self, name) < 0:
        raise ValueError(f'augment.{name}={getattr(self, name)}; must be >= 0')
    for name in ('brightness', 'contrast', 'saturation', 'max_scale'):
      if getattr(self, name) >= 1:
        raise ValueError(f'augment.{name}={getattr(self, name)}; must be < 1')
    p = reverse_probability(self.reverse_time)
    if not 0 <= p <= 1:
      raise ValueError(f'augment.reverse_time={self.reverse_time}; must be a '
                       'bool or a probability in [0, 1]')


def reverse_probability(reverse_time) -> float:
  """False -> 0, True -> 0.5, a number -> itself."""
  if isinstance(reverse_time, (bool, np.bool_)):
    return 0.5 if reverse_time else 0.0
  return float(reverse_time)


def _check(example) -> tuple[int, int]:
  """Validates an example's image shapes; returns (H, W)."""
  for key in ('blur', 'sharp'):
    if key not in example:
      raise ValueError(f'example has no {key!r} (keys: {sorted(example)})')
  blur, sharp = example['blur'], example['sharp']
  if blur.ndim != 3 or blur.shape[-1] != 3:
    raise ValueError(f'example["blur"] must be [H,W,3]; got {blur.shape}')
  if sharp.ndim != 4 or sharp.shape[1:] != blur.shape:
    raise ValueError(f'example["sharp"] must be [T,H,W,3] with H,W of the blur '
                     f'{blur.shape}; got {sharp.shape}')
  if 'guidance' in example and example['guidance'].shape != blur.shape[:2]:
    raise ValueError(f'example["guidance"] must be [H,W] = {blur.shape[:2]}; '
                     f'got {example["guidance"].shape}')
  return blur.shape[0], blur.shape[1]


def _crop_size(crop, h: int, w: int) -> tuple[int, int]:
  """crop: None (full), int or (h, w) -> (ch, cw), checked against (h, w)."""
  if crop is None:
    return h, w
  ch, cw = (crop, crop) if np.isscalar(crop) else tuple(crop)
  ch, cw = int(ch), int(cw)
  if ch < 1 or cw < 1 or ch > h or cw > w:
    raise ValueError(f'crop={(ch, cw)} does not fit images of size {(h, w)}')
  return ch, cw


def _map_images(example, fn_image, fn_guidance=None) -> dict:
  """Applies fn_image to blur and sharp (and fn_guidance to guidance)."""
  out = dict(example)
  out['blur'] = fn_image(example['blur'])
  out['sharp'] = fn_image(example['sharp'])
  if 'guidance' in example:
    out['guidance'] = (fn_guidance or fn_image)(example['guidance'])
  return out


def crop_at(example, top: int, left: int, crop) -> dict:
  """Crops all images to `crop` = (ch, cw) at (top, left)."""
  ch, cw = crop
  return _map_images(example, lambda x: x[..., top:top + ch, left:left + cw, :],
                     lambda g: g[top:top + ch, left:left + cw])


def center_crop(example, crop) -> dict:
  """Centre crop of all images to `crop` (int, (h, w) or None = unchanged)."""
  h, w = _check(example)
  ch, cw = _crop_size(crop, h, w)
  return crop_at(example, (h - ch) // 2, (w - cw) // 2, (ch, cw))


def random_crop(example, rng: np.random.Generator, crop) -> dict:
  """Random crop (uniform offset) of all images to `crop`, the same offset."""
  h, w = _check(example)
  ch, cw = _crop_size(crop, h, w)
  top = int(rng.integers(h - ch + 1))
  left = int(rng.integers(w - cw + 1))
  return crop_at(example, top, left, (ch, cw))


def hflip(example) -> dict:
  """Mirrors all images left-right (guidance classes remapped)."""
  _check(example)
  return _map_images(
      example, lambda x: x[..., ::-1, :],
      lambda g: guidance_lib.hflip_guidance(g[:, ::-1]))


def reverse_time(example) -> dict:
  """Reverses the order of the sharp frames (the blur is unchanged)."""
  _check(example)
  out = dict(example)
  out['sharp'] = example['sharp'][::-1]
  if 'guidance' in example:
    out['guidance'] = guidance_lib.reverse_guidance(example['guidance'])
  return out


def _mirror(c: np.ndarray, n: int) -> np.ndarray:
  """Reflects coordinates into [0, n-1] (no edge repeat)."""
  if n == 1:
    return np.zeros_like(c)
  period = 2 * (n - 1)
  c = np.abs(c) % period
  return np.minimum(c, period - c)


def warp(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """Bilinear resampling of u8[..., H, W, C] at real coordinates f32[h, w].

  The same coordinates for every leading index; mirror boundary. Returns
  f32[..., h, w, C] in the input's value range.
  """
  h, w = images.shape[-3:-1]
  ys, xs = _mirror(ys, h), _mirror(xs, w)
  y0 = np.minimum(np.floor(ys), max(h - 2, 0)).astype(np.intp)
  x0 = np.minimum(np.floor(xs), max(w - 2, 0)).astype(np.intp)
  fy = (ys - y0)[..., None].astype(np.float32)
  fx = (xs - x0)[..., None].astype(np.float32)
  y1 = np.minimum(y0 + 1, h - 1)
  x1 = np.minimum(x0 + 1, w - 1)
  img = images.astype(np.float32)
  top = img[..., y0, x0, :] * (1 - fx) + img[..., y0, x1, :] * fx
  bot = img[..., y1, x0, :] * (1 - fx) + img[..., y1, x1, :] * fx
  return top * (1 - fy) + bot * fy


def affine_coordinates(rng: np.random.Generator, size, crop, *,
                       max_rotate: float, max_scale: float,
                       max_translate: float) -> tuple[np.ndarray, np.ndarray]:
  """Source coordinates f32[ch, cw] (y, x) of a random affine crop.

  A random crop window of size `crop` inside `size` = (H, W), then rotated
  by U(-max_rotate, max_rotate) degrees and scaled by U(1 - max_scale,
  1 + max_scale) about its centre, and shifted by U(-max_translate,
  max_translate) times the crop side.
  """
  h, w = size
  ch, cw = crop
  cy = rng.uniform((ch - 1) / 2, h - 1 - (ch - 1) / 2)
  cx = rng.uniform((cw - 1) / 2, w - 1 - (cw - 1) / 2)
  angle = math.radians(rng.uniform(-max_rotate, max_rotate))
  scale = rng.uniform(1 - max_scale, 1 + max_scale)
  cy += rng.uniform(-max_translate, max_translate) * ch
  cx += rng.uniform(-max_translate, max_translate) * cw
  py, px = np.mgrid[0:ch, 0:cw].astype(np.float64)
  py -= (ch - 1) / 2
  px -= (cw - 1) / 2
  cos, sin = scale * math.cos(angle), scale * math.sin(angle)
  ys = cy + sin * px + cos * py
  xs = cx + cos * px - sin * py
  return ys.astype(np.float32), xs.astype(np.float32)


def random_affine(example, rng: np.random.Generator, crop, *,
                  max_rotate: float = 5.0, max_scale: float = 0.05,
                  max_translate: float = 0.05) -> dict:
  """Random affine crop of all 8 images (bilinear; guidance nearest).

  Returns uint8 images of size `crop` (blur and sharp), like `random_crop`.
  """
  h, w = _check(example)
  ch, cw = _crop_size(crop, h, w)
  ys, xs = affine_coordinates(rng, (h, w), (ch, cw), max_rotate=max_rotate,
                              max_scale=max_scale, max_translate=max_translate)
  to_u8 = lambda x: np.clip(np.rint(x), 0, 255).astype(np.uint8)
  def nearest(g):
    iy = np.clip(np.rint(_mirror(ys, h)), 0, h - 1).astype(np.intp)
    ix = np.clip(np.rint(_mirror(xs, w)), 0, w - 1).astype(np.intp)
    return g[iy, ix]
  return _map_images(example, lambda x: to_u8(warp(x, ys, xs)), nearest)


def color_jitter(images: np.ndarray, rng: np.random.Generator, *,
                 brightness: float, contrast: float,
                 saturation: float) -> np.ndarray:
  """f32[N,H,W,3] in [0,1] -> same, one set of factors for all N images.

  brightness: x * b; contrast: m + c (x - m) with m the mean luma of image 0
  (the blur when called from `augment`); saturation: l + s (x - l) with l
  each pixel's luma. Factors are uniform in [1 - x, 1 + x]. No clipping.
  """
  b = rng.uniform(1 - brightness, 1 + brightness)
  c = rng.uniform(1 - contrast, 1 + contrast)
  s = rng.uniform(1 - saturation, 1 + saturation)
  x = images * np.float32(b)
  m = np.float32(float((x[0] @ _LUMA).mean()))
  x = m + np.float32(c) * (x - m)
  luma = (x @ _LUMA)[..., None]
  return luma + np.float32(s) * (x - luma)


def gaussian_noise(images: np.ndarray, rng: np.random.Generator,
                   std: float) -> np.ndarray:
  """f32[...] + N(0, std^2), independent per element (no clipping)."""
  return images + rng.normal(0.0, std, images.shape).astype(np.float32)


def augment(example, rng: np.random.Generator, *, crop,
            config: AugmentConfig = AugmentConfig()) -> dict:
  """The training augmentation (see the module docstring for the order).

  example: {'blur': u8[H,W,3], 'sharp': u8[T,H,W,3], optional 'guidance':
  int[H,W], other keys untouched}. crop: int, (h, w) or None (full size).
  Returns the same structure, uint8 images of the crop size.
  """
  h, w = _check(example)
  size = _crop_size(crop, h, w)
  if config.affine:
    out = random_affine(example, rng, size, max_rotate=config.max_rotate,
                        max_scale=config.max_scale,
                        max_translate=config.max_translate)
  else:
    out = random_crop(example, rng, size)
  if config.hflip and rng.uniform() < 0.5:
    out = hflip(out)
  if rng.uniform() < reverse_probability(config.reverse_time):
    out = reverse_time(out)
  jitter = config.brightness or config.contrast or config.saturation
  if jitter or config.noise_std:
    t = out['sharp'].shape[0]
    x = np.concatenate([out['blur'][None], out['sharp']]).astype(np.float32)
    x *= np.float32(1 / 255)
    if jitter:
      x = color_jitter(x, rng, brightness=config.brightness,
                       contrast=config.contrast, saturation=config.saturation)
    if config.noise_std:
      x = gaussian_noise(x, rng, config.noise_std)
    x = (np.clip(x, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    out['blur'], out['sharp'] = x[0], x[1:1 + t]
  else:
    out['blur'] = np.ascontiguousarray(out['blur'])
    out['sharp'] = np.ascontiguousarray(out['sharp'])
  return out

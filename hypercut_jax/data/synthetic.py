"""The embedded synthetic Blur2Vid dataset: no download, deterministic.

Record `i` of split `s` is a pure function of `(seed, s, i)`: all its random
numbers come from `np.random.default_rng([seed, split_id, i])` (train = 0,
test = 1), so the same record has the same bytes in every process and call,
and the two splits are disjoint by construction (different random streams).
Per-pixel work uses only +, *, floor, sqrt and table look-ups (the few
sines/exponentials per record go through Python's `math`), so no
CPU-dispatched SIMD transcendental can change a byte between machines.

Scene. A photograph shipped inside the scikit-image wheel (the files in
`skimage/data/`, read directly from disk, never `skimage.data.<name>()`, which
may try to download) is seen through a moving camera, and 1 to
`max_sprites` textured sprites (ellipses / rounded rectangles cut from another
photograph, soft-edged) move over it on their own trajectories. With the
exposure time `t` in [-1, 1]:

  camera: texture coordinate of screen pixel p (relative to the image centre)
          = c0 + s0 * (exp(z t) R(th0 + w t + w2 t^2) p + v t + a t^2)
  sprite: centre m0 + u t + b t^2, angle ph0 + q t

(quadratic, so the motion is not linear in time). At the default
`motion_scale=1` the camera translates by 6-20% of the image side over the
exposure (4-13 px at 64 px), turns by up to 6 degrees and zooms by up to 10%;
sprites travel 10-30% of the side. Sizes are relative, so a 256 px record
shows the same scene as a 64 px one at a higher resolution (textures are
pre-filtered into a 2x mip pyramid to avoid aliasing).

Frames. The exposure is cut into 7 equal intervals; each sharp frame is the
mean of `sub_frames` renders at the centres of sub-intervals of its interval
(so frames carry a little blur of their own). The blur is computed from the
7 *quantised* sharp frames (`blur_from_sharp`), so it is consistent with
exactly the frames a model sees:

  blur_space='srgb'    (default) blur = round(mean of the 8-bit sRGB values);
  blur_space='linear'  sRGB gamma decoded, averaged in linear light,
                       re-encoded and rounded in sRGB (the sub-frame
                       averaging and bilinear sampling happen in linear light
                       as well).

Ambiguity. After the trajectories are drawn, a fair bit from the record's
generator reverses time (frames in reversed order). The blur, a symmetric
mean, is the same either way, so the blur alone cannot tell the direction;
the frames can (frame 0 and frame 6 differ by the whole displacement). The
drawn bit is recorded in the id:

  {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3] (time order),
   'id': 'synthetic/<split>/<index:07d>/<fwd|rev>'}

Speed (benchmarks/data_throughput.py): about 8 / 40 / 110 ms of CPU per
64 / 128 / 256 px record on the shared 2-core test machine (vectorised
bilinear sampling of all sub-frame renders at once, planar layout; sprites
only inside their per-frame screen box). Textures are loaded lazily and
cached per process (uint8 + float32 planar, at most ~60 MB per blur space),
never at import time.
"""
import functools
import math
import os

import numpy as np

SPLITS = {'train': 0, 'test': 1}
BLUR_SPACES = ('srgb', 'linear')
NUM_FRAMES = 7

# Colour photographs and grey photographs (tinted at render time) that ship
# inside the scikit-image wheel. Mostly-black, binary and synthetic images
# (hubble, retina, horse, color wheel, chessboards, text) are left out.
_COLOUR = ('astronaut.png', 'chelsea.png', 'coffee.png', 'ihc.png',
           'motorcycle_left.png', 'rocket.jpg')
_GREY = ('brick.png', 'grass.png', 'gravel.png', 'camera.png', 'coins.png',
         'moon.png')
TEXTURES = _COLOUR + _GREY
_MAX_LEVEL = 3


def _skimage_data_dir() -> str:
  import skimage  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(skimage.__file__), 'data')


@functools.lru_cache(maxsize=None)
def _texture(name: str, level: int) -> np.ndarray:
  """u8[Ht,Wt,3]: bundled image `name` box-downsampled by 2**level."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(_skimage_data_dir(), name)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'scikit-image sample image {path!r} is missing; the synthetic dataset '
        f'needs the images bundled in the scikit-image wheel: {TEXTURES}')
  if level == 0:
    with Image.open(path) as im:
      out = np.array(im.convert('RGB'), np.uint8)
  else:
    p = _texture(name, level - 1).astype(np.uint16)
    p = p[:p.shape[0] // 2 * 2, :p.shape[1] // 2 * 2]
    out = ((p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2] + 2)
           // 4).astype(np.uint8)
  out.setflags(write=False)   # shared by every record of this process
  return out


@functools.lru_cache(maxsize=None)
def _texture_values(name: str, level: int, blur_space: str) -> np.ndarray:
  """f32[3,Ht,Wt] (planar): `_texture` decoded into the averaging space."""
  out = np.ascontiguousarray(decode(_texture(name, level), blur_space).transpose(2, 0, 1))
  out.setflags(write=False)
  return out


def srgb_to_linear(x):
  """sRGB-encoded values in [0,1] -> linear light in [0,1] (IEC 61966-2-1)."""
  x = np.asarray(x, np.float64)
  return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
  """Linear light in [0,1] -> sRGB-encoded values in [0,1]."""
  x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
  return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


@functools.lru_cache(maxsize=None)
def _decode_lut(blur_space: str) -> np.ndarray:
  """f32[256]: 8-bit code -> value in the averaging space."""
  codes = np.arange(256) / 255.0
  if blur_space == 'linear':
    codes = srgb_to_linear(codes)
  return codes.astype(np.float32)


@functools.lru_cache(maxsize=None)
def _encode_thresholds(blur_space: str) -> np.ndarray:
  """f32[255]: decision levels; code k for values in [thr[k-1], thr[k])."""
  mids = (np.arange(255) + 0.5) / 255.0
  if blur_space == 'linear':
    mids = srgb_to_linear(mids)
  return mids.astype(np.float32)


def encode(x: np.ndarray, blur_space: str = 'srgb') -> np.ndarray:
  """Values in the averaging space (f32[...], [0,1]) -> u8[...] sRGB codes.

  Rounds to the nearest code in sRGB (half up); linear values go through a
  table search, so no per-pixel transcendental function is evaluated and the
  bytes are identical across machines.
  """
  if blur_space == 'srgb':
    return (np.clip(x, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
  return np.searchsorted(_encode_thresholds(blur_space), x, side='right'
                         ).astype(np.uint8)


def decode(x: np.ndarray, blur_space: str = 'srgb') -> np.ndarray:
  """u8[...] sRGB codes -> f32[...] values in the averaging space."""
  return _decode_lut(blur_space)[x]


def blur_from_sharp(sharp: np.ndarray, blur_space: str = 'srgb') -> np.ndarray:
  """u8[7,H,W,3] -> u8[H,W,3]: mean of the frames in `blur_space`, rounded."""
  return encode(decode(sharp, blur_space).mean(axis=0), blur_space)


def _mirror(c: np.ndarray, n: int) -> np.ndarray:
  """Reflects coordinates into [0, n-1] (mirror without edge repeat), n >= 2."""
  if c.min() >= 0 and c.max() <= n - 1:
    return c
  period = 2 * (n - 1)
  c = np.abs(c) % period
  return np.minimum(c, period - c)


def _axis(c: np.ndarray, n: int):
  """Base index in [0, n-2] and fraction in [0, 1] for bilinear weights."""
  c = _mirror(c, n)
  i = np.minimum(np.floor(c), n - 2)
  return i.astype(np.intp), c - i


def _bilinear(tex: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
  """Samples planar f32[3,Ht,Wt] at real coordinates y, x: f32[...] -> f32[3,...].

  Coordinates outside the texture are mirrored back into it. Planar layout
  keeps numpy's inner loops long (an RGB-last layout is several times slower).
  """
  ht, wt = tex.shape[1:]
  flat = tex.reshape(3, -1)
  y0, fy = _axis(y, ht)
  x0, fx = _axis(x, wt)
  i00 = y0 * wt + x0
  take = lambda i: np.take(flat, i, axis=1, mode='clip')
  a, b = take(i00), take(i00 + 1)
  top = a + (b - a) * fx
  a, b = take(i00 + wt), take(i00 + wt + 1)
  bot = a + (b - a) * fx
  return top + (bot - top) * fy


def _unit(rng) -> np.ndarray:
  a = rng.uniform(0, 2 * math.pi)
  return np.array([math.cos(a), math.sin(a)])


def _level_for(scale: float) -> tuple[int, float]:
  """Mip level and remaining scale (in [1, 2) unless clipped) for `scale`."""
  level = int(np.clip(math.floor(math.log2(max(scale, 1e-6))), 0, _MAX_LEVEL))
  return level, scale / 2 ** level


def _colour_gain(rng, name: str) -> np.ndarray:
  """Per-channel gain: a random tint for grey textures, mild for colour ones."""
  if name in _GREY:
    return rng.uniform(0.55, 1.0, size=3)
  return rng.uniform(0.9, 1.1, size=3)


def _draw_camera(rng, h: int, w: int, motion_scale: float) -> dict:
  side = min(h, w)
  name = TEXTURES[rng.integers(len(TEXTURES))]
  tex_h, tex_w = _texture(name, 0).shape[:2]
  # The view spans 25-70% of the texture's short side.
  frac = rng.uniform(0.25, 0.7)
  s0 = frac * min(tex_h, tex_w) / side
  level, s_eff = _level_for(s0)
  th, tw = _texture(name, level).shape[:2]
  half_extent = 0.5 * math.hypot(h, w) * s_eff * 1.2
  cy = rng.uniform(min(half_extent, th / 2), max(th - half_extent, th / 2))
  cx = rng.uniform(min(half_extent, tw / 2), max(tw - half_extent, tw / 2))
  speed = 0.5 * rng.uniform(0.06, 0.20) * side * motion_scale
  v = speed * _unit(rng)
  acc = rng.uniform(-0.5, 0.5) * speed * _unit(rng)
  return dict(
      name=name, level=level, scale=s_eff, centre=np.array([cx, cy]),
      gain=_colour_gain(rng, name), v=v, acc=acc,
      th0=rng.uniform(-math.pi, math.pi) if name in _GREY else
      rng.uniform(-0.15, 0.15),
      w=math.radians(rng.uniform(-3, 3)) * motion_scale,
      w2=math.radians(rng.uniform(-1, 1)) * motion_scale,
      zoom=rng.uniform(-0.05, 0.05) * motion_scale)


def _draw_sprite(rng, h: int, w: int, motion_scale: float, avoid: str) -> dict:
  side = min(h, w)
  others = [n for n in TEXTURES if n != avoid]
  name = others[rng.integers(len(others))]
  tex_h, tex_w = _texture(name, 0).shape[:2]
  radius = rng.uniform(0.12, 0.25) * side
  aspect = rng.uniform(0.6, 1.0)
  ab = radius * np.array([1.0, aspect])
  if rng.uniform() < 0.5:
    ab = ab[::-1]
  power = (2, 4, 8)[rng.integers(3)]   # ellipse .. rounded rectangle
  # Texture: the sprite shows 15-40% of the texture's short side.
  s0 = rng.uniform(0.15, 0.4) * min(tex_h, tex_w) / (2 * radius)
  level, s_eff = _level_for(s0)
  th, tw = _texture(name, level).shape[:2]
  span = radius * s_eff
  origin = np.array([rng.uniform(span, max(tw - span, span + 1)),
                     rng.uniform(span, max(th - span, span + 1))])
  speed = 0.5 * rng.uniform(0.10, 0.30) * side * motion_scale
  u = speed * _unit(rng)
  return dict(
      name=name, level=level, scale=s_eff, origin=origin,
      gain=_colour_gain(rng, name) * rng.uniform(0.85, 1.15),
      ab=ab, power=power,
      m0=np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h]),
      u=u, acc=rng.uniform(-0.5, 0.5) * speed * _unit(rng),
      ph0=rng.uniform(-math.pi, math.pi),
      q=math.radians(rng.uniform(-15, 15)) * motion_scale)


def _times(sub_frames: int) -> np.ndarray:
  """f64[7*sub_frames]: sub-interval centres of the exposure [-1, 1]."""
  k = np.arange(NUM_FRAMES)[:, None]
  j = np.arange(sub_frames)[None, :]
  return (-1 + 2 * (k + (j + 0.5) / sub_frames) / NUM_FRAMES).reshape(-1)


def _scalar_map(fn, x: np.ndarray) -> np.ndarray:
  """fn on each element with Python's libm (no CPU-dependent SIMD paths)."""
  return np.array([fn(float(v)) for v in x], np.float64)


def _render_camera(cam: dict, t: np.ndarray, px, py, space: str) -> np.ndarray:
  """f32[3,N,H,W] background renders at times t: f64[N]."""
  ang = cam['th0'] + cam['w'] * t + cam['w2'] * t ** 2
  zoom = _scalar_map(math.exp, cam['zoom'] * t) * cam['scale']
  cos = (zoom * _scalar_map(math.cos, ang)).astype(np.float32)
  sin = (zoom * _scalar_map(math.sin, ang)).astype(np.float32)
  off = (cam['centre'][None] + cam['scale'] * (
      cam['v'][None] * t[:, None] + cam['acc'][None] * t[:, None] ** 2))
  off = off.astype(np.float32)
  c = lambda a: a[:, None, None]
  tx = c(cos) * px - c(sin) * py + c(off[:, 0])
  ty = c(sin) * px + c(cos) * py + c(off[:, 1])
  out = _bilinear(_texture_values(cam['name'], cam['level'], space), ty, tx)
  return out * cam['gain'].astype(np.float32)[:, None, None, None]


def _render_sprite(sp: dict, t: np.ndarray, gx, gy, frames, space: str,
                   groups: int) -> None:
  """Composites one sprite over `frames` (f32[3,N,H,W], in place).

  The N time samples are processed in `groups` consecutive chunks (one per
  sharp frame), each only inside the screen box the sprite touches then.
  """
  centre = sp['m0'][None] + sp['u'][None] * t[:, None] + sp['acc'][None] * t[:, None] ** 2
  ang = sp['ph0'] + sp['q'] * t
  cos_all = _scalar_map(math.cos, ang).astype(np.float32)
  sin_all = _scalar_map(math.sin, ang).astype(np.float32)
  a, b = (float(v) for v in sp['ab'])
  reach = math.hypot(a, b) + 2          # covers the corners at any angle
  tex = _texture_values(sp['name'], sp['level'], space)
  s = np.float32(sp['scale'])
  gain = sp['gain'].astype(np.float32)[:, None, None, None]
  h, w = frames.shape[2:]
  c = lambda v: np.asarray(v, np.float32)[:, None, None]
  for idx in np.array_split(np.arange(len(t)), groups):
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    cen = centre[lo:hi]
    y0 = int(np.clip(math.floor(cen[:, 1].min() - reach), 0, h))
    y1 = int(np.clip(math.ceil(cen[:, 1].max() + reach) + 1, 0, h))
    x0 = int(np.clip(math.floor(cen[:, 0].min() - reach), 0, w))
    x1 = int(np.clip(math.ceil(cen[:, 0].max() + reach) + 1, 0, w))
    if y0 >= y1 or x0 >= x1:
      continue
    dx = gx[None, y0:y1, x0:x1] - c(cen[:, 0])
    dy = gy[None, y0:y1, x0:x1] - c(cen[:, 1])
    cos, sin = c(cos_all[lo:hi]), c(sin_all[lo:hi])
    qx = cos * dx + sin * dy            # body coordinates (pixels)
    qy = cos * dy - sin * dx
    ux, uy = np.abs(qx / a), np.abs(qy / b)
    for _ in range({2: 1, 4: 2, 8: 3}[sp['power']]):   # |.|^power
      ux, uy = ux * ux, uy * uy
    rho = ux + uy
    for _ in range({2: 1, 4: 2, 8: 3}[sp['power']]):   # (.)^(1/power)
      rho = np.sqrt(rho)
    # Roughly one pixel of anti-aliased edge.
    alpha = np.clip((1 - rho) * min(a, b) + 0.5, 0, 1)
    colour = _bilinear(tex, sp['origin'][1] + s * qy, sp['origin'][0] + s * qx)
    region = frames[:, lo:hi, y0:y1, x0:x1]
    frames[:, lo:hi, y0:y1, x0:x1] = region + alpha * (colour * gain - region)


def render(seed: int, split: str, index: int, *, size=(64, 64),
           blur_space: str = 'srgb', sub_frames: int = 3, max_sprites: int = 3,
           motion_scale: float = 1.0, reverse: bool | None = None) -> dict:
  """Renders record `index` of `split` (see the module docstring).

  reverse: None draws the direction from the record's generator (the
  dataset's behaviour); True/False forces it (the rest of the record is
  unchanged, which shows that both directions give the same blur).
  Returns {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}.
  """
  h, w = size
  rng = np.random.default_rng([seed, SPLITS[split], index])
  flip = bool(rng.integers(2))          # drawn first: independent of the rest
  if reverse is not None:
    flip = bool(reverse)
  cam = _draw_camera(rng, h, w, motion_scale)
  sprites = [_draw_sprite(rng, h, w, motion_scale, cam['name'])
             for _ in range(int(rng.integers(1, max_sprites + 1)))]
  t = _times(sub_frames)
  gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
  px = gx - np.float32((w - 1) / 2)
  py = gy - np.float32((h - 1) / 2)
  frames = _render_camera(cam, t, px, py, blur_space)
  for sp in sprites:
    _render_sprite(sp, t, gx, gy, frames, blur_space, NUM_FRAMES)
  frames = frames.reshape(3, NUM_FRAMES, sub_frames, h, w).mean(axis=2)
  sharp = np.ascontiguousarray(encode(frames, blur_space).transpose(1, 2, 3, 0))
  if flip:
    sharp = sharp[::-1].copy()
  return {'blur': blur_from_sharp(sharp, blur_space),
          'sharp': sharp,
          'id': f'synthetic/{split}/{index:07d}/{"rev" if flip else "fwd"}'}


class SyntheticBlur2Vid:
  """grain `RandomAccessDataSource` of synthetic blur/sharp examples.

  Args:
    split: 'train' or 'test'.
    seed: non-negative int; with `split` and the index it fixes each record.
    num_records: length of the split.
    size: (H, W) of the records, each >= 8.
    blur_space: 'srgb' (default) or 'linear' (see the module docstring).
    sub_frames: renders averaged into each sharp frame (>= 1).
    max_sprites: sprites per record are drawn from 1..max_sprites.
    motion_scale: multiplies every displacement, rotation and zoom.

  `source[i]` -> {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}.
  Picklable (for grain worker processes); holds no arrays.
  """

  def __init__(self, split: str, *, seed: int, num_records: int,
               size=(64, 64), blur_space: str = 'srgb', sub_frames: int = 3,
               max_sprites: int = 3, motion_scale: float = 1.0):
    if split not in SPLITS:
      raise ValueError(f'split={split!r}; known: {sorted(SPLITS)}')
    if not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f'seed={seed!r}; must be a non-negative int')
    if num_records < 0:
      raise ValueError(f'num_records={num_records}; must be >= 0')
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 8:
      raise ValueError(f'size={size}; must be (H, W) with H, W >= 8')
    if blur_space not in BLUR_SPACES:
      raise ValueError(f'blur_space={blur_space!r}; known: {BLUR_SPACES}')
    if sub_frames < 1:
      raise ValueError(f'sub_frames={sub_frames}; must be >= 1')
    if max_sprites < 1:
      raise ValueError(f'max_sprites={max_sprites}; must be >= 1')
    if motion_scale < 0:
      raise ValueError(f'motion_scale={motion_scale}; must be >= 0')
    self.split = split
    self.seed = int(seed)
    self.num_records = int(num_records)
    self.size = size
    self.blur_space = blur_space
    self.sub_frames = int(sub_frames)
    self.max_sprites = int(max_sprites)
    self.motion_scale = float(motion_scale)

  def __len__(self) -> int:
    return self.num_records

  def __getitem__(self, index) -> dict:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f'record {index} out of range [0, {self.num_records})')
    return render(self.seed, self.split, index, size=self.size,
                  blur_space=self.blur_space, sub_frames=self.sub_frames,
                  max_sprites=self.max_sprites, motion_scale=self.motion_scale)

  def __repr__(self) -> str:
    return (f'SyntheticBlur2Vid(split={self.split!r}, seed={self.seed}, '
            f'num_records={self.num_records}, size={self.size}, '
            f'blur_space={self.blur_space!r}, sub_frames={self.sub_frames}, '
            f'max_sprites={self.max_sprites}, motion_scale={self.motion_scale})')

"""The embedded synthetic Blur2Vid dataset: no download, deterministic.

Record `i` of split `s` is a pure function of `(seed, s, i)` and the
source's settings (size, blur_space, sub_frames, max_sprites, motion_scale,
view_scale, scenes): all its random numbers come from
`np.random.default_rng([seed, split_id, i])` (train = 0, test = 1), so the
same record has the same bytes in every process and call, and the two splits
are disjoint by construction (different random streams and, by default,
different photos: see "Scene split").
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
          = c0 + G s0 (exp(z t) R(th0 + w t + w2 t^2) p + v t + a t^2)
  sprite: centre m0 + u t + b t^2, angle ph0 + q t

(quadratic, so the motion is not linear in time). `motion_scale` multiplies
every displacement, rotation and zoom; at the default `motion_scale=1` the
camera translates by 6-20% of the image side over the exposure (4-13 px at
64 px; frame 0 to frame 6 see 6/7 of it), turns by up to 6 degrees and zooms
by up to 10%; sprites travel 10-30% of the side (6-19 px at 64 px) and turn
by up to 30 degrees. So `motion_scale=m` moves the camera by about 4m-13m px
at 64 px, and `motion_scale=0` gives 7 equal frames (the blur is the sharp
image). Sizes are relative, so a 256 px record shows the same scene as a
64 px one at a higher resolution (textures are pre-filtered into a 2x mip
pyramid to avoid aliasing).

Content scale. The camera's view spans 25-70% of its photo's short side and
each sprite shows 15-40% of its photo's short side, both times `view_scale`
(default 1): at 64 px and view_scale 1 a photo is shown 2-6x smaller than
its pixels (dense detail in every pixel); `view_scale=0.12` shows 3-8% of
the photo, magnified 1.5-4x (smooth content with clear edges, as a
high-resolution sensor sees a scene at pixel level). Record sizes do not
change; the draws are the same, so only the texture scale differs.

Scene split. `scenes='split'` (default): train records draw the background
and every sprite from TRAIN_TEXTURES only, test records from TEST_TEXTURES
only, so the test split measures generalisation to photos never seen in
training (`motorcycle_left` / `motorcycle_right`, one scene from two
viewpoints, stay on the same side):

  train (10): astronaut, coffee, motorcycle_left, motorcycle_right, retina
              (colour); brick, camera, cell, grass, moon (grey)
  test (5):   chelsea, ihc, rocket (colour); coins, gravel (grey)

`scenes='shared'` draws both splits from all 15 photos (the old protocol,
where train and test show the same photos; for comparison only). Left out:
already-blurred (clock_motion), mostly black or synthetic images (hubble,
phantom, horse, colour wheel, chessboards, logo), text/page and images under
128 px (microaneurysms).

Augmentation (from the record's generator, for every photo a record uses):
one of the 8 flips/transposes G of the texture (about the view centre, a
coordinate transform: free), a per-channel gain (a random tint for grey
photos, +-10% for colour ones, sprites +-15% more), a random channel order
for colour photos and a tone curve x -> x + k (sqrt(x) - x) (k > 0,
brightens like gamma ~0.7) or x + |k| (x^2 - x) (k < 0, darkens like gamma
~1.4), k in [-0.5, 0.5], applied to the sampled texture values before they
are averaged.

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

Ambiguity. A fair bit, the first draw of the record's generator (so
independent of the scene), reverses time (frames in reversed order). The
blur, a symmetric mean, is the same either way, so the blur alone cannot
tell the direction; the frames can (frame 0 and frame 6 differ by the whole
displacement). The drawn bit is recorded in the id:

  {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3] (time order),
   'id': 'synthetic/<split>/<index:07d>/<fwd|rev>'}

Speed (benchmarks/data_throughput.py): about 8 / 40 / 110 ms of CPU per
64 / 128 / 256 px record on the shared 2-core test machine (vectorised
bilinear sampling of all sub-frame renders at once, planar layout; sprites
only inside their per-frame screen box; the augmentation adds ~5%).
Textures are loaded lazily and cached per process (uint8 + float32 planar,
at most ~85 MB per blur space, ~65 MB of it the train photos), never at
import time.
"""
import functools
import math
import os

import numpy as np

SPLITS = {'train': 0, 'test': 1}
SCENES = ('split', 'shared')
BLUR_SPACES = ('srgb', 'linear')
NUM_FRAMES = 7

# Photographs that ship inside the scikit-image wheel, split by scene (see
# the module docstring). Grey photos are tinted at render time.
TRAIN_TEXTURES = ('astronaut.png', 'coffee.png', 'motorcycle_left.png',
                  'motorcycle_right.png', 'retina.jpg', 'brick.png',
                  'camera.png', 'cell.png', 'grass.png', 'moon.png')
TEST_TEXTURES = ('chelsea.png', 'ihc.png', 'rocket.jpg', 'coins.png',
                 'gravel.png')
TEXTURES = TRAIN_TEXTURES + TEST_TEXTURES
_GREY = frozenset({'brick.png', 'camera.png', 'cell.png', 'grass.png',
                   'moon.png', 'coins.png', 'gravel.png'})
_MAX_LEVEL = 3
# The camera's view (at most 70% of the photo's short side, times
# view_scale) must stay inside the photo.
MAX_VIEW_SCALE = 1.4
_PRESHRINK = {'retina.jpg': 1}   # 1411 px, soft: 705 px is plenty


def _skimage_data_dir() -> str:
  import skimage  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(skimage.__file__), 'data')


def _half(p: np.ndarray) -> np.ndarray:
  """u8[H,W,3] -> u8[H//2,W//2,3]: 2x2 box mean, rounded."""
  p = p[:p.shape[0] // 2 * 2, :p.shape[1] // 2 * 2].astype(np.uint16)
  return ((p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2] + 2)
          // 4).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _texture(name: str, level: int) -> np.ndarray:
  """u8[Ht,Wt,3]: bundled image `name` box-downsampled by 2**level.

  Level 0 of a photo in `_PRESHRINK` is already halved that many times (a
  large, soft photo: keeps the cache small).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(_skimage_data_dir(), name)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'scikit-image sample image {path!r} is missing; the synthetic dataset '
        f'needs the images bundled in the scikit-image wheel: {TEXTURES}')
  if level == 0:
    with Image.open(path) as im:
      out = np.array(im.convert('RGB'), np.uint8)
    for _ in range(_PRESHRINK.get(name, 0)):
      out = _half(out)
  else:
    out = _half(_texture(name, level - 1))
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


def photos(split: str, scenes: str = 'split') -> tuple[str, ...]:
  """The photos records of `split` draw from (see the module docstring)."""
  if scenes not in SCENES:
    raise ValueError(f'scenes={scenes!r}; known: {SCENES}')
  if split not in SPLITS:
    raise ValueError(f'split={split!r}; known: {sorted(SPLITS)}')
  if scenes == 'shared':
    return TEXTURES
  return TRAIN_TEXTURES if split == 'train' else TEST_TEXTURES


def _colour_gain(rng, name: str) -> np.ndarray:
  """Per-channel gain: a random tint for grey textures, mild for colour ones."""
  if name in _GREY:
    return rng.uniform(0.55, 1.0, size=3)
  return rng.uniform(0.9, 1.1, size=3)


def _draw_look(rng, name: str) -> dict:
  """Random appearance of one use of photo `name` (module docstring).

  d4: (transpose, sx, sy): texture offsets (dx, dy) from the view centre
  are read at (sx dy, sy dx) if transpose else (sx dx, sy dy); perm: the
  channel order; tone: k of the tone curve; gain: f64[3].
  """
  k = int(rng.integers(8))
  perm = (0, 1, 2) if name in _GREY else tuple(
      int(c) for c in rng.permutation(3))
  return dict(d4=(bool(k & 4), 1 - 2 * (k & 1), 1 - (k & 2)), perm=perm,
              tone=float(rng.uniform(-0.5, 0.5)), gain=_colour_gain(rng, name))


def _draw_camera(rng, h: int, w: int, motion_scale: float,
                 pool: tuple[str, ...], view_scale: float = 1.0) -> dict:
  side = min(h, w)
  name = pool[rng.integers(len(pool))]
  tex_h, tex_w = _texture(name, 0).shape[:2]
  # The view spans 25-70% of the texture's short side (times view_scale).
  frac = rng.uniform(0.25, 0.7) * view_scale
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
      v=v, acc=acc,
      th0=rng.uniform(-math.pi, math.pi) if name in _GREY else
      rng.uniform(-0.15, 0.15),
      w=math.radians(rng.uniform(-3, 3)) * motion_scale,
      w2=math.radians(rng.uniform(-1, 1)) * motion_scale,
      zoom=rng.uniform(-0.05, 0.05) * motion_scale, **_draw_look(rng, name))


def _draw_sprite(rng, h: int, w: int, motion_scale: float,
                 pool: tuple[str, ...], avoid: str,
                 view_scale: float = 1.0) -> dict:
  side = min(h, w)
  others = [n for n in pool if n != avoid]
  name = others[rng.integers(len(others))]
  tex_h, tex_w = _texture(name, 0).shape[:2]
  radius = rng.uniform(0.12, 0.25) * side
  aspect = rng.uniform(0.6, 1.0)
  ab = radius * np.array([1.0, aspect])
  if rng.uniform() < 0.5:
    ab = ab[::-1]
  power = (2, 4, 8)[rng.integers(3)]   # ellipse .. rounded rectangle
  # Texture: the sprite shows 15-40% of the texture's short side (times
  # view_scale).
  s0 = (rng.uniform(0.15, 0.4) * view_scale * min(tex_h, tex_w)
        / (2 * radius))
  level, s_eff = _level_for(s0)
  th, tw = _texture(name, level).shape[:2]
  span = radius * s_eff
  origin = np.array([rng.uniform(span, max(tw - span, span + 1)),
                     rng.uniform(span, max(th - span, span + 1))])
  speed = 0.5 * rng.uniform(0.10, 0.30) * side * motion_scale
  u = speed * _unit(rng)
  look = _draw_look(rng, name)
  look['gain'] = look['gain'] * rng.uniform(0.85, 1.15)
  return dict(
      name=name, level=level, scale=s_eff, origin=origin,
      ab=ab, power=power,
      m0=np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h]),
      u=u, acc=rng.uniform(-0.5, 0.5) * speed * _unit(rng),
      ph0=rng.uniform(-math.pi, math.pi),
      q=math.radians(rng.uniform(-15, 15)) * motion_scale, **look)


def _times(sub_frames: int) -> np.ndarray:
  """f64[7*sub_frames]: sub-interval centres of the exposure [-1, 1]."""
  k = np.arange(NUM_FRAMES)[:, None]
  j = np.arange(sub_frames)[None, :]
  return (-1 + 2 * (k + (j + 0.5) / sub_frames) / NUM_FRAMES).reshape(-1)


def _scalar_map(fn, x: np.ndarray) -> np.ndarray:
  """fn on each element with Python's libm (no CPU-dependent SIMD paths)."""
  return np.array([fn(float(v)) for v in x], np.float64)


def _shade(x: np.ndarray, look: dict) -> np.ndarray:
  """f32[3,...] texture samples -> gain * tone curve, channels reordered.

  Output channel c is source channel look['perm'][c] through the tone
  curve x + k (sqrt(x) - x) (k >= 0) or x + |k| (x^2 - x) (k < 0), times
  gain[c]. Samples are >= 0 (bilinear weights of values in [0, 1]).
  """
  k = abs(look['tone'])
  out = np.empty_like(x)
  for c, src in enumerate(look['perm']):
    v, o = x[src], out[c]
    if look['tone'] >= 0:
      np.sqrt(v, out=o)
    else:
      np.multiply(v, v, out=o)
    o *= np.float32(k * look['gain'][c])
    o += v * np.float32((1 - k) * look['gain'][c])
  return out


def _render_camera(cam: dict, t: np.ndarray, px, py, space: str) -> np.ndarray:
  """f32[3,N,H,W] background renders at times t: f64[N]."""
  ang = cam['th0'] + cam['w'] * t + cam['w2'] * t ** 2
  zoom = _scalar_map(math.exp, cam['zoom'] * t) * cam['scale']
  cos = zoom * _scalar_map(math.cos, ang)
  sin = zoom * _scalar_map(math.sin, ang)
  off = cam['scale'] * (
      cam['v'][None] * t[:, None] + cam['acc'][None] * t[:, None] ** 2)
  # Texture offset b from the view centre, one row per axis: (d/dpx,
  # d/dpy, constant); then G: transposed and/or mirrored rows (exact).
  rows = [(cos, -sin, off[:, 0]), (sin, cos, off[:, 1])]
  transpose, sx, sy = cam['d4']
  if transpose:
    rows = rows[::-1]
  c = lambda a: np.asarray(a, np.float32)[:, None, None]
  (xx, xy, x0), (yx, yy, y0) = [
      (c(sign * r[0]), c(sign * r[1]), c(base + sign * r[2]))
      for r, sign, base in zip(rows, (sx, sy), cam['centre'])]
  tx = xx * px + xy * py + x0
  ty = yx * px + yy * py + y0
  out = _bilinear(_texture_values(cam['name'], cam['level'], space), ty, tx)
  return _shade(out, cam)


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
  transpose, sx, sy = sp['d4']
  s_x, s_y = np.float32(sp['scale'] * sx), np.float32(sp['scale'] * sy)
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
    ax, ay = (qy, qx) if transpose else (qx, qy)   # G: flip / transpose
    colour = _shade(_bilinear(tex, sp['origin'][1] + s_y * ay,
                              sp['origin'][0] + s_x * ax), sp)
    region = frames[:, lo:hi, y0:y1, x0:x1]
    frames[:, lo:hi, y0:y1, x0:x1] = region + alpha * (colour - region)


def scene(seed: int, split: str, index: int, *, size=(64, 64),
          max_sprites: int = 3, motion_scale: float = 1.0,
          scenes: str = 'split', view_scale: float = 1.0) -> dict:
  """What record `index` of `split` shows, drawn without rendering it.

  A pure function of its arguments (the same draws `render` makes):
  {'reverse': bool (time reversed), 'camera': dict, 'sprites': [dict]};
  each dict has the photo 'name', its look ('d4', 'perm', 'tone', 'gain')
  and its trajectory (module docstring).
  """
  h, w = size
  pool = photos(split, scenes)
  rng = np.random.default_rng([seed, SPLITS[split], index])
  reverse = bool(rng.integers(2))       # drawn first: independent of the rest
  cam = _draw_camera(rng, h, w, motion_scale, pool, view_scale)
  sprites = [_draw_sprite(rng, h, w, motion_scale, pool, cam['name'],
                          view_scale)
             for _ in range(int(rng.integers(1, max_sprites + 1)))]
  return {'reverse': reverse, 'camera': cam, 'sprites': sprites}


def render(seed: int, split: str, index: int, *, size=(64, 64),
           blur_space: str = 'srgb', sub_frames: int = 3, max_sprites: int = 3,
           motion_scale: float = 1.0, scenes: str = 'split',
           reverse: bool | None = None, view_scale: float = 1.0) -> dict:
  """Renders record `index` of `split` (see the module docstring).

  reverse: None draws the direction from the record's generator (the
  dataset's behaviour); True/False forces it (the rest of the record is
  unchanged, which shows that both directions give the same blur).
  Returns {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}.
  """
  h, w = size
  drawn = scene(seed, split, index, size=size, max_sprites=max_sprites,
                motion_scale=motion_scale, scenes=scenes,
                view_scale=view_scale)
  flip = drawn['reverse'] if reverse is None else bool(reverse)
  t = _times(sub_frames)
  gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
  px = gx - np.float32((w - 1) / 2)
  py = gy - np.float32((h - 1) / 2)
  frames = _render_camera(drawn['camera'], t, px, py, blur_space)
  for sp in drawn['sprites']:
    _render_sprite(sp, t, gx, gy, frames, blur_space, NUM_FRAMES)
  frames = frames.reshape(3, NUM_FRAMES, sub_frames, h, w).mean(axis=2)
  sharp = np.ascontiguousarray(encode(frames, blur_space).transpose(1, 2, 3, 0))
  if flip:
    sharp = sharp[::-1].copy()
  return {'blur': blur_from_sharp(sharp, blur_space),
          'sharp': sharp,
          'id': f'synthetic/{split}/{index:07d}/{"rev" if flip else "fwd"}'}


def _is_int(x) -> bool:
  """True for Python / numpy integers, False for bools and everything else."""
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x) -> bool:
  """True for Python / numpy ints and floats, False for bools and the rest."""
  return (isinstance(x, (int, float, np.integer, np.floating))
          and not isinstance(x, bool))


class SyntheticBlur2Vid:
  """grain `RandomAccessDataSource` of synthetic blur/sharp examples.

  Args:
    split: 'train' or 'test'.
    seed: non-negative int; with `split` and the index it fixes each record.
    num_records: length of the split.
    size: (H, W) of the records, each >= 8.
    blur_space: 'srgb' (default) or 'linear' (see the module docstring).
    sub_frames: renders averaged into each sharp frame (int >= 1).
    max_sprites: sprites per record are drawn from 1..max_sprites (int >= 1).
    motion_scale: multiplies every displacement, rotation and zoom (finite
      >= 0; 1: the camera moves 4-13 px over the exposure at 64 px).
    view_scale: multiplies the share of its photo the camera and each
      sprite show (finite, > 0, <= 1.4; 1: the camera sees 25-70% of the
      photo's short side; smaller magnifies the photos). See "Content
      scale".
    scenes: 'split' (default: train and test records show disjoint photos,
      TRAIN_TEXTURES / TEST_TEXTURES) or 'shared' (both draw from all).

  `source[i]` -> {'blur': u8[H,W,3], 'sharp': u8[7,H,W,3], 'id': str}.
  Picklable (for grain worker processes); holds no arrays.
  """

  def __init__(self, split: str, *, seed: int, num_records: int,
               size=(64, 64), blur_space: str = 'srgb', sub_frames: int = 3,
               max_sprites: int = 3, motion_scale: float = 1.0,
               scenes: str = 'split', view_scale: float = 1.0):
    if split not in SPLITS:
      raise ValueError(f'split={split!r}; known: {sorted(SPLITS)}')
    if not _is_int(seed) or seed < 0:
      raise ValueError(f'seed={seed!r}; must be a non-negative int')
    if num_records < 0:
      raise ValueError(f'num_records={num_records}; must be >= 0')
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 8:
      raise ValueError(f'size={size}; must be (H, W) with H, W >= 8')
    if blur_space not in BLUR_SPACES:
      raise ValueError(f'blur_space={blur_space!r}; known: {BLUR_SPACES}')
    if not _is_int(sub_frames) or sub_frames < 1:
      raise ValueError(f'sub_frames={sub_frames!r}; must be an int >= 1')
    if not _is_int(max_sprites) or max_sprites < 1:
      raise ValueError(f'max_sprites={max_sprites!r}; must be an int >= 1')
    if not _is_real(motion_scale) or not 0 <= motion_scale < math.inf:
      raise ValueError(f'motion_scale={motion_scale!r}; must be a finite '
                       'number >= 0')
    if scenes not in SCENES:
      raise ValueError(f'scenes={scenes!r}; known: {SCENES}')
    if not _is_real(view_scale) or not 0 < view_scale <= MAX_VIEW_SCALE:
      raise ValueError(f'view_scale={view_scale!r}; must be a number in '
                       f'(0, {MAX_VIEW_SCALE}]')
    self.split = split
    self.seed = int(seed)
    self.num_records = int(num_records)
    self.size = size
    self.blur_space = blur_space
    self.sub_frames = int(sub_frames)
    self.max_sprites = int(max_sprites)
    self.motion_scale = float(motion_scale)
    self.scenes = scenes
    self.view_scale = float(view_scale)

  def __len__(self) -> int:
    return self.num_records

  def __getitem__(self, index) -> dict:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f'record {index} out of range [0, {self.num_records})')
    return render(self.seed, self.split, index, size=self.size,
                  blur_space=self.blur_space, sub_frames=self.sub_frames,
                  max_sprites=self.max_sprites, motion_scale=self.motion_scale,
                  scenes=self.scenes, view_scale=self.view_scale)

  def __repr__(self) -> str:
    return (f'SyntheticBlur2Vid(split={self.split!r}, seed={self.seed}, '
            f'num_records={self.num_records}, size={self.size}, '
            f'blur_space={self.blur_space!r}, sub_frames={self.sub_frames}, '
            f'max_sprites={self.max_sprites}, '
            f'motion_scale={self.motion_scale}, scenes={self.scenes!r}, '
            f'view_scale={self.view_scale})')

"""Motion guidance of Animation-from-Blur (Zhong et al., ECCV 2022), in numpy.

The guidance is a per-pixel class map in {0, 1, 2, 3, 4}: 0 = static, 1..4 =
one of four motion directions. It is the authors' "trend" quantisation of a
2D optical flow `v = (vx, vy)` (pixels per frame step, x to the right, y
down, i.e. image coordinates):

  * static when `|v| < threshold` (authors: 0.5 px per step at full
    resolution);
  * otherwise the signs `(sx, sy)` of the two components, with motion along
    an axis assigned to a diagonal exactly as the authors do:
    `(+1, 0) -> (+1, -1)`, `(-1, 0) -> (-1, +1)`, `(0, +1) -> (+1, +1)`,
    `(0, -1) -> (-1, -1)`.

Class convention (the authors' `guidance2label`; the B-Aist++ `trend+_avg`
arrays store `(sx, sy)` in {-1, 0, 1}):

  class  (sx, sy)   motion                  pure axis motion mapped here
  0      ( 0,  0)   static                  -
  1      (+1, -1)   right and up            right
  2      (-1, -1)   left and up             up
  3      (-1, +1)   left and down           left
  4      (+1, +1)   right and down          down

Reversing time negates the flow, so a pixel's class becomes the opposite
quadrant: 1 <-> 3, 2 <-> 4, static stays static (`reverse_guidance`). The
axis rule above is itself odd under negation, so this holds exactly, axis
motion included. Mirroring the image negates one component only
(`hflip_guidance`, `vflip_guidance`); there the axis rule is not symmetric
(pure right motion is class 1, its mirror image, pure left, is class 3, but
flipping class 1 gives class 2), an inherent property of the authors'
quantisation, kept as is.

For datasets without precomputed guidance, `compute_guidance` estimates the
flow from the 7 sharp frames by block matching (our own method; the authors
used RAFT on consecutive frames and averaged the flows):

  1. frames -> grey (ITU-R 601 luma), optionally average-pooled by
     `downsample`;
  2. integer displacement of each pixel of the middle frame x_3 to frame x_6
     (`d_f`) and to frame x_0 (`d_b`): coarse-to-fine block matching,
     minimising the mean squared difference over a `window` x `window` box
     plus `penalty * |d|^2` (so flat, ambiguous regions stay at zero motion),
     full search of +-`radius` on the coarsest of `levels` pyramid levels
     (binomial blur + decimation), +-2 refinement on each finer level (reach
     `(radius + 2) * 2**(levels-1) - 2` pixels of the pooled frames; 14 px
     at the defaults);
  3. velocity per frame step `v = (d_f - d_b) / 6` (times `downsample`), on
     the grid of the middle frame; swapping frames 0 and 6 (time reversal)
     negates `v` exactly, so `compute_guidance(x[::-1]) ==
     reverse_guidance(compute_guidance(x))` holds bit for bit;
  4. quantised as above with `threshold` (default 0.5 px per step, the
     authors' value) and a component dead zone of one matching quantum
     (`downsample / 6` px per step: a 1 px disagreement between d_f and d_b
     on the other axis, i.e. integer-matching noise, counts as no motion on
     that axis, so a horizontal translation stays in class 1 or 3).
"""
import numpy as np

STATIC = 0
NUM_CLASSES = 5

# (sx, sy) of each class; row index = class.
CLASS_SIGNS = np.array([[0, 0], [1, -1], [-1, -1], [-1, 1], [1, 1]], np.int8)
_REVERSE = np.array([0, 3, 4, 1, 2], np.int32)   # (sx, sy) -> (-sx, -sy)
_HFLIP = np.array([0, 2, 1, 4, 3], np.int32)     # (sx, sy) -> (-sx, sy)
_VFLIP = np.array([0, 4, 3, 2, 1], np.int32)     # (sx, sy) -> (sx, -sy)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Block matching scores this many candidate pixels at once (bounds memory).
_CHUNK_ELEMS = 1 << 20


def _check_labels(guidance, name='guidance'):
  g = np.asarray(guidance)
  if not np.issubdtype(g.dtype, np.integer):
    raise ValueError(f'{name} must be an integer class map; got dtype {g.dtype}')
  if g.size and (g.min() < 0 or g.max() >= NUM_CLASSES):
    raise ValueError(f'{name} classes must be in [0, {NUM_CLASSES - 1}]; '
                     f'got range [{g.min()}, {g.max()}]')
  return g


def reverse_guidance(guidance):
  """Class map of the time-reversed clip: i32[...] -> i32[...] (1<->3, 2<->4)."""
  return _REVERSE[_check_labels(guidance)]


def hflip_guidance(guidance):
  """Class map after mirroring left-right (sx negated): 1<->2, 3<->4.

  Apply it together with the flip of the image itself (this maps classes,
  the caller flips the array).
  """
  return _HFLIP[_check_labels(guidance)]


def vflip_guidance(guidance):
  """Class map after mirroring top-bottom (sy negated): 1<->4, 2<->3."""
  return _VFLIP[_check_labels(guidance)]


def guidance_to_trend(guidance):
  """i32[...] classes -> i8[..., 2] authors' trend (sx, sy) in {-1, 0, 1}."""
  return CLASS_SIGNS[_check_labels(guidance)]


def trend_to_guidance(trend):
  """Authors' trend f32|i8[..., 2] with (sx, sy) in {-1, 0, 1} -> i32[...].

  This reads the B-Aist++ `trend+_avg/*.npy` arrays (saved at half the image
  resolution: resize with `resize_guidance`). Any pair other than the five
  of the class table raises ValueError.
  """
  t = np.asarray(trend)
  if t.ndim < 1 or t.shape[-1] != 2:
    raise ValueError(f'trend must be [..., 2] (sx, sy); got shape {t.shape}')
  sx = np.rint(t[..., 0]).astype(np.int32)
  sy = np.rint(t[..., 1]).astype(np.int32)
  if np.any(np.abs(t - np.stack([sx, sy], -1)) > 1e-6):
    raise ValueError('trend values must be -1, 0 or 1')
  code = (sx + 1) * 3 + (sy + 1)   # 0..8
  table = np.full(9, -1, np.int32)
  for c, (a, b) in enumerate(CLASS_SIGNS):
    table[(a + 1) * 3 + (b + 1)] = c
  labels = table[code]
  if np.any(labels < 0):
    bad = np.unique(np.stack([sx, sy], -1)[labels < 0], axis=0)
    raise ValueError(f'trend has (sx, sy) pairs outside the class table: {bad.tolist()}')
  return labels


def velocity_to_guidance(flow, threshold: float = 0.5, axis_tol: float = 0.0):
  """Quantise a flow into guidance classes (the authors' rule).

  flow: f32[..., 2], (vx, vy) in pixels per frame step, channel 0 = x (right),
  channel 1 = y (down). threshold: |v| below it is static (pixels per step).
  axis_tol: a component with |v_c| <= axis_tol counts as 0 before the axis
  rule (authors: 0; `compute_guidance` sets it to the matching quantum so
  that +-1 px noise on the other axis cannot flip a horizontal motion
  between classes 1 and 4).
  Returns i32[...] in {0..4}.
  """
  v = np.asarray(flow, np.float32)
  if v.ndim < 1 or v.shape[-1] != 2:
    raise ValueError(f'flow must be [..., 2] (vx, vy); got shape {v.shape}')
  if threshold < 0 or axis_tol < 0:
    raise ValueError(f'threshold and axis_tol must be >= 0; got {threshold}, {axis_tol}')
  vx, vy = v[..., 0], v[..., 1]
  speed = np.hypot(vx, vy)
  sx = np.where(np.abs(vx) > axis_tol, np.sign(vx), 0).astype(np.int32)
  sy = np.where(np.abs(vy) > axis_tol, np.sign(vy), 0).astype(np.int32)
  moving = (speed >= threshold) & ((sx != 0) | (sy != 0))
  # Axis motion goes to a diagonal (authors' rule; odd under negation).
  sx, sy = np.where(sx == 0, sy, sx), np.where(sy == 0, -sx, sy)
  labels = np.where(sx > 0, np.where(sy < 0, 1, 4), np.where(sy < 0, 2, 3))
  return np.where(moving, labels, STATIC).astype(np.int32)


def resize_guidance(guidance, size):
  """Nearest-neighbour resize of a class map, i32[..., h, w] -> i32[..., H, W].

  Source index floor(i * h / H), as OpenCV's INTER_NEAREST (the authors
  upsample the half-resolution trend maps this way).
  """
  g = _check_labels(guidance)
  if g.ndim < 2:
    raise ValueError(f'guidance must be [..., h, w]; got shape {g.shape}')
  out_h, out_w = size
  if out_h < 1 or out_w < 1:
    raise ValueError(f'size must be positive; got {size}')
  h, w = g.shape[-2:]
  rows = np.minimum((np.arange(out_h) * h) // out_h, h - 1)
  cols = np.minimum((np.arange(out_w) * w) // out_w, w - 1)
  return g[..., rows[:, None], cols[None, :]].astype(np.int32)


def _to_grey(frames):
  """u8|f32[..., H, W, 3] -> f32[..., H, W] in [0,1]."""
  x = np.asarray(frames)
  scale = 255.0 if x.dtype == np.uint8 else 1.0
  return (x.astype(np.float32) / scale) @ _LUMA


def _pool2(x):
  """Average-pool by 2 on the last two axes (edge-padding odd sides)."""
  h, w = x.shape[-2:]
  x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, h % 2), (0, w % 2)], mode='edge')
  return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2]
                 + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


def _pyr_down(x):
  """Binomial [1,4,6,4,1]/16 blur (edge padding) then keep every 2nd pixel."""
  k = np.array([1, 4, 6, 4, 1], np.float32) / 16
  p = np.pad(x, ((2, 2), (2, 2)), mode='edge')
  h, w = x.shape
  p = sum(k[i] * p[i:i + h] for i in range(5))
  p = sum(k[i] * p[:, i:i + w] for i in range(5))
  return p[::2, ::2]


def _box_mean(x, k):
  """Mean over a k x k box centred on each pixel (edge padding).

  x: f32[..., H, W] (the box runs over the last two axes) -> f32[..., H, W].
  """
  r = k // 2
  lead = [(0, 0)] * (x.ndim - 2)
  p = np.pad(x, lead + [(r + 1, r), (r + 1, r)], mode='edge').astype(np.float64)
  p[..., 0, :] = 0.0
  p[..., :, 0] = 0.0
  c = p.cumsum(-2).cumsum(-1)
  h, w = x.shape[-2:]
  s = (c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w]
       + c[..., :h, :w])
  return (s / (k * k)).astype(np.float32)


def _shift(img, dy, dx):
  """out[p] = img[p + (dy, dx)], clamped at the borders.

  img: [H, W]; dy, dx: ints (-> [H, W]) or i64[K] arrays (-> [K, H, W]).
  """
  h, w = img.shape
  dy, dx = np.asarray(dy), np.asarray(dx)
  ys = np.clip(np.arange(h) + dy[..., None], 0, h - 1)
  xs = np.clip(np.arange(w) + dx[..., None], 0, w - 1)
  return img[ys[..., :, None], xs[..., None, :]]


def _offsets(r):
  """Square of integer offsets, zero first, then by growing |d| (ties kept)."""
  o = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
  return sorted(o, key=lambda d: (d[0] ** 2 + d[1] ** 2, d))


def _search(ref, tgt, base, radius, window, penalty, scale):
  """Per pixel, the displacement d with |d - base|_inf <= radius minimising
  box-mean squared difference + penalty * |d * scale|^2.

  Every candidate displacement is scored with one constant shift over the
  whole image (so the box sum compares like with like), then kept only at
  the pixels whose search range contains it. Candidates are visited by
  growing |d| and only a strictly lower cost wins: ties go to small motion.
  """
  h, w = ref.shape
  code = lambda d: (d[..., 0] + (1 << 20)) * (1 << 21) + (d[..., 1] + (1 << 20))
  bases = np.unique(code(base))
  bases = np.stack([bases // (1 << 21) - (1 << 20), bases % (1 << 21) - (1 << 20)], -1)
  cands = (bases[:, None] + np.array(_offsets(radius))[None]).reshape(-1, 2)
  _, first = np.unique(code(cands), return_index=True)
  cands = cands[first]
  order = np.lexsort((cands[:, 1], cands[:, 0], (cands ** 2).sum(1)))
  cands = cands[order]
  best_cost = np.full((h, w), np.inf, np.float32)
  best = base.copy()
  # Candidates in chunks of a few million pixels; within a chunk the first
  # minimum wins (np.argmin), across chunks only a strictly lower cost: the
  # same choice as visiting the candidates one by one in this order.
  chunk = max(1, _CHUNK_ELEMS // (h * w))
  for start in range(0, len(cands), chunk):
    dy, dx = cands[start:start + chunk].T
    diff = _shift(tgt, dy, dx) - ref
    pen = (penalty * ((dy * scale) ** 2 + (dx * scale) ** 2).astype(np.float64))
    cost = _box_mean(diff * diff, window) + pen.astype(np.float32)[:, None, None]
    ok = ((np.abs(base[None, ..., 0] - dy[:, None, None]) <= radius)
          & (np.abs(base[None, ..., 1] - dx[:, None, None]) <= radius))
    cost = np.where(ok, cost, np.float32(np.inf))
    k = np.argmin(cost, axis=0)
    low = np.take_along_axis(cost, k[None], axis=0)[0]
    better = low < best_cost
    best_cost = np.where(better, low, best_cost)
    best[better] = np.stack([dy[k], dx[k]], -1)[better]
  return best


def block_match(ref, tgt, *, radius: int = 6, window: int = 7, levels: int = 2,
                penalty: float = 1e-6):
  """Integer displacement d with tgt[p + d] ~ ref[p], coarse to fine.

  Pyramid: binomial blur + decimation by 2 per level; full search of
  +-radius on the coarsest level, +-2 around the doubled estimate on each
  finer one.

  ref, tgt: f32[H, W] grey images. Returns i64[H, W, 2] as (dy, dx) in
  pixels of the input grid. `penalty` is per squared pixel of displacement
  (in units of the mean squared intensity difference); it breaks ties
  towards small motion.
  """
  if ref.shape != tgt.shape or ref.ndim != 2:
    raise ValueError(f'ref and tgt must be equal [H, W]; got {ref.shape}, {tgt.shape}')
  if radius < 1 or window < 1 or window % 2 == 0 or levels < 1:
    raise ValueError(f'need radius >= 1, odd window >= 1, levels >= 1; got '
                     f'radius={radius}, window={window}, levels={levels}')
  refs, tgts = [ref], [tgt]
  for _ in range(levels - 1):
    refs.append(_pyr_down(refs[-1]))
    tgts.append(_pyr_down(tgts[-1]))
  d = None
  for lvl in range(levels - 1, -1, -1):
    r, t = refs[lvl], tgts[lvl]
    if d is None:
      base = np.zeros((*r.shape, 2), np.int64)
      d = _search(r, t, base, radius, window, penalty, 2 ** lvl)
    else:
      base = 2 * np.repeat(np.repeat(d, 2, axis=0), 2, axis=1)[:r.shape[0], :r.shape[1]]
      d = _search(r, t, base, 2, window, penalty, 2 ** lvl)
  return d


def estimate_velocity(sharp, *, radius: int = 6, window: int = 7, levels: int = 2,
                      downsample: int = 1, penalty: float = 1e-6):
  """Per-step motion of the middle frame's pixels from a sharp clip.

  sharp: u8[T,H,W,3] or f32 in [0,1], frames in time order, T odd >= 3.
  Returns f32[H', W', 2], (vx, vy) in full-resolution pixels per frame step
  on the grid of the middle frame pooled by `downsample`
  (H' = ceil(H / downsample)). See the module docstring for the method.
  """
  x = np.asarray(sharp)
  if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 3 or x.shape[0] % 2 == 0:
    raise ValueError(f'sharp must be [T,H,W,3] with odd T >= 3; got {x.shape}')
  if downsample < 1:
    raise ValueError(f'downsample must be >= 1; got {downsample}')
  grey = _to_grey(x[[0, x.shape[0] // 2, -1]])
  factor = 1
  while factor < downsample:
    grey = _pool2(grey)
    factor *= 2
  if factor != downsample:
    raise ValueError(f'downsample must be a power of 2; got {downsample}')
  first, mid, last = grey
  kw = dict(radius=radius, window=window, levels=levels, penalty=penalty)
  d_f = block_match(mid, last, **kw)
  d_b = block_match(mid, first, **kw)
  steps = x.shape[0] - 1
  v = (d_f - d_b).astype(np.float32) * (downsample / steps)   # (vy, vx)
  return v[..., ::-1].copy()   # (vx, vy)


def compute_guidance(sharp, *, threshold: float = 0.5, radius: int = 6,
                     window: int = 7, levels: int = 2, downsample: int = 1,
                     penalty: float = 1e-6):
  """Guidance class map from the sharp frames (block-matching flow, quantised).

  sharp: u8|f32[T,H,W,3] (one clip) or [B,T,H,W,3]; T = 7 in this project.
  Returns i32[H,W] (or i32[B,H,W]) in {0..4}, at full resolution (the
  pooled estimate is resized back with `resize_guidance`).
  """
  x = np.asarray(sharp)
  if x.ndim == 5:
    return np.stack([compute_guidance(c, threshold=threshold, radius=radius,
                                      window=window, levels=levels,
                                      downsample=downsample, penalty=penalty)
                     for c in x])
  v = estimate_velocity(x, radius=radius, window=window, levels=levels,
                        downsample=downsample, penalty=penalty)
  quantum = downsample / (x.shape[0] - 1)   # one pixel of d_f - d_b
  g = velocity_to_guidance(v, threshold, axis_tol=quantum * 1.001)
  if g.shape != x.shape[1:3]:
    g = resize_guidance(g, x.shape[1:3])
  return g

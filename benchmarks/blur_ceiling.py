r"""How much can a simple predictor gain over "copy the blur" on synthetic data?

  python -m benchmarks.blur_ceiling [--motion_scale=1] [--max_sprites=3] \
      [--view_scale=1] [--size=64] [--num_train=600] [--num_test=128] \
      [--kernel=9]

Calibrates the embedded synthetic benchmark (hypercut_jax.data.synthetic):
before asking a network to beat the blur by some margin in a CPU budget,
measure what linear predictors of the blur can do. Each predictor maps the
K x K x 3 blur patch around a pixel (plus a constant) to that pixel's
residual `frame_t - blur` for each of the 7 frames, fitted by ridge least
squares (lambda 1e-3 on the normal equations):

  copy the blur        residual 0 (the baseline row of every results table);
  global linear        one filter bank for the whole train split, frames in
                       stored order (which is reversed at random: the fit
                       can only learn what is order-free);
  global linear,       the same, each training sequence first put in a
  motion-ordered       canonical order by its motion (the global shift
                       between frames 0 and 6 has dx > 0, or dx = 0 and
                       dy > 0), as an ideal ordering network would: what a
                       shift-invariant predictor gains once order is known;
  per-record linear    one filter bank per test record, fitted on that
                       record's own pixels, two-fold (a random half of the
                       pixels fits the bank that predicts the other half,
                       and back): what a linear predictor that knows each
                       record's motion gains. A reference for "motion
                       learned", not a bound on what a network can do (a
                       network is not linear, and it must infer the motion).

Scores are the order-aware per-frame pPSNR of `hypercut_jax.metrics` on the
test split (full records), as gains in dB over copy-the-blur, and pooled (the
mean over frames). The gap between the global and per-record rows is the
part of the gain that needs each record's motion, i.e. what a generator has
to learn. Runs in about a minute at the defaults on 2 CPU cores (numpy).
"""
import argparse
import sys
import time

import numpy as np

from hypercut_jax import metrics
from hypercut_jax.data import synthetic

RIDGE = 1e-3
MAX_SHIFT = 10   # px searched by `motion_order` (each way)


def check_settings(size: int, kernel: int, num_train: int, num_test: int):
  """Raises ValueError naming the flag for settings the fits cannot use."""
  if kernel < 1 or kernel % 2 == 0:
    raise ValueError(f'--kernel={kernel}: must be odd and >= 1')
  if size < max(8, kernel):
    raise ValueError(f'--size={size}: must be >= max(8, --kernel)')
  if num_train < 1 or num_test < 1:
    raise ValueError(f'--num_train={num_train}, --num_test={num_test}: '
                     'both must be >= 1')


def motion_order(sharp: np.ndarray) -> np.ndarray:
  """u8[7,H,W,3] -> the sequence or its reversal, in a canonical order.

  The global integer shift (dx, dy) that best maps frame 0 onto frame 6
  (least squares over the grey images, |dx|, |dy| <= min(MAX_SHIFT, H/4));
  the sequence is reversed when dx < 0, or dx == 0 and dy < 0.
  """
  g = sharp.astype(np.float32).mean(-1)
  h, w = g.shape[1:]
  m = max(1, min(MAX_SHIFT, h // 4, w // 4))
  ref = g[0, m:h - m, m:w - m]
  best = None
  for dy in range(-m, m + 1):
    for dx in range(-m, m + 1):
      err = float(np.mean((ref - g[6, m + dy:h - m + dy, m + dx:w - m + dx])
                          ** 2))
      if best is None or err < best[0]:
        best = (err, dx, dy)
  _, dx, dy = best
  return sharp[::-1] if dx < 0 or (dx == 0 and dy < 0) else sharp


def patches(blur: np.ndarray, kernel: int) -> np.ndarray:
  """f32[H,W,3] -> f32[H*W, K*K*3 + 1]: reflect-padded patches and a 1."""
  r = kernel // 2
  pad = np.pad(blur, ((r, r), (r, r), (0, 0)), mode='reflect')
  win = np.lib.stride_tricks.sliding_window_view(pad, (kernel, kernel), (0, 1))
  h, w = blur.shape[:2]
  feats = win.reshape(h * w, -1)
  return np.concatenate([feats, np.ones((h * w, 1), feats.dtype)], axis=1)


def fit(feats: np.ndarray, residuals: np.ndarray) -> np.ndarray:
  """Ridge least squares: f32[N,F], f32[N,7,3] -> weights f32[F,7,3]."""
  a = feats.T.astype(np.float64) @ feats
  a[np.diag_indices_from(a)] += RIDGE
  b = feats.T.astype(np.float64) @ residuals.reshape(len(feats), -1)
  return np.linalg.solve(a, b).reshape(feats.shape[1], 7, 3).astype(np.float32)


def apply(blur: np.ndarray, weights: np.ndarray, kernel: int) -> np.ndarray:
  """f32[H,W,3] -> f32[7,H,W,3] in [0, 1]: blur + the predicted residuals."""
  h, w = blur.shape[:2]
  res = (patches(blur, kernel) @ weights.reshape(weights.shape[0], -1))
  res = res.reshape(h, w, 7, 3).transpose(2, 0, 1, 3)
  return np.clip(blur[None] + res, 0.0, 1.0)


def _records(split: str, n: int, *, seed, size, motion_scale, max_sprites,
             view_scale):
  out = [synthetic.render(seed, split, i, size=(size, size),
                          motion_scale=motion_scale, max_sprites=max_sprites,
                          view_scale=view_scale)
         for i in range(n)]
  return (np.stack([r['blur'] for r in out]),
          np.stack([r['sharp'] for r in out]))


def _global_fit(blur8, sharp8, kernel, samples, rng):
  n, h, w = blur8.shape[:3]
  feats, res = [], []
  for i in range(n):
    blur = blur8[i].astype(np.float32) / 255
    idx = rng.choice(h * w, size=min(samples, h * w), replace=False)
    feats.append(patches(blur, kernel)[idx])
    sharp = sharp8[i].astype(np.float32).reshape(7, h * w, 3) / 255
    res.append((sharp - blur.reshape(1, h * w, 3))[:, idx].transpose(1, 0, 2))
  return fit(np.concatenate(feats), np.concatenate(res))


def _two_fold(blur, gt, kernel, rng):
  """Per-record fit on one random half of the pixels, scored on the other."""
  h, w = blur.shape[:2]
  feats = patches(blur, kernel)
  res = (gt - blur[None]).reshape(7, h * w, 3).transpose(1, 0, 2)
  half = rng.permutation(h * w) < (h * w) // 2
  pred = np.empty((h * w, 7, 3), np.float32)
  for part in (half, ~half):
    bank = fit(feats[~part], res[~part])
    pred[part] = (feats[part] @ bank.reshape(bank.shape[0], -1)
                  ).reshape(-1, 7, 3)
  return np.clip(blur[None] + pred.transpose(1, 0, 2).reshape(7, h, w, 3),
                 0.0, 1.0)


def ceiling(*, motion_scale=1.0, max_sprites=3, size=64, num_train=600,
            num_test=128, kernel=9, samples=200, seed=0,
            view_scale=1.0) -> dict:
  """{row name: f32[7] mean pPSNR gains over copy-the-blur (dB)} + 'blur'."""
  check_settings(size, kernel, num_train, num_test)
  kw = dict(seed=seed, size=size, motion_scale=motion_scale,
            max_sprites=max_sprites, view_scale=view_scale)
  tr_blur, tr_sharp = _records('train', num_train, **kw)
  te_blur, te_sharp = _records('test', num_test, **kw)
  ordered = np.stack([motion_order(s) for s in tr_sharp])
  rng = np.random.default_rng(seed)
  banks = {'global linear': _global_fit(tr_blur, tr_sharp, kernel, samples, rng),
           'global linear, motion-ordered':
               _global_fit(tr_blur, ordered, kernel, samples, rng)}
  scores = {name: [] for name in ['copy the blur', *banks, 'per-record linear']}
  h = w = size
  for blur8, sharp8 in zip(te_blur, te_sharp):
    blur = blur8.astype(np.float32) / 255
    gt = sharp8.astype(np.float32) / 255
    preds = {'copy the blur': np.repeat(blur[None], 7, axis=0)}
    preds.update({k: apply(blur, b, kernel) for k, b in banks.items()})
    preds['per-record linear'] = _two_fold(blur, gt, kernel, rng)
    for name, pred in preds.items():
      scores[name].append(np.asarray(metrics.sequence_ppsnr(pred, gt)))
  means = {k: np.mean(v, axis=0) for k, v in scores.items()}
  base = means.pop('copy the blur')
  out = {k: v - base for k, v in means.items()}
  out['blur'] = base
  return out


def table(result: dict) -> str:
  """Markdown: copy-the-blur pPSNR, then each row's per-frame gains."""
  head = ('| predictor | ' + ' | '.join(f'frame {i + 1}' for i in range(7))
          + ' | pooled |')
  lines = [head, '|---' * 9 + '|',
           '| copy the blur (pPSNR, dB) | '
           + ' | '.join(f'{x:.2f}' for x in result['blur'])
           + f' | {np.mean(result["blur"]):.2f} |']
  for name, gain in result.items():
    if name == 'blur':
      continue
    lines.append(f'| {name} (gain, dB) | '
                 + ' | '.join(f'{x:+.2f}' for x in gain)
                 + f' | {np.mean(gain):+.2f} |')
  return '\n'.join(lines)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m benchmarks.blur_ceiling',
      description='What linear predictors gain over copy-the-blur on the '
      'synthetic data (see the module docstring).')
  p.add_argument('--motion_scale', type=float, default=1.0,
                 help='data.motion_scale (default 1)')
  p.add_argument('--max_sprites', type=int, default=3,
                 help='data.max_sprites (default 3)')
  p.add_argument('--view_scale', type=float, default=1.0,
                 help='data.view_scale (default 1; the quick start uses 0.12)')
  p.add_argument('--size', type=int, default=64, help='record side in px')
  p.add_argument('--num_train', type=int, default=600,
                 help='train records for the fits')
  p.add_argument('--num_test', type=int, default=128, help='test records scored')
  p.add_argument('--kernel', type=int, default=9, help='patch side K (odd)')
  p.add_argument('--samples', type=int, default=200,
                 help='pixels drawn per train record')
  p.add_argument('--seed', type=int, default=0, help='data.seed')
  return p


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  t0 = time.time()
  try:
    result = ceiling(motion_scale=args.motion_scale,
                     max_sprites=args.max_sprites, view_scale=args.view_scale,
                     size=args.size, num_train=args.num_train,
                     num_test=args.num_test, kernel=args.kernel,
                     samples=args.samples, seed=args.seed)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'synthetic data: motion_scale={args.motion_scale}, '
        f'max_sprites={args.max_sprites}, view_scale={args.view_scale}, '
        f'{args.size} px, {args.num_train} train / {args.num_test} test '
        f'records, {args.kernel}x{args.kernel} patches '
        f'({time.time() - t0:.0f} s)\n')
  print(table(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())

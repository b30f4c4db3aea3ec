"""Reporting: the metric writer, markdown tables, example strips and progress.

Everything here runs on the host. Writers are silent on every process but 0,
so the same code runs unchanged on one CPU and on a pod.

- `MetricWriter(workdir)`: one JSON line per logged step in
  `workdir/metrics.jsonl` (flushed per line), the same scalars mirrored to
  TensorBoard event files in `workdir/tb` (tensorboardX, no TensorFlow), and
  `workdir/config.json`.
- `markdown_table(metrics, stage)`: the results table of an evaluation, next
  to the paper's numbers for the ordering stage and to the "copy the blur"
  baseline for generators.
- `blur_verdict(metrics)`: one line, per frame, of how far the generator's
  pPSNR is above "copy the blur".
- `save_examples(path_prefix, blur, pred, gt)`: `<prefix>.png` strip and
  `<prefix>.gif` animation of predicted vs ground-truth frames.
- `ProgressBar`: tqdm with steps/s, ETA and the latest loss.
- `format_metrics(metrics)`: a one-line summary for logs.
- `config_dict(config)`: the JSON-ready dict of a config (`config.json`, and
  the `config` item of checkpoints).

Importing this module touches no device, file or flag; tensorboardX, tqdm and
Pillow are imported when first used.
"""
import collections.abc
import json
import math
import numbers
import os
import re

import numpy as np

# hit / con@2 / con@3 in percent, HyperCUT (CVPR 2023) Table 1.
PAPER_ORDERING = {
    'reds': ('REDS', (95.7, 96.5, 94.4)),
    'baist': ('B-Aist++', (97.5, 95.6, 91.2)),
    'rb2v_face': ('RB2V-Face', (94.4, 96.7, 92.1)),
    'rb2v_hand': ('RB2V-Hand', (98.6, 97.0, 96.7)),
    'rb2v_street': ('RB2V-Street', (98.7, 98.3, 96.8)),
}
_DATASET_ALIASES = {
    'reds': 'reds',
    'baist': 'baist', 'baistpp': 'baist',
    'face': 'rb2v_face', 'rb2vface': 'rb2v_face',
    'hand': 'rb2v_hand', 'rb2vhand': 'rb2v_hand',
    'street': 'rb2v_street', 'rb2vstreet': 'rb2v_street',
}
_STAGES = ('ordering', 'generator', 'best_of_n', 'animation', 'predictor')
_MISSING = '-'
_N_FRAMES = 7
# Metric namespaces that qualify a name: 'eval/p5/ppsnr' (P_n) and
# 'eval/blur/ppsnr' (the "copy the blur" baseline) never answer 'ppsnr'.
_QUALIFIER = re.compile(r'(?:^|/)(?:p\d+|blur)$')
_BLUR = 'blur/'
_BLUR_LABEL = 'copy the blur'


# ----------------------------------------------------------------------------
# Scalars.
# ----------------------------------------------------------------------------
def _as_scalar(value):
  """Python float/int for a scalar (Python, numpy, 0-d or size-1 array), else None."""
  if isinstance(value, bool):
    return int(value)
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  if hasattr(value, 'shape') and hasattr(value, 'dtype'):
    arr = np.asarray(value)
    if arr.size == 1 and (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
      item = arr.reshape(()).item()
      return int(item) if isinstance(item, (bool, int)) else float(item)
  return None


def _json_value(value):
  """Strict-JSON form of a scalar: non-finite floats become 'nan'/'inf'/'-inf'.

  `float(v)` reads every written value back, including the non-finite ones
  (a perfect prediction has pPSNR = inf).
  """
  if isinstance(value, float) and not math.isfinite(value):
    return 'nan' if math.isnan(value) else ('inf' if value > 0 else '-inf')
  return value


def config_dict(config) -> dict:
  """A new JSON-ready dict from an `ml_collections.ConfigDict` or a mapping.

  What `MetricWriter.write_config` and `checkpoint.save` write.

  Raises:
    ValueError: `config` is neither.
  """
  if hasattr(config, 'to_dict'):
    config = config.to_dict()
  if not isinstance(config, collections.abc.Mapping):
    raise ValueError(f'config must be a ConfigDict or dict, got {type(config).__name__}')
  return dict(config)


# ----------------------------------------------------------------------------
# Metric writer.
# ----------------------------------------------------------------------------
class MetricWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard (process 0 only).

  Every `write(step, metrics)` adds one strict-JSON line `{"step": s, ...}` and
  flushes it, so a crash loses nothing already written; scalar values are
  also written as TensorBoard scalars (tag = metric name, e.g. `eval/hit`)
  into event files under `workdir/tb`. Non-finite floats are written to JSON
  as the strings 'nan', 'inf', '-inf' (read them back with `float`); string
  values are kept in JSON only; any other value (arrays with more than one
  element, dicts) raises ValueError naming the key.

  On processes other than 0 every method is a no-op and no file is opened.
  Usable as a context manager.
  """

  def __init__(self, workdir, process_index=None):
    """workdir: str/PathLike, created if missing; process_index: default jax.process_index()."""
    if process_index is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index = jax.process_index()
    self.workdir = os.fspath(workdir)
    self.active = int(process_index) == 0
    self._jsonl = None
    self._tb = None
    if self.active:
      os.makedirs(self.workdir, exist_ok=True)
      self._jsonl = open(os.path.join(self.workdir, 'metrics.jsonl'), 'a', encoding='utf-8')

  @property
  def jsonl_path(self):
    return os.path.join(self.workdir, 'metrics.jsonl')

  @property
  def tb_dir(self):
    return os.path.join(self.workdir, 'tb')

  def _tb_writer(self):
    if self._tb is None:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(logdir=self.tb_dir)
    return self._tb

  def write(self, step, metrics):
    """step: int >= 0; metrics: flat dict name -> scalar (or str, JSON only)."""
    if not self.active:
      return
    if self._jsonl is None:
      raise ValueError(f'MetricWriter({self.workdir!r}) is closed')
    step_value = _as_scalar(step)
    if not isinstance(step_value, int) or step_value < 0:
      raise ValueError(f'step must be a non-negative integer, got {step!r}')
    record = {'step': step_value}
    scalars = {}
    for name, value in metrics.items():
      if not isinstance(name, str) or name == 'step':
        raise ValueError(f'metric names must be strings other than "step", got {name!r}')
      scalar = _as_scalar(value)
      if scalar is not None:
        scalars[name] = scalar
        record[name] = _json_value(scalar)
      elif isinstance(value, str):
        record[name] = value
      else:
        raise ValueError(f'metric {name!r} is not a scalar: {type(value).__name__} '
                         f'with shape {getattr(value, "shape", None)}')
    self._jsonl.write(json.dumps(record, allow_nan=False) + '\n')
    self._jsonl.flush()
    if scalars:
      tb = self._tb_writer()
      for name, scalar in scalars.items():
        tb.add_scalar(name, float(scalar), global_step=step_value)
      tb.flush()

  def rewind(self, step, *, drop_eval_at_step=False):
    """Drops rows the restored state never produced, so a resumed run reads
    as one uninterrupted run.

    Keeps the rows with `step <= step` (a crash after logging but before the
    checkpoint committed leaves rows past the restored step; the rerun logs
    them again). drop_eval_at_step: also drop the 'eval/*' rows at `step`
    itself (a finished stage that is evaluated again). Unreadable lines (a
    line cut by a crash) are dropped too. Returns how many rows were dropped.
    TensorBoard event files are append-only and keep the old points.
    """
    if not self.active or not os.path.isfile(self.jsonl_path):
      return 0
    step = int(step)
    kept, dropped = [], 0
    with open(self.jsonl_path, encoding='utf-8') as f:
      for line in f:
        try:
          row = json.loads(line)
          row_step = int(row['step'])
        except (ValueError, KeyError, TypeError):
          dropped += 1
          continue
        is_eval = any(k.startswith('eval/') for k in row)
        if row_step > step or (drop_eval_at_step and row_step == step
                               and is_eval):
          dropped += 1
          continue
        kept.append(line if line.endswith('\n') else line + '\n')
    if not dropped:
      return 0
    self._jsonl.close()
    tmp = self.jsonl_path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      f.writelines(kept)
    os.replace(tmp, self.jsonl_path)
    self._jsonl = open(self.jsonl_path, 'a', encoding='utf-8')
    return dropped

  def write_config(self, config):
    """Writes `workdir/config.json` (atomically: temp file + rename); config: ConfigDict or dict."""
    if not self.active:
      return
    text = json.dumps(config_dict(config), indent=2, sort_keys=True, default=str)
    path = os.path.join(self.workdir, 'config.json')
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text + '\n')
    os.replace(tmp, path)

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


# ----------------------------------------------------------------------------
# Markdown tables.
# ----------------------------------------------------------------------------
def _lookup(metrics, name):
  """metrics[name], else the value of the one key ending in '/name', else None.

  P_n keys ('eval/p5/ppsnr') match 'p5/ppsnr' only, never 'ppsnr'; the
  baseline's ('eval/blur/ppsnr') match 'blur/ppsnr' only.
  """
  if name in metrics:
    return metrics[name]
  if f'eval/{name}' in metrics:   # before other splits' or extra evaluators'
    return metrics[f'eval/{name}']
  hits = [k for k in metrics if isinstance(k, str) and k.endswith('/' + name)
          and not _QUALIFIER.search(k[:-len(name) - 1])]
  if len(hits) > 1:
    raise ValueError(f'metric {name!r} is ambiguous: {sorted(hits)}; pass one split only')
  return metrics[hits[0]] if hits else None


def _fmt(value, scale=1.0, digits=2):
  scalar = None if value is None else _as_scalar(value)
  if scalar is None:
    return _MISSING
  scalar = float(scalar) * scale
  if math.isnan(scalar):
    return 'nan'
  if math.isinf(scalar):
    return 'inf' if scalar > 0 else '-inf'
  return f'{scalar:.{digits}f}'


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def _dataset_key(dataset):
  key = _DATASET_ALIASES.get(re.sub(r'[^a-z0-9]', '', str(dataset).lower()))
  if key is None:
    raise ValueError(f'dataset={dataset!r}; known: {sorted(PAPER_ORDERING)} '
                     f'(aliases: {sorted(_DATASET_ALIASES)})')
  return key


def _ordering_table(metrics, dataset):
  header = ['', 'hit (%)', 'hit (0,6) (%)', 'con@2 (%)', 'con@3 (%)']
  ours = ['ours'] + [_fmt(_lookup(metrics, k), 100.0, 1)
                     for k in ('hit', 'hit_first', 'con@2', 'con@3')]
  keys = list(PAPER_ORDERING) if dataset is None else [_dataset_key(dataset)]
  rows = [ours]
  for key in keys:
    label, (hit, con2, con3) = PAPER_ORDERING[key]
    rows.append([f'paper ({label})', f'{hit:.1f}', _MISSING, f'{con2:.1f}', f'{con3:.1f}'])
  n = _lookup(metrics, 'n')
  note = '' if n is None else f'\n\n{_fmt(n, digits=0)} test examples.'
  return _table(header, rows) + note


def _has_blur(metrics):
  """Whether `metrics` holds any "copy the blur" baseline value ('blur/...')."""
  return any(isinstance(k, str) and (k.startswith(_BLUR) or f'/{_BLUR}' in k) for k in metrics)


def _rows(metrics, row_fn):
  """[('model', row_fn('')), ('copy the blur', row_fn('blur/'))]; the second
  only when the metrics hold the baseline. row_fn: key prefix -> list of cells."""
  rows = [['model', *row_fn('')]]
  if _has_blur(metrics):
    rows.append([_BLUR_LABEL, *row_fn(_BLUR)])
  return rows


def _generator_table(metrics):
  """Per-frame pPSNR, then pooled metrics: one row for the model and, when
  `metrics` has 'blur/' keys, one for "copy the blur" (no pred hit/con)."""
  frames = _table(['pPSNR (dB)', *[f'frame {i + 1}' for i in range(_N_FRAMES)]],
                  _rows(metrics, lambda p: [_fmt(_lookup(metrics, f'{p}ppsnr_f{i}'))
                                            for i in range(_N_FRAMES)]))

  def pooled_row(p):
    pred = [_fmt(None if p else _lookup(metrics, k), 100.0, 1)
            for k in ('pred_hit', 'pred_con@2', 'pred_con@3')]
    return [_fmt(_lookup(metrics, f'{p}ppsnr')), _fmt(_lookup(metrics, f'{p}pssim'), digits=4),
            _fmt(_lookup(metrics, f'{p}plpips'), digits=4), *pred]
  pooled = _table(['', 'pPSNR (dB)', 'pSSIM', 'pLPIPS', 'pred hit (%)', 'pred con@2 (%)',
                   'pred con@3 (%)'], _rows(metrics, pooled_row))
  n = _lookup(metrics, 'n')
  note = '' if n is None else f'\n\n{_fmt(n, digits=0)} test examples.'
  middle_gt = _lookup(metrics, 'middle_gt')
  if middle_gt is not None:
    note += (' Middle frame: ground truth (eval.middle=gt).'
             if float(_as_scalar(middle_gt)) > 0.5
             else ' Middle frame: estimated by the centre network '
                  '(eval.middle=estimate).')
  return frames + '\n\n' + pooled + note


def _best_of_n_table(metrics):
  ns = set()
  for key in metrics:
    m = re.search(r'(?:^|/)p(\d+)/(?:ppsnr|pssim|plpips)$', str(key))
    if m:
      ns.add(int(m.group(1)))
  prefixes = [(f'P{n}', f'p{n}/') for n in sorted(ns)]
  if _has_blur(metrics):
    prefixes.append((_BLUR_LABEL, _BLUR))
  rows = [[label, _fmt(_lookup(metrics, f'{p}ppsnr')),
           _fmt(_lookup(metrics, f'{p}pssim'), digits=4),
           _fmt(_lookup(metrics, f'{p}plpips'), digits=4)] for label, p in prefixes]
  return _table(['', 'pPSNR (dB)', 'pSSIM', 'pLPIPS'], rows)


def _has_best_of_n(metrics):
  return any(re.search(r'(?:^|/)p(\d+)/(?:ppsnr|pssim|plpips)$', str(k)) for k in metrics)


def _animation_table(metrics):
  """Decomposer (zhong2022): ground-truth guidance metrics, then P_n."""
  text = _generator_table(metrics)
  if not _has_best_of_n(metrics):
    return (text + '\n\nEvaluated with the ground-truth motion guidance (no '
            'guidance predictor: eval.predictor_checkpoint is not set).')
  return (text + '\n\nAbove: with the ground-truth motion guidance. P_n: best '
          'of n guidance maps sampled from the predictor, each metric chosen '
          'independently.\n\n' + _best_of_n_table(metrics))


def _predictor_table(metrics):
  """Guidance predictor: accuracies in percent, cross-entropy, KL."""
  header = ['acc rec (%)', 'acc sample (%)', 'acc best (%)', 'CE rec', 'KL',
            'static gt (%)', 'static pred (%)']
  row = [_fmt(_lookup(metrics, k), 100.0, 1) for k in ('acc_rec', 'acc_sample', 'acc_best')]
  row += [_fmt(_lookup(metrics, 'ce_rec'), digits=4), _fmt(_lookup(metrics, 'kl'), digits=4)]
  row += [_fmt(_lookup(metrics, k), 100.0, 1) for k in ('static_gt', 'static_pred')]
  n = _lookup(metrics, 'n')
  note = ('\n\nrec: G(blur, mu(E(ground truth))); sample: G(blur, z ~ N(0, I)), '
          'mean and best over the samples.')
  if n is not None:
    note += f' {_fmt(n, digits=0)} test examples.'
  return _table(header, [row]) + note


def markdown_table(metrics, stage, dataset=None):
  """Results of one evaluation as markdown.

  Args:
    metrics: flat dict of scalars, as returned by the evaluators (keys may
      carry a split prefix, e.g. 'eval/hit'; missing entries print as '-').
    stage: 'ordering': hit (all pairs), hit (pair (0,6)), con@2, con@3 in
      percent with 1 decimal, and the paper's numbers below; 'generator':
      per-frame pPSNR (frames 1..7, the paper's layout), then pooled pPSNR /
      pSSIM / pLPIPS and hit/con@2/con@3 of the predictions under H, each
      with a "copy the blur" row under the model's when the metrics hold
      the baseline ('blur/ppsnr' etc.; no pred hit/con: '-');
      'best_of_n': one row per P_n (keys 'p{n}/ppsnr' etc.), and "copy the
      blur" when there are 'blur/' keys; 'animation':
      Animation-from-Blur's decomposer: the 'generator' tables (ground-truth
      guidance), a line saying so, and the P_n rows when there are any;
      'predictor': the guidance predictor's accuracies (percent), CE and KL.
    dataset: for 'ordering', the paper's reference row to show (one of
      'reds', 'baist', 'rb2v_face', 'rb2v_hand', 'rb2v_street' or aliases
      such as 'face', 'B-Aist++'); None shows all five.
  Returns:
    The markdown text (no trailing newline).
  """
  if stage == 'ordering':
    return _ordering_table(metrics, dataset)
  if stage == 'generator':
    return _generator_table(metrics)
  if stage == 'best_of_n':
    return _best_of_n_table(metrics)
  if stage == 'animation':
    return _animation_table(metrics)
  if stage == 'predictor':
    return _predictor_table(metrics)
  raise ValueError(f'stage={stage!r}; known: {list(_STAGES)}')


def _signed(x):
  """'+1.23' / '-0.40' / '+inf' / 'nan' for a dB difference."""
  return 'nan' if math.isnan(x) else f'{x:+.2f}'


def _frame_list(frames):
  """[1, 7] -> 'frames 1, 7'; [3] -> 'frame 3'."""
  return ('frame ' if len(frames) == 1 else 'frames ') + ', '.join(map(str, frames))


def blur_verdict(metrics):
  """One line: by how many dB the generator's pPSNR beats "copy the blur".

  Args:
    metrics: flat dict of scalars with the model's 'ppsnr', 'ppsnr_f0' ..
      'ppsnr_f6' and the baseline's 'blur/ppsnr', 'blur/ppsnr_f0' ..
      'blur/ppsnr_f6' (`GeneratorEvaluator`); keys may carry a split prefix
      ('eval/ppsnr', 'eval/blur/ppsnr').
  Returns:
    '' when `metrics` holds no 'blur/' key at all (an evaluation without the
    baseline: nothing to compare), else e.g. 'Model vs copy-the-blur (pPSNR,
    dB): frame 1 +1.23, ..., frame 7 +1.10; pooled +1.05. The model beats
    the blur on 7 of 7 frames.' or '... The model does NOT beat the blur on
    frames 1, 7 (it beats it on 5 of 7).' Frames are numbered 1..7 (the
    paper's layout); a frame counts as beaten when the difference is > 0
    (a tie or NaN is not).
  Raises:
    ValueError: the baseline is there but a needed key (the model's or the
      baseline's, per frame or pooled) is missing or not a scalar.
  """
  if not _has_blur(metrics):
    return ''
  names = [f'ppsnr_f{i}' for i in range(_N_FRAMES)] + ['ppsnr']
  values, missing = {}, []
  for name in names:
    for key in (name, _BLUR + name):
      scalar = _lookup(metrics, key)
      scalar = None if scalar is None else _as_scalar(scalar)
      if scalar is None:
        missing.append(key)
      else:
        values[key] = float(scalar)
  if missing:
    raise ValueError(f'blur_verdict needs the model\'s and the "copy the blur" pPSNR; '
                     f'missing or not scalar: {missing}')
  diffs = [values[n] - values[_BLUR + n] for n in names]
  per_frame = ', '.join(f'frame {i + 1} {_signed(d)}' for i, d in enumerate(diffs[:-1]))
  line = f'Model vs copy-the-blur (pPSNR, dB): {per_frame}; pooled {_signed(diffs[-1])}.'
  lost = [i + 1 for i, d in enumerate(diffs[:-1]) if not d > 0]
  won = _N_FRAMES - len(lost)
  if not lost:
    return line + f' The model beats the blur on {won} of {_N_FRAMES} frames.'
  return (line + f' The model does NOT beat the blur on {_frame_list(lost)} '
          f'(it beats it on {won} of {_N_FRAMES}).')


def format_metrics(metrics, digits=4):
  """'name=value name=value ...' for log lines; non-scalars are skipped."""
  parts = []
  for name, value in metrics.items():
    scalar = _as_scalar(value)
    if scalar is not None:
      parts.append(f'{name}={scalar}' if isinstance(scalar, int) else f'{name}={scalar:.{digits}g}')
  return ' '.join(parts)


# ----------------------------------------------------------------------------
# Example images.
# ----------------------------------------------------------------------------
def to_uint8(images):
  """uint8 images from uint8 (as is) or float in [0,1].

  Floats: round(x*255) (numpy rounding, half to even, like
  `metrics.quantize_8bit`) clipped to [0,255]; NaN -> 0.
  """
  arr = np.asarray(images)
  if arr.dtype == np.uint8:
    return arr
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f'images must be uint8 or float in [0,1], got dtype {arr.dtype}')
  arr = np.nan_to_num(arr.astype(np.float32), nan=0.0)
  return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def _check_examples(blur, pred, gt):
  blur, pred, gt = to_uint8(blur), to_uint8(pred), to_uint8(gt)
  if blur.ndim != 4 or blur.shape[-1] != 3:
    raise ValueError(f'blur must be [N,H,W,3], got shape {blur.shape}')
  n, h, w, _ = blur.shape
  for name, arr in (('pred', pred), ('gt', gt)):
    if arr.ndim != 5 or arr.shape[0] != n or arr.shape[2:] != (h, w, 3):
      raise ValueError(f'{name} must be [N,T,H,W,3] = [{n},T,{h},{w},3] to match blur, '
                       f'got shape {arr.shape}')
  if pred.shape[1] != gt.shape[1]:
    raise ValueError(f'pred and gt need the same number of frames, got {pred.shape} and {gt.shape}')
  if n == 0:
    raise ValueError('no examples to save (blur has shape [0,...])')
  return blur, pred, gt


def _grid(tiles, pad, fill=255):
  """tiles: list of rows, each a list of uint8[H,W,3] -> uint8 image, `pad` px between tiles."""
  h, w = tiles[0][0].shape[:2]
  n_rows, n_cols = len(tiles), max(len(r) for r in tiles)
  out = np.full((n_rows * h + (n_rows - 1) * pad, n_cols * w + (n_cols - 1) * pad, 3),
                fill, np.uint8)
  for i, row in enumerate(tiles):
    for j, tile in enumerate(row):
      if tile is not None:
        out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = tile
  return out


def save_examples(path_prefix, blur, pred, gt, max_examples=4, pad=2, frame_ms=150):
  """Writes `<path_prefix>.png` and `<path_prefix>.gif` for up to max_examples examples.

  PNG strip: one row per example, tiles `blur | pred_0..pred_{T-1} | gt_0..gt_{T-1}`
  separated by `pad` white pixels: size (rows, cols) =
  (n*H + (n-1)*pad, (2T+1)*W + 2T*pad), n = min(N, max_examples).
  GIF: T frames looping forward forever (frame_ms each); frame t shows
  `pred_t | gt_t` for every example, one row each: size
  (n*H + (n-1)*pad, 2*W + pad). Pillow merges GIF frames that are
  pixel-identical to the previous one (a static video has fewer frames).

  Args:
    path_prefix: output path without extension; parent dirs are created.
    blur: [N,H,W,3]; pred, gt: [N,T,H,W,3]; each uint8 or float in [0,1]
      (converted with round(x*255) clipped to [0,255]).
  Returns:
    (png_path, gif_path).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  blur, pred, gt = _check_examples(blur, pred, gt)
  n = min(blur.shape[0], int(max_examples))
  if n < 1:
    raise ValueError(f'max_examples must be >= 1, got {max_examples}')
  path_prefix = os.fspath(path_prefix)
  parent = os.path.dirname(path_prefix)
  if parent:
    os.makedirs(parent, exist_ok=True)
  t = pred.shape[1]
  strip = _grid([[blur[i], *pred[i], *gt[i]] for i in range(n)], pad)
  png_path, gif_path = path_prefix + '.png', path_prefix + '.gif'
  Image.fromarray(strip).save(png_path)
  frames = [Image.fromarray(_grid([[pred[i, k], gt[i, k]] for i in range(n)], pad))
            for k in range(t)]
  frames[0].save(gif_path, save_all=True, append_images=frames[1:], loop=0,
                 duration=int(frame_ms))
  return png_path, gif_path


# ----------------------------------------------------------------------------
# Progress.
# ----------------------------------------------------------------------------
class ProgressBar:
  """tqdm over training steps showing steps/s, ETA and the latest metrics.

  Call `update(step, metrics)` once per log interval with the absolute step
  (a resumed run starts at `initial`); the bar shows the rate in steps/s and
  the ETA to `total`, and `keys` of `metrics` (default: names containing
  'loss') as postfix. Silent (nothing printed) on processes other than 0.
  """

  def __init__(self, total, initial=0, desc=None, keys=None, process_index=None, **tqdm_kw):
    if process_index is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index = jax.process_index()
    import tqdm  # pylint: disable=g-import-not-at-top
    self.keys = keys
    self.step = int(initial)
    self._bar = tqdm.tqdm(total=int(total), initial=int(initial), desc=desc, unit='step',
                          dynamic_ncols=True, disable=int(process_index) != 0, **tqdm_kw)

  def update(self, step, metrics=None):
    """step: absolute step reached; metrics: dict of scalars (optional)."""
    step = int(step)
    if metrics:
      shown = {k: v for k, v in metrics.items()
               if (k in self.keys if self.keys is not None else 'loss' in k)}
      postfix = {k.split('/')[-1] if k.count('/') == 1 else k: _fmt(v, digits=4)
                 for k, v in shown.items()}
      self._bar.set_postfix(postfix, refresh=False)
    if step > self.step:
      self._bar.update(step - self.step)
    self.step = max(step, self.step)

  def write(self, text):
    """Prints a line above the bar (process 0 only)."""
    if not self._bar.disable:
      self._bar.write(text, file=self._bar.fp)

  def close(self):
    self._bar.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


# ----------------------------------------------------------------------------
# The loop's results.
# ----------------------------------------------------------------------------
def paper_row(cfg, table_stage) -> dict:
  """markdown_table's `dataset=` for the paper's reference row, if any."""
  if table_stage != 'ordering' or cfg.data.name == 'synthetic':
    return {}
  if cfg.data.name == 'rb2v':
    return {'dataset': cfg.data.get('subset') or 'street'}
  return {'dataset': cfg.data.name}


def results_markdown(config, results, generator_cfg=None) -> str:
  """The final results.md of `loop.run`: each stage's table; for generators,
  the verdict line against "copy the blur" under the table (`blur_verdict`).

  results: {stage: loop.StageResult} (uses .step, .table, .metrics);
  generator_cfg: the generator stage's one-stage config (when it ran).
  """
  parts = [f'# Results ({config.data.name})']
  if 'ordering' in results:
    r = results['ordering']
    parts.append(f'## Ordering network H (test split, step {r.step})\n\n'
                 f'{r.table}')
  if 'predictor' in results:
    r = results['predictor']
    parts.append('## Guidance predictor (BicycleGAN, test split, step '
                 f'{r.step})\n\n{r.table}')
  if 'generator' in results:
    r = results['generator']
    cfg = generator_cfg
    with_h = bool(cfg.hypercut.alpha) and (
        config.stage == 'both' or cfg.hypercut.get('checkpoint'))
    name = cfg.model.name + (f' + HyperCUT (alpha={cfg.hypercut.alpha:g})'
                             if with_h else ' (baseline)')
    parts.append(f'## Generator {name} (test split, step {r.step})\n\n'
                 f'{r.table}')
    verdict = blur_verdict(r.metrics)
    if verdict:
      parts.append(verdict)
  return '\n\n'.join(parts)

r"""Reproduce the paper's findings: train every run, then write the report.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
  python -m hypercut_jax.reproduce --workdir=/tmp/repro --mode=cpu \
      --out=docs/reproduction --doc=docs/reproduction.md

Runs (`configs/reproduce.py`, in order, each in `<workdir>/<name>` through
`hypercut_jax.train.loop.run`): the ordering network `h`, then `jin2018` and
`purohit2019` each with the naive loss, the order-invariant loss and the
order-invariant loss + alpha * R_hyp under the frozen H, then
Animation-from-Blur's guidance predictor and its decomposer without and
with alpha * R_hyp (when the `zhong2022` generator is registered). A
finished run leaves `<workdir>/<name>/done.json` with a sha256 of its full
config; rerunning the command skips it while `configs/reproduce.py` gives
the same config (and stops, naming the run directory, when it does not), and
an interrupted run resumes from its last checkpoint. `--only=h,jin2018_oi`
trains (and reports) a subset.

Report (`--out`, default `<workdir>/report`), every number computed here
from the trained checkpoints on the test split:
  tables.md          H: hit / con@2 / con@3 next to the paper's values;
                     per-frame pPSNR of each generator and of "copy the
                     blur" (the paper's layout: frames 1..7, baseline rows
                     vs + HyperCUT); pooled
                     pPSNR / pSSIM / pLPIPS and the hit / con of the
                     predictions under H; outer-frame gains; run times
  results.json       every number above, the configs' key fields, seeds,
                     steps and the commands
  embedding.png      PCA of H's embeddings of the test pairs (forward
                     [x_k, x_{6-k}] vs reversed) and the scores u vs v
  strip_<run>.png/.gif   the same test inputs for every method: blur,
                     predicted frames, ground truth (and the GIF: predicted
                     | ground truth, frame by frame)
`--doc=FILE` rewrites the block between `<!-- reproduce:begin -->` and
`<!-- reproduce:end -->` in FILE with tables.md and the figure links, so
the numbers in the docs are never typed by hand.

Real datasets: the same command with `--dataset=reds|baist|rb2v
--data_dir=<prepared TFDS dir> --mode=paper` (the paper's settings; needs a
GPU/TPU). See docs/reproduction.md.

Generators that take a middle frame (Purohit) are evaluated with the
ground-truth middle frame, as in the HyperCUT reimplementation's protocol
(they are trained with it too).
"""
import hashlib
import json
import os
import re
import runpy
import sys
import time
import types

from absl import app
from absl import flags
from absl import logging
import numpy as np

from hypercut_jax.configs import reproduce as reproduce_configs

BEGIN = '<!-- reproduce:begin -->'
END = '<!-- reproduce:end -->'
N_FRAMES = 7
MODES = ('cpu', 'tiny', 'paper')
STRIP_MAX_SIDE = 128   # strips of larger test images show a centre crop
FAMILY_LABELS = {'jin2018': 'Jin et al. 2018', 'purohit2019': 'Purohit et al. 2019',
                 'zhong2022': 'Animation-from-Blur (Zhong et al. 2022)'}
VARIANT_LABELS = {'naive': 'naive loss', 'oi': 'order-invariant loss',
                  'oi_hypercut': 'order-invariant + HyperCUT',
                  '': 'decomposer (MSE)', 'hypercut': 'decomposer + HyperCUT'}


def load_config_module(path: str | None = None):
  """The run configs: `hypercut_jax.configs.reproduce`, or the file `path`.

  A file (`--config_file`) provides what that module does: `get_config`,
  `run_names`, `RUN_SPECS` and optionally `AFB_ENABLED`.
  """
  if not path:
    return reproduce_configs
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path} not found')
  return types.SimpleNamespace(**runpy.run_path(path))


def config_arg(name: str, *, mode: str, dataset: str, seed: int,
               data_dir: str = '', subset: str = '', h_checkpoint: str = '',
               predictor_checkpoint: str = '') -> str:
  """The `:arg` text of `configs/reproduce.py` for one run."""
  parts = [f'run={name}', f'mode={mode}', f'seed={seed}', f'dataset={dataset}']
  if data_dir:
    parts.append(f'data_dir={data_dir}')
  if subset:
    parts.append(f'subset={subset}')
  if h_checkpoint:
    parts.append(f'h_checkpoint={h_checkpoint}')
  if predictor_checkpoint:
    parts.append(f'predictor_checkpoint={predictor_checkpoint}')
  return ','.join(parts)


def select_runs(module, only: str | None, afb: bool) -> list[str]:
  """Run names in training order; `only` = comma-separated subset."""
  names = list(module.run_names(afb=afb))
  if not only:
    return names
  wanted = [n.strip() for n in only.split(',') if n.strip()]
  unknown = [n for n in wanted if n not in module.RUN_SPECS]
  if unknown:
    raise ValueError(f'--only: unknown runs {unknown}; known: '
                     f'{list(module.RUN_SPECS)}')
  return [n for n in list(module.RUN_SPECS) if n in wanted]


def _variant(name: str) -> tuple[str, str]:
  """'jin2018_oi_hypercut' -> ('jin2018', 'oi_hypercut'); 'afb' -> ('zhong2022', '')."""
  if name.startswith('afb'):
    return 'zhong2022', name[len('afb_'):] if name != 'afb' else ''
  family, _, variant = name.partition('_')
  return family, variant


# =============================================================================
# Training.
# =============================================================================
def _read_json(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _write_json(path, obj):
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
    f.write('\n')
  os.replace(tmp, path)


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


def _finite(value):
  """JSON-safe float ('inf'/'nan' as strings, like the metric writer)."""
  value = float(value)
  if np.isfinite(value):
    return value
  return 'nan' if np.isnan(value) else ('inf' if value > 0 else '-inf')


def train_runs(module, names, workdir: str, *, mode: str, dataset: str,
               seed: int, data_dir: str = '', subset: str = '',
               command: str = '', log=print) -> dict:
  """Trains each run of `names` not yet done; returns {name: done record}.

  Each run trains in `<workdir>/<name>`; when it finishes,
  `<workdir>/<name>/done.json` records its step, wall time (summed over
  interrupted sessions), final in-loop metrics and the command, and a rerun
  skips it. A preempted run stops the sequence (rerun to resume).
  """
  from hypercut_jax.train import loop  # pylint: disable=g-import-not-at-top
  h_dir = os.path.join(workdir, 'h')
  pred_dir = os.path.join(workdir, 'afb_predictor')
  records = {}
  for i, name in enumerate(names, 1):
    run_dir = os.path.join(workdir, name)
    marker = os.path.join(run_dir, 'done.json')
    stage, model, _, use_h = module.RUN_SPECS[name]
    # The decomposers' P_n needs the guidance predictor, when it was trained.
    use_pred = (model == 'zhong2022' and stage == 'generator'
                and os.path.exists(os.path.join(pred_dir, 'done.json')))
    arg = config_arg(name, mode=mode, dataset=dataset, seed=seed,
                     data_dir=data_dir, subset=subset,
                     h_checkpoint=h_dir if use_h else '',
                     predictor_checkpoint=pred_dir if use_pred else '')
    config = module.get_config(arg)
    fingerprint = config_fingerprint(config)
    if os.path.exists(marker):
      records[name] = _read_json(marker)
      if records[name].get('config_sha256') != fingerprint:
        raise ValueError(
            f'run {name!r} in {run_dir} finished with another config than '
            f'configs/reproduce.py now gives for {arg!r} (its done.json '
            f'records config_sha256={records[name].get("config_sha256")}, '
            f'now {fingerprint}; config.json there is the old one): delete '
            f'{run_dir} to retrain it, or use a new --workdir')
      log(f'[reproduce] ({i}/{len(names)}) {name}: done earlier '
          f'({records[name]["steps"]} steps), skipped')
      continue
    if use_h and not os.path.exists(os.path.join(h_dir, 'done.json')):
      raise FileNotFoundError(
          f'run {name!r} needs the finished H run in {h_dir} (train `h` '
          'first: drop --only or add h to it)')
    log(f'[reproduce] ({i}/{len(names)}) {name}: training '
        f'({config.model.name}, stage {stage}) in {run_dir}')
    t0 = time.time()
    result = loop.run(config, run_dir)[stage]
    seconds = _add_seconds(run_dir, time.time() - t0)
    if result.preempted:
      log(f'[reproduce] {name}: preempted at step {result.step}; rerun the '
          'same command to resume')
      return records
    record = {'name': name, 'steps': int(result.step), 'seconds': seconds,
              'config_arg': arg, 'config_sha256': fingerprint,
              'command': command,
              'metrics': {k: _finite(v) for k, v in result.metrics.items()}}
    _write_json(marker, record)
    records[name] = record
    log(f'[reproduce] ({i}/{len(names)}) {name}: finished {result.step} '
        f'steps in {seconds / 60:.1f} min')
  return records


# Paths to sibling runs of the same workdir (filled in by `train_runs`): left
# out of the fingerprint, so a moved or copied workdir still matches.
_SIBLING_PATHS = (('hypercut', 'checkpoint'), ('eval', 'predictor_checkpoint'))


def config_fingerprint(config) -> str:
  """sha256 of a run's config (sorted JSON): what done.json vouches for.

  Every field counts except the paths to the H and guidance-predictor runs
  of the same workdir.
  """
  tree = json.loads(config.to_json_best_effort())
  for parent, key in _SIBLING_PATHS:
    if isinstance(tree.get(parent), dict):
      tree[parent].pop(key, None)
  text = json.dumps(tree, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def _add_seconds(run_dir: str, seconds: float) -> float:
  """Adds a session's wall time to `<run_dir>/seconds.json`; the total."""
  path = os.path.join(run_dir, 'seconds.json')
  total = seconds + (_read_json(path)['seconds'] if os.path.exists(path)
                     else 0.0)
  _write_json(path, {'seconds': total})
  return total


# =============================================================================
# Evaluation of the trained runs.
# =============================================================================
def _test_batches(cfg, max_examples: int | None):
  """() -> eval batches over the test split (centre crop `eval_crop`)."""
  # pylint: disable=g-import-not-at-top
  from hypercut_jax import data
  from hypercut_jax.data import pipeline
  # pylint: enable=g-import-not-at-top
  source = data.get_source(cfg.data, 'test')
  if max_examples:
    source = pipeline.Prefix(source, max_examples)
  crop = cfg.input.get('eval_crop')
  batch_size = int(cfg.input.eval_batch_size)
  return lambda: pipeline.make_eval_batches(source, batch_size=batch_size,
                                            crop=crop)


def evaluate_h(run_dir: str, cfg, max_examples: int | None = None) -> dict:
  """H on the test split: hit / con and the pair embeddings.

  Returns {'metrics': {hit, hit_first, con@2, con@3, n}, 'embeddings':
  f32[N,2,P,D] (axis 1: forward [x_k, x_{6-k}], reversed), 'u', 'v':
  f32[N,P] scores, 'ids'}.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from hypercut_jax import inference
  from hypercut_jax import losses
  from hypercut_jax import metrics
  # pylint: enable=g-import-not-at-top
  h = inference.load_ordering(run_dir)

  @jax.jit
  def embed(params, hyperplane, sharp):
    frames = sharp.astype(jnp.float32) / 255.0
    pairs = jnp.stack([losses.make_pairs(frames),
                       losses.make_pairs(frames, reverse=True)], axis=1)
    e = h.model.apply({'params': params}, pairs.reshape(-1, *pairs.shape[-3:]))
    e = e.reshape(*pairs.shape[:3], -1)                   # [B,2,P,D]
    s = losses.hyperplane_score(e, hyperplane)            # [B,2,P]
    return e, s[:, 0], s[:, 1]

  es, us, vs, ids = [], [], [], []
  for batch in _test_batches(cfg, max_examples)():
    mask = np.asarray(batch['mask'])
    e, u, v = jax.device_get(embed(h.params, h.hyperplane,
                                   np.asarray(batch['sharp'])))
    es.append(e[mask])
    us.append(u[mask])
    vs.append(v[mask])
    ids.extend(np.asarray(batch['id'])[mask].tolist())
  e, u, v = np.concatenate(es), np.concatenate(us), np.concatenate(vs)
  out = {'hit': float(np.mean(metrics.hit(u, v))),
         'hit_first': float(np.mean(metrics.hit(u, v, first_pair_only=True))),
         'con@2': float(np.mean(metrics.con(u, 2))),
         'con@3': float(np.mean(metrics.con(u, 3))),
         'n': int(u.shape[0]), 'step': h.step}
  for k in range(u.shape[1]):   # hit of each pair (k, 6-k) on its own
    out[f'hit_pair{k}'] = float(np.mean(u[:, k] * v[:, k] < 0))
  return {'metrics': out, 'embeddings': e, 'u': u, 'v': v, 'ids': ids,
          'loaded': h}


def load_generator(run_dir: str):
  """(model, params) of a trained generator (no optimiser state).

  `inference.load_generator`, which also rebuilds generators that need
  motion guidance (zhong2022) with a guidance input.
  """
  from hypercut_jax import inference  # pylint: disable=g-import-not-at-top
  g = inference.load_generator(run_dir)
  return g.model, g.params


def _uses_middle(model) -> bool:
  return bool(getattr(type(model), 'uses_middle', False))


def evaluate_generator(run_dir: str, cfg, *, h=None, lpips=True,
                       num_examples=3, max_examples=None,
                       baseline=False) -> tuple[dict, dict]:
  """Order-aware metrics of one trained generator on the test split.

  h: the loaded H (`inference.Loaded`) for hit / con of the predictions.
  baseline: also the evaluator's "copy the blur" metrics ('blur/ppsnr', ...)
  on the same test examples.
  Returns (metrics, examples) as `evaluators.GeneratorEvaluator.run`.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from hypercut_jax import data as data_lib
  from hypercut_jax import models
  from hypercut_jax.models import ordering as ordering_model
  from hypercut_jax.train import evaluators
  # pylint: enable=g-import-not-at-top
  model, params = load_generator(run_dir)
  middle = _uses_middle(model)
  guidance = data_lib.has_guidance(cfg.data)

  @jax.jit
  def predict(params, blur, sharp, guide):
    kw = {}
    if middle:   # ground-truth middle frame (the reimplementation's protocol)
      kw['middle'] = sharp[:, N_FRAMES // 2].astype(jnp.float32) / 255.0
    if guide is not None:
      kw['guidance'] = guide.astype(jnp.int32)
    return models.predict(model, {'params': params},
                          blur.astype(jnp.float32) / 255.0, **kw)

  def predict_fn(batch):
    guide = np.asarray(batch['guidance']) if guidance else None
    return predict(params, np.asarray(batch['blur']),
                   np.asarray(batch['sharp']), guide)

  score_fn = None
  if h is not None:
    def score_fn(frames):
      return ordering_model.pair_scores(h.model, h.params, h.hyperplane, frames)
  evaluator = evaluators.GeneratorEvaluator(
      _test_batches(cfg, max_examples), predict_fn, score_fn=score_fn,
      lpips=lpips, num_examples_to_keep=num_examples, baseline=baseline)
  values, examples = evaluator.run()
  return {k: float(v) for k, v in values.items()}, examples


# =============================================================================
# Figures.
# =============================================================================
def pca_2d(x):
  """x: f32[N,D] -> (f32[N,2] projections on the top-2 principal axes,
  explained variance ratios f32[2])."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(axis=0, keepdims=True)
  _, s, vt = np.linalg.svd(x, full_matrices=False)
  var = s ** 2
  ratio = var[:2] / max(var.sum(), 1e-30)
  return (x @ vt[:2].T).astype(np.float32), ratio.astype(np.float32)


def plot_embedding(path: str, embeddings, u, v, title: str) -> str:
  """embedding.png: PCA of the pair embeddings + forward vs reversed scores.

  embeddings: f32[N,2,P,D] (axis 1: forward, reversed); u, v: f32[N,P].
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n, _, p, d = embeddings.shape
  xy, ratio = pca_2d(embeddings.reshape(-1, d))
  xy = xy.reshape(n, 2, p, 2)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
  markers = ('o', 's', '^')
  for k in range(p):
    a, b = k, N_FRAMES - 1 - k
    axes[0].scatter(xy[:, 0, k, 0], xy[:, 0, k, 1], s=9, c='tab:blue',
                    marker=markers[k % 3], alpha=0.6,
                    label=f'true order [x{a}, x{b}]')
    axes[0].scatter(xy[:, 1, k, 0], xy[:, 1, k, 1], s=9, c='tab:orange',
                    marker=markers[k % 3], alpha=0.6,
                    label=f'reversed [x{b}, x{a}]')
  axes[0].set_title('PCA of H(pair) on test pairs')
  axes[0].set_xlabel(f'PC1 ({100 * ratio[0]:.0f}% var.)')
  axes[0].set_ylabel(f'PC2 ({100 * ratio[1]:.0f}% var.)')
  axes[0].legend(fontsize=7, markerscale=1.5)
  lim = float(max(np.abs(u).max(), np.abs(v).max(), 1e-6)) * 1.05
  for k in range(p):
    axes[1].scatter(u[:, k], v[:, k], s=9, marker=markers[k % 3], alpha=0.6,
                    label=f'pair ({k},{N_FRAMES - 1 - k})')
  axes[1].axhline(0, color='k', lw=0.6)
  axes[1].axvline(0, color='k', lw=0.6)
  axes[1].set_xlim(-lim, lim)
  axes[1].set_ylim(-lim, lim)
  axes[1].set_xlabel('u = s([x_k, x_{6-k}])  (true order)')
  axes[1].set_ylabel('v = s([x_{6-k}, x_k])  (reversed)')
  axes[1].set_title('hyperplane scores: a hit is u*v < 0')
  axes[1].legend(fontsize=7, markerscale=1.5)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _strip_crop(examples: dict) -> dict:
  """Centre crop of large test images so strips stay small."""
  h, w = examples['blur'].shape[1:3]
  ch, cw = min(h, STRIP_MAX_SIDE), min(w, STRIP_MAX_SIDE)
  if (ch, cw) == (h, w):
    return examples
  y, x = (h - ch) // 2, (w - cw) // 2
  return {'blur': examples['blur'][:, y:y + ch, x:x + cw],
          'pred': examples['pred'][:, :, y:y + ch, x:x + cw],
          'gt': examples['gt'][:, :, y:y + ch, x:x + cw]}


def save_strip(out_dir: str, name: str, examples: dict) -> tuple[str, str]:
  """strip_<name>.png / .gif of the kept test examples."""
  from hypercut_jax.train import report  # pylint: disable=g-import-not-at-top
  ex = _strip_crop(examples)
  prefix = os.path.join(out_dir, f'strip_{name}')
  for ext in ('.png', '.gif'):
    if os.path.exists(prefix + ext):
      os.remove(prefix + ext)
  png, gif = report.save_examples(prefix, ex['blur'], ex['pred'], ex['gt'],
                                  max_examples=len(ex['blur']))
  _palette_png(png)
  return png, gif


def _palette_png(path: str) -> None:
  """Rewrites an RGB PNG with a 256-colour palette (about 3x smaller;
  the strips are illustrations, every number comes from the float frames)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    small = im.convert('RGB').quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                       dither=Image.Dither.NONE)
  small.save(path, optimize=True)


# =============================================================================
# Tables.
# =============================================================================
def _f(value, digits=2, scale=1.0):
  if value is None:
    return '-'
  value = float(value) * scale
  if not np.isfinite(value):
    return str(value)
  return f'{value:.{digits}f}'


def _table(header, rows) -> str:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] * len(header)) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)


def h_table(h_metrics: dict, dataset: str, subset: str = '') -> str:
  """hit / con of H next to the paper's Table 1 values."""
  from hypercut_jax.train import report  # pylint: disable=g-import-not-at-top
  ours = ['ours (' + dataset + (f'/{subset}' if subset else '') + ')',
          _f(h_metrics['hit'], 1, 100), _f(h_metrics['hit_first'], 1, 100),
          _f(h_metrics['con@2'], 1, 100), _f(h_metrics['con@3'], 1, 100)]
  rows = [ours]
  for label, (hit, con2, con3) in report.PAPER_ORDERING.values():
    rows.append([f'paper, {label}', f'{hit:.1f}', '-', f'{con2:.1f}',
                 f'{con3:.1f}'])
  pairs = sorted(k for k in h_metrics if k.startswith('hit_pair'))
  note = ''
  if pairs:
    note = ('\n\nhit of each pair alone: ' + ', '.join(
        f'({k}, {N_FRAMES - 1 - k}) {100 * h_metrics[f"hit_pair{k}"]:.1f}%'
        for k in range(len(pairs))) + '.')
  return _table(['H', 'hit (%)', 'hit, pair (0,6) (%)', 'con@2 (%)',
                 'con@3 (%)'], rows) + note


def _label(name: str) -> str:
  family, variant = _variant(name)
  return f'{FAMILY_LABELS[family]}, {VARIANT_LABELS.get(variant, variant)}'


def frames_table(gen: dict, names, blur_metrics=None) -> str:
  """Per-frame pPSNR (frames 1..7 and the mean) of the given runs."""
  header = ['method', *[f'frame {i + 1}' for i in range(N_FRAMES)], 'mean']
  rows = []
  if blur_metrics is not None:
    rows.append(['copy the blur', *[_f(blur_metrics[f'ppsnr_f{i}'])
                                    for i in range(N_FRAMES)],
                 _f(blur_metrics['ppsnr'])])
  for name in names:
    m = gen[name]
    rows.append([_label(name), *[_f(m[f'ppsnr_f{i}']) for i in range(N_FRAMES)],
                 _f(m['ppsnr'])])
  return _table(header, rows)


def pooled_table(gen: dict, names, blur_metrics=None) -> str:
  """Pooled metrics of the given runs under "copy the blur".

  blur_metrics: None, the baseline's metrics (one 'copy the blur' row) or a
  list of (label, metrics), one row each (runs evaluated on different test
  inputs).
  """
  header = ['method', 'pPSNR (dB)', 'pSSIM', 'pLPIPS', 'pred hit (%)',
            'pred con@2 (%)', 'pred con@3 (%)']
  rows = []
  if isinstance(blur_metrics, dict):
    blur_metrics = [('copy the blur', blur_metrics)]
  items = list(blur_metrics or [])
  items += [(_label(n), gen[n]) for n in names]
  for label, m in items:
    rows.append([label, _f(m['ppsnr']), _f(m.get('pssim'), 4),
                 _f(m.get('plpips'), 4), _f(m.get('pred_hit'), 1, 100),
                 _f(m.get('pred_con@2'), 1, 100),
                 _f(m.get('pred_con@3'), 1, 100)])
  return _table(header, rows)


def split_baseline(metrics: dict) -> tuple[dict, dict]:
  """GeneratorEvaluator metrics -> (the model's, "copy the blur"'s).

  The baseline's are the 'blur/' keys without the prefix, plus the shared
  'n'; empty when there are none.
  """
  model = {k: v for k, v in metrics.items() if not k.startswith('blur/')}
  blur = {k[len('blur/'):]: v for k, v in metrics.items()
          if k.startswith('blur/')}
  if blur and 'n' in metrics:
    blur['n'] = metrics['n']
  return model, blur


def copy_blur_examples(examples: dict) -> dict:
  """Kept test examples with "copy the blur" as the prediction."""
  pred = np.repeat(examples['blur'][:, None].astype(np.float32) / 255.0,
                   N_FRAMES, axis=1)
  return {**examples, 'pred': pred}


def _same_metrics(a: dict, b: dict) -> bool:
  """Whether two metric dicts hold the same names and values (rtol 1e-6)."""
  return a.keys() == b.keys() and all(
      np.isclose(a[k], b[k], rtol=1e-6, atol=0.0, equal_nan=True) for k in a)


def _test_set_key(cfg, max_examples) -> str:
  """What decides a generator's test examples: its data config, centre
  crop and example cap (runs with the same key share one baseline)."""
  return json.dumps([cfg.data.to_dict(), cfg.input.get('eval_crop'),
                     max_examples], sort_keys=True, default=str)


def outer_gains(gen: dict) -> dict:
  """pPSNR gains of each + HyperCUT run (frame 1, frame 7, mean).

  gen: {run: metrics}. Returns {run: {'vs_baseline' | 'vs_naive':
  {'reference': run, 'frame1', 'frame7', 'mean' (dB, + = better)}}}: over
  the same generator and loss without R_hyp, and over the naive loss.
  """
  out = {}
  for name in gen:
    family, variant = _variant(name)
    if not variant.endswith('hypercut'):
      continue
    base = name[:-len('_hypercut')]
    for ref_name, key in ((base, 'vs_baseline'),
                          (f'{family}_naive', 'vs_naive')):
      if ref_name not in gen or ref_name == name:
        continue
      ref, ours = gen[ref_name], gen[name]
      out.setdefault(name, {})[key] = {
          'reference': ref_name,
          'frame1': ours['ppsnr_f0'] - ref['ppsnr_f0'],
          'frame7': ours[f'ppsnr_f{N_FRAMES - 1}']
                    - ref[f'ppsnr_f{N_FRAMES - 1}'],
          'mean': ours['ppsnr'] - ref['ppsnr']}
  return out


def gains_table(gains: dict) -> str:
  rows = []
  for name, refs in gains.items():
    for g in refs.values():
      rows.append([_label(name), _label(g['reference']),
                   f'{g["frame1"]:+.2f}', f'{g["frame7"]:+.2f}',
                   f'{g["mean"]:+.2f}'])
  return _table(['+ HyperCUT', 'over', 'frame 1 (dB)', 'frame 7 (dB)',
                 'mean (dB)'], rows)


def best_of_n_results(records: dict, names) -> dict:
  """{run: {n: {'ppsnr', 'pssim', 'plpips'?}, 'n_examples'}} from the
  in-loop evaluation of runs that sampled guidance (P_n)."""
  out = {}
  for name in names:
    m = records[name].get('metrics', {})
    ns = sorted({int(k.split('/')[1][1:]) for k in m
                 if k.startswith('eval/p') and k.endswith('/ppsnr')
                 and k.split('/')[1][1:].isdigit()})
    if ns:
      out[name] = {'n_examples': m.get('eval/n'),
                   **{str(n): {k: m[f'eval/p{n}/{k}']
                               for k in ('ppsnr', 'pssim', 'plpips')
                               if f'eval/p{n}/{k}' in m} for n in ns}}
  return out


def best_of_n_table(p_n: dict) -> str:
  rows = []
  for name, by_n in p_n.items():
    for n, m in by_n.items():
      if n == 'n_examples':
        continue
      rows.append([_label(name), f'P{n}', _f(m.get('ppsnr')),
                   _f(m.get('pssim'), 4)])
  return (_table(['method', 'P_n', 'pPSNR (dB)', 'pSSIM'], rows)
          + '\n\nBest of n guidance maps sampled from the `afb_predictor` '
          'run, each metric chosen independently (the training run\'s final '
          'evaluation). The tables above use the ground-truth guidance.')


def runs_table(records: dict) -> str:
  rows = [[name, str(r['steps']), f'{r["seconds"] / 60:.1f}']
          for name, r in records.items()]
  total = sum(r['seconds'] for r in records.values()) / 60
  rows.append(['total', '', f'{total:.1f}'])
  return _table(['run', 'steps', 'wall time (min)'], rows)


# =============================================================================
# The report.
# =============================================================================
def _families(names):
  order = []
  for name in names:
    family, _ = _variant(name)
    if name != 'h' and family not in order and not name.endswith('predictor'):
      order.append(family)
  return order


def write_report(module, names, workdir: str, out_dir: str, *, mode: str,
                 dataset: str, seed: int, data_dir: str = '',
                 subset: str = '', records=None, lpips: bool = True,
                 num_examples: int = 3, max_examples: int | None = None,
                 commands=(), log=print) -> dict:
  """Evaluates every finished run and writes tables, figures, results.json.

  Returns {'markdown': the generated block, 'results': the JSON dict,
  'files': [paths written]}.
  """
  os.makedirs(out_dir, exist_ok=True)
  records = dict(records or {})
  for name in names:
    marker = os.path.join(workdir, name, 'done.json')
    if name not in records and os.path.exists(marker):
      records[name] = _read_json(marker)
  missing = [n for n in names if n not in records]
  if missing:
    raise FileNotFoundError(f'runs not finished in {workdir}: {missing} '
                            '(train them first)')
  arg = lambda name, **kw: config_arg(name, mode=mode, dataset=dataset,
                                      seed=seed, data_dir=data_dir,
                                      subset=subset, **kw)
  commands = _unique([records[n].get('command') for n in names]
                     + list(commands))
  public = portable(commands + [records[n].get('config_arg') for n in names],
                    workdir)
  files, sections, results = [], [], {
      'mode': mode, 'dataset': dataset, 'subset': subset or None, 'seed': seed,
      'commands': public[:len(commands)],
      'runs': {n: {'steps': records[n]['steps'],
                   'seconds': records[n]['seconds'],
                   'config_arg': arg_text}
               for n, arg_text in zip(names, public[len(commands):])}}

  h = embedding_path = None
  if 'h' in names:
    log('[reproduce] report: evaluating H')
    cfg = module.get_config(arg('h'))
    ev = evaluate_h(os.path.join(workdir, 'h'), cfg, max_examples)
    h = ev['loaded']
    results['h'] = ev['metrics']
    results['h']['model'] = dict(cfg.model.kwargs)
    sections.append(f'### Ordering network H (test split, '
                    f'{ev["metrics"]["n"]} examples)\n\n'
                    + h_table(ev['metrics'], dataset, subset))
    title = (f'H on the {dataset} test split: hit {100 * results["h"]["hit"]:.1f}%, '
             f'con@3 {100 * results["h"]["con@3"]:.1f}%')
    embedding_path = plot_embedding(os.path.join(out_dir, 'embedding.png'),
                                    ev['embeddings'], ev['u'], ev['v'], title)
    files.append(embedding_path)

  gen_names = [n for n in names
               if module.RUN_SPECS[n][0] == 'generator']
  # "copy the blur": the evaluator's 'blur/' metrics, computed with the first
  # run on each distinct test set (same examples, crop and masks).
  gen, baselines, test_set = {}, {}, {}
  for name in gen_names:
    log(f'[reproduce] report: evaluating {name}')
    cfg = module.get_config(arg(name, h_checkpoint=''))
    test_set[name] = key = _test_set_key(cfg, max_examples)
    metrics_, examples = evaluate_generator(
        os.path.join(workdir, name), cfg, h=h, lpips=lpips,
        num_examples=num_examples, max_examples=max_examples,
        baseline=key not in baselines)
    gen[name], blur = split_baseline(metrics_)
    if key not in baselines:   # test sets that score the same share a row
      same = [m for m in baselines.values() if _same_metrics(m, blur)]
      baselines[key] = same[0] if same else blur
      if len(baselines) == 1:
        files.extend(save_strip(out_dir, 'copy_blur',
                                copy_blur_examples(examples)))
    files.extend(save_strip(out_dir, name, examples))
  blur_of = {name: baselines[test_set[name]] for name in gen_names}
  if gen_names:
    results['copy_blur'] = blur_of[gen_names[0]]
  distinct = _unique(list(baselines.values()))
  if len(distinct) > 1:
    results['copy_blur_by_run'] = blur_of
  results['generators'] = gen
  gains = outer_gains(gen)
  results['hypercut_gains'] = gains

  for family in _families(gen_names):
    members = [n for n in gen_names if _variant(n)[0] == family]
    sections.append(
        f'### {FAMILY_LABELS[family]}: per-frame pPSNR (dB)\n\n'
        + frames_table(gen, members, blur_of[members[0]]))
  if gen_names:
    blur_metrics = distinct[0]
    if len(distinct) > 1:
      blur_metrics = [
          ('copy the blur (' + ', '.join(
              _unique(FAMILY_LABELS[_variant(n)[0]] for n in gen_names
                      if blur_of[n] is m)) + ' test inputs)', m)
          for m in distinct]
    n_eval = int(next(iter(gen.values()))['n'])
    sections.append(f'### Pooled order-aware metrics ({n_eval} test examples)'
                    '\n\n' + pooled_table(gen, gen_names, blur_metrics)
                    + '\n\n"pred hit / con" = hit / con of the predicted '
                    'frames under the frozen H: how consistently a generator '
                    'commits to one order (none for "copy the blur": its 7 '
                    'frames are identical).')
  if gains:
    sections.append('### What + HyperCUT changes (pPSNR difference)\n\n'
                    + gains_table(gains))
  p_n = best_of_n_results(records, gen_names)
  if p_n:
    results['best_of_n'] = p_n
    sections.append('### Animation-from-Blur with sampled guidance (P_n)\n\n'
                    + best_of_n_table(p_n))
  sections.append('### Runs\n\n' + runs_table(records))

  figures = []
  if embedding_path:
    figures.append('H\'s embeddings of the test pairs: PCA (left; blue = the '
                   'pair in true time order, orange = swapped) and the '
                   'hyperplane scores of each pair in both orders (right).'
                   f'\n\n![H embeddings]({{out}}/{os.path.basename(embedding_path)})')
  strip_lines = []
  for name in (['copy_blur'] + gen_names) if gen_names else []:
    label = 'copy the blur' if name == 'copy_blur' else _label(name)
    strip_lines.append(f'| {label} | ![{name}]({{out}}/strip_{name}.png) | '
                       f'[GIF]({{out}}/strip_{name}.gif) |')
  if strip_lines:
    figures.append('Test inputs (same for every method): blur, the 7 '
                   'predicted frames, the 7 ground-truth frames.\n\n'
                   '| method | strip | animation |\n|---|---|---|\n'
                   + '\n'.join(strip_lines))
  markdown = '\n\n'.join(sections)
  tables_path = os.path.join(out_dir, 'tables.md')
  with open(tables_path, 'w', encoding='utf-8') as f:
    f.write(markdown + '\n')
  files.append(tables_path)
  results_path = os.path.join(out_dir, 'results.json')
  _write_json(results_path, _json_safe(results))
  files.append(results_path)
  log(f'[reproduce] report written to {out_dir}')
  return {'markdown': markdown, 'figures': figures, 'results': results,
          'files': files}


def portable(texts, workdir: str) -> list:
  """`texts` with every run's workdir replaced by a placeholder.

  The workdirs are `workdir` and each `--workdir=...` named in `texts`; with
  one of them it becomes `W`, with several `W1`, `W2`, ... (in order of
  appearance), so a report names no path of the machine it ran on.
  """
  roots = _unique([workdir] + [m for t in texts if t
                               for m in re.findall(r'--workdir=(\S+)', t)])
  roots = _unique([os.path.abspath(os.path.expanduser(r)) for r in roots])
  names = {r: 'W' if len(roots) == 1 else f'W{i + 1}'
           for i, r in enumerate(roots)}
  out = []
  for t in texts:
    for root in sorted(roots, key=len, reverse=True):   # longest first
      t = re.sub(re.escape(root) + r'(?![\w.-])', names[root], t) if t else t
    out.append(t)
  return out


def _unique(items):
  out = []
  for item in items:
    if item and item not in out:
      out.append(item)
  return out


def _json_safe(x):
  if isinstance(x, dict):
    return {str(k): _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return _finite(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def rewrite_doc(doc_path: str, block: str) -> None:
  """Replaces the text between BEGIN and END in `doc_path` with `block`."""
  with open(doc_path, encoding='utf-8') as f:
    text = f.read()
  start, stop = text.find(BEGIN), text.find(END)
  if start < 0 or stop < start:
    raise ValueError(f'{doc_path}: needs the markers {BEGIN} and {END} '
                     '(in that order) around the generated block')
  new = text[:start + len(BEGIN)] + '\n' + block.strip() + '\n' + text[stop:]
  tmp = doc_path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(new)
  os.replace(tmp, doc_path)


def doc_block(report_out: dict, out_dir: str, doc_path: str, *, header: str
              ) -> str:
  """The generated block of the docs: header, tables, figures (links
  relative to the doc)."""
  rel = os.path.relpath(os.path.abspath(out_dir),
                        os.path.dirname(os.path.abspath(doc_path)))
  rel = rel.replace(os.sep, '/')
  figures = [f.replace('{out}', rel) for f in report_out['figures']]
  return '\n\n'.join([header, report_out['markdown'], *figures])


# =============================================================================
# CLI.
# =============================================================================
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Root of the run workdirs (<workdir>/<run>).')
_MODE = flags.DEFINE_enum('mode', 'cpu', list(MODES),
                          'cpu: synthetic ~1.5 h CPU budget; tiny: tests; '
                          'paper: real data, paper settings.')
_DATASET = flags.DEFINE_enum('dataset', 'synthetic',
                             ['synthetic', 'reds', 'baist', 'rb2v'],
                             'Dataset of every run.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'Prepared TFDS data dir '
                                '(real datasets).')
_SUBSET = flags.DEFINE_string('subset', '', 'RB2V config: street|face|hand.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of every run (init, data order, '
                             'synthetic records).')
_ONLY = flags.DEFINE_string('only', None, 'Comma-separated runs to train and '
                            'report (default: all).')
_OUT = flags.DEFINE_string('out', None, 'Report directory (default '
                           '<workdir>/report).')
_DOC = flags.DEFINE_string('doc', None, 'Markdown file whose generated block '
                           'is rewritten (e.g. docs/reproduction.md).')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Skip training; report '
                                 'the finished runs.')
_LPIPS = flags.DEFINE_bool('lpips', True, 'pLPIPS (LPIPS-AlexNet) in the '
                           'report.')
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 3, 'Test examples in '
                                     'each strip.')
_MAX_EVAL = flags.DEFINE_integer('max_eval', 0, 'Evaluate at most this many '
                                 'test examples (0: the whole test split).')
_CONFIG_FILE = flags.DEFINE_string('config_file', None, 'A run-config file '
                                   'in the form of configs/reproduce.py '
                                   '(default: hypercut_jax.configs.reproduce).')
flags.mark_flags_as_required(['workdir'])


def _afb_available() -> bool:
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  return 'zhong2022' in models.REGISTRY


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  module = load_config_module(_CONFIG_FILE.value)
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  out_dir = os.path.abspath(os.path.expanduser(
      _OUT.value or os.path.join(workdir, 'report')))
  kw = dict(mode=_MODE.value, dataset=_DATASET.value, seed=_SEED.value,
            data_dir=_DATA_DIR.value, subset=_SUBSET.value)
  try:
    names = select_runs(module, _ONLY.value, afb=_afb_available()
                        and bool(getattr(module, 'AFB_ENABLED', False)))
    if _DOC.value and not os.path.isfile(_DOC.value):
      raise FileNotFoundError(f'--doc={_DOC.value}: no such file')
    for name in names:   # every config validates before anything trains
      module.get_config(config_arg(name, **kw))
  except (ValueError, FileNotFoundError) as e:
    print(f'{type(e).__name__}: {e}', file=sys.stderr)
    sys.exit(2)
  os.makedirs(workdir, exist_ok=True)
  command = 'python -m hypercut_jax.reproduce ' + ' '.join(sys.argv[1:])
  records = None
  if not _REPORT_ONLY.value:
    t0 = time.time()
    records = train_runs(module, names, workdir, command=command, **kw)
    if any(n not in records for n in names):
      return   # preempted: rerun to resume
    logging.info('training took %.1f min', (time.time() - t0) / 60)
  report_out = write_report(
      module, names, workdir, out_dir, records=records, lpips=_LPIPS.value,
      num_examples=_NUM_EXAMPLES.value, max_examples=_MAX_EVAL.value or None,
      commands=[command], **kw)
  if _DOC.value:
    header = ('Generated by ' + ', then '.join(
        f'`{c}`' for c in report_out['results']['commands'])
              + f' (mode={_MODE.value}, dataset={_DATASET.value}, '
              f'seed={_SEED.value}).')
    rewrite_doc(_DOC.value, doc_block(report_out, out_dir, _DOC.value,
                                      header=header))
    print(f'[reproduce] rewrote the generated block of {_DOC.value}')
  print(report_out['markdown'], flush=True)


if __name__ == '__main__':
  app.run(main)

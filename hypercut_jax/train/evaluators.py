"""Evaluators: hit/con of the ordering network, order-aware image metrics.

Each evaluator is a small class (big_vision `evaluators/mean.py` style):
built once with a function that produces batches and a model function, its
`run()` walks the eval batches, sums *per-example* values of the real
examples (`batch['mask']` True; padding rows never count) and divides once at
the end. The per-batch maths is jitted at module level with the model
functions as static arguments, so every instance built with the same
functions shares one compilation.

Eval batches are numpy dicts `{'blur': uint8[B,H,W,3], 'sharp':
uint8[B,T,H,W,3], 'id': ..., 'mask': bool[B]}` (T = 7; no 'mask' = all rows
real). Conversion of `sharp` to f32 in [0,1] (x / 255) happens inside the
evaluator's jitted function: model functions always receive float frames.

- `OrderingEvaluator(batches_fn, score_fn)`: 'hit', 'hit_first', 'con@2',
  'con@3', 'n'.
- `GeneratorEvaluator(batches_fn, predict_fn, score_fn=None, lpips=True)`:
  'ppsnr', 'ppsnr_f0'..'ppsnr_f6', 'pssim', 'plpips', 'pred_hit',
  'pred_hit_first', 'pred_con@2', 'pred_con@3', 'n', the same image metrics
  of the "copy the blur" baseline under 'blur/' ('blur/ppsnr', ...), plus a
  few examples.
- `BestOfNEvaluator(batches_fn, sample_fn, ns=(1,3,5))`: 'p{n}/ppsnr',
  'p{n}/pssim', 'p{n}/plpips' for stochastic generators.
- `PerExampleEvaluator(batches_fn, per_example_fn, keys)`: the mean over the
  real examples of whatever per-example values a function returns (e.g. the
  guidance predictor's accuracy and KL, `train/animation.py`).

Evaluators from the config (`config.eval.extra`): a list of entries
`{'name': N, **settings}`, N a name registered with `@register(N)` or an
importable 'module.path:Class'. The loop builds each once per stage as
`Class(batches_fn=..., mesh=..., config=<stage config>, **settings)` and
merges `run(state) -> {metric: float}` into every evaluation's metrics
(logged as 'eval/<metric>'). A new evaluator is its module plus one config
line; see `tests/evaluator_registry_test.py`.

Model functions may take extra traced arguments (e.g. the current params,
so that evaluating a changing model does not recompile): `run(*args)` calls
`score_fn(*args, frames)` / `predict_fn(*args, batch)` /
`sample_fn(*args, batch, key)`.
"""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np

from hypercut_jax import losses
from hypercut_jax import metrics

_N_FRAMES = 7
_CON_KS = (2, 3)


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------
# One LPIPS function per backbone per process: a cached factory keeps the
# static argument identical across evaluator instances (one compilation).
_lpips_fn = functools.cache(metrics.make_lpips)


def _check_batch(batch, keys=('sharp',)):
  """Validates one host batch; returns its mask as bool[B]."""
  if not isinstance(batch, dict):
    raise ValueError(f'eval batches must be dicts of arrays, got {type(batch).__name__}')
  for key in keys:
    if key not in batch:
      raise ValueError(f'eval batch has no {key!r}; keys: {sorted(batch)}')
  sharp = batch['sharp']
  if sharp.ndim != 5 or sharp.shape[1] != _N_FRAMES or sharp.shape[-1] != 3:
    raise ValueError(f"batch['sharp'] must be [B,{_N_FRAMES},H,W,3], got shape {sharp.shape}")
  b = sharp.shape[0]
  mask = batch.get('mask')
  mask = np.ones((b,), bool) if mask is None else np.asarray(mask)
  if mask.shape != (b,) or mask.dtype != bool:
    raise ValueError(f"batch['mask'] must be bool[{b}], got {mask.dtype}{list(mask.shape)}")
  if 'blur' in keys and batch['blur'].shape != sharp.shape[:1] + sharp.shape[2:]:
    raise ValueError(f"batch['blur'] must be [B,H,W,3] = {sharp.shape[:1] + sharp.shape[2:]}, "
                     f"got shape {batch['blur'].shape}")
  return mask


def _put(x, sharding):
  """Host array -> device: as is (jit places it) or as a global array with `sharding`."""
  if sharding is None:
    return x
  return jax.make_array_from_process_local_data(sharding, np.asarray(x))


def _global_shape(host_array, sharding):
  """Shape of the global array a process-local batch becomes under `sharding`."""
  shape = tuple(np.shape(host_array))
  if sharding is None:
    return shape
  return (shape[0] * jax.process_count(),) + shape[1:]


def _check_scores(u, v, batch_size):
  n_pairs = len(losses.pair_indices(_N_FRAMES))
  for name, s in (('u', u), ('v', v)):
    if s.shape != (batch_size, n_pairs):
      raise ValueError(f'score_fn must return (u, v), each f32[B,{n_pairs}] = '
                       f'[{batch_size},{n_pairs}]; got {name} with shape {s.shape}')


def _ordering_per_example(u, v, prefix=''):
  """u, v: f32[B,3] -> dict of f32[B]: hit, hit_first, con@2, con@3 (prefixed)."""
  out = {f'{prefix}hit': metrics.hit(u, v),
         f'{prefix}hit_first': metrics.hit(u, v, first_pair_only=True)}
  for k in _CON_KS:
    out[f'{prefix}con@{k}'] = metrics.con(u, k)
  return out


def _accumulate(acc, sums):
  return sums if acc is None else jax.tree.map(jnp.add, acc, sums)


def _finalize(acc, what):
  if acc is None:
    raise ValueError(f'{what}: batches_fn() yielded no batches')
  out = metrics.finalize(acc)
  out['n'] = float(jax.device_get(acc['count']))
  return out


def _host_rows(x):
  """The process-local rows of a prediction as numpy (addressable shards, in order)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    shards = {}
    for shard in x.addressable_shards:
      start = shard.index[0].start or 0
      shards.setdefault(start, shard.data)
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])
  return np.asarray(jax.device_get(x))


# ----------------------------------------------------------------------------
# Jitted per-batch work (module level: compiled once per set of static fns).
# ----------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(0,))
def _ordering_sums(score_fn, args, sharp, mask):
  """sharp: uint8[B,7,H,W,3]; mask: bool[B] -> masked sums of hit/con + 'count'."""
  u, v = score_fn(*args, metrics.to_float(sharp))
  _check_scores(u, v, sharp.shape[0])  # shapes are static: checked once, at trace time
  return metrics.masked_sums(_ordering_per_example(u, v), mask)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _image_metrics(lpips_fn, score_fn, max_db, level, pred, sharp):
  """Per-example order-aware metrics of one batch -> dict of f32[B].

  pred: f32[B,7,H,W,3] in [0,1]; sharp: uint8[B,7,H,W,3] (or float in [0,1]).
  With score_fn, also hit/con of the predictions under H ('pred_' prefix).
  """
  pred = pred.astype(jnp.float32)
  out = metrics.order_aware_summary(pred, metrics.to_float(sharp), lpips_fn, level=level,
                                    max_db=max_db)
  if score_fn is not None:
    u, v = score_fn(pred)
    _check_scores(u, v, pred.shape[0])
    out.update(_ordering_per_example(u, v, 'pred_'))
  return out


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _copy_blur_metrics(lpips_fn, max_db, level, blur, sharp):
  """The "copy the blur" baseline of one batch -> dict of f32[B].

  blur: uint8[B,H,W,3] (or float in [0,1]), repeated as all 7 predicted
  frames; sharp: uint8[B,7,H,W,3]. The image metrics of `_image_metrics`
  (no H scores: 7 identical frames have no order).
  """
  pred = jnp.repeat(metrics.to_float(blur)[:, None], _N_FRAMES, axis=1)
  return _image_metrics(lpips_fn, None, max_db, level, pred, sharp)


def _prefixed(values, prefix):
  """{prefix + name: value} of finalized metrics, without the count 'n'."""
  return {f'{prefix}{k}': v for k, v in values.items() if k != 'n'}


@jax.jit
def _masked_sums(per_example, mask):
  return metrics.masked_sums(per_example, mask)


@functools.partial(jax.jit, static_argnums=(0,))
def _best_of_n_sums(ns, samples, mask):
  """samples: dict name -> f32[S,B] (S >= max(ns)) -> masked sums of 'p{n}/name' + 'count'."""
  per_example = {}
  for n in ns:
    for name, values in samples.items():
      per_example[f'p{n}/{name}'] = metrics.best_of_n(
          values[:n], axis=0, higher_is_better=(name != 'plpips'))
  return metrics.masked_sums(per_example, mask)


# ----------------------------------------------------------------------------
# Evaluators.
# ----------------------------------------------------------------------------
class OrderingEvaluator:
  """hit / con@k of the ordering network H on ground-truth frame pairs.

  Args:
    batches_fn: () -> fresh iterable of eval batches (module docstring).
    score_fn: ([*args,] frames: f32[B,7,H,W,3] in [0,1]) -> (u, v), each
      f32[B,3]: u[:, k] = s([x_k, x_{6-k}]), v[:, k] = s([x_{6-k}, x_k]).
      Traceable (e.g. jitted); it is called inside the evaluator's jit and
      must be hashable (a function object). Build it once.
    data_sharding: optional `jax.sharding.Sharding` for the batch axis; host
      arrays then become global arrays with
      `jax.make_array_from_process_local_data` (multi-host evaluation).

  `run(*args)` -> dict of floats: 'hit' (share of the 3 pairs with
  `u*v < 0`), 'hit_first' (pair (0,6) only: the official validation),
  'con@2', 'con@3' (shares of examples whose first 2 / 3 forward scores
  share a sign) and 'n' (examples counted, padding excluded).
  """

  def __init__(self, batches_fn, score_fn, data_sharding=None):
    if not callable(batches_fn) or not callable(score_fn):
      raise ValueError('OrderingEvaluator needs callables batches_fn and score_fn')
    self.batches_fn = batches_fn
    self.score_fn = score_fn
    self.data_sharding = data_sharding

  def run(self, *args):
    acc = None
    for batch in self.batches_fn():
      mask = _check_batch(batch)
      sums = _ordering_sums(self.score_fn, args, _put(batch['sharp'], self.data_sharding),
                            _put(mask, self.data_sharding))
      acc = _accumulate(acc, sums)
    return _finalize(acc, 'OrderingEvaluator')


class GeneratorEvaluator:
  """Order-aware image metrics of a generator (and hit/con of its outputs under H).

  Args:
    batches_fn: () -> fresh iterable of eval batches (module docstring).
    predict_fn: ([*args,] batch: the host batch dict) -> f32[B,7,H,W,3] in
      [0,1]. Called outside the evaluator's jit (it gets the whole batch
      dict, ids and mask included; place and jit inside it as needed).
    score_fn: optional H scorer as in `OrderingEvaluator` (called on the
      predictions; must not need extra args): adds 'pred_hit',
      'pred_hit_first', 'pred_con@2', 'pred_con@3'.
    lpips: True -> pLPIPS with LPIPS-AlexNet (`metrics.make_lpips`; images
      need H, W >= 31); False -> no 'plpips'.
    num_examples_to_keep: real examples (in batch order) kept for images.
    max_db: optional cap on per-frame PSNR. Default None (official, no
      cap): an exactly matching frame has PSNR +inf, so a perfect prediction
      gives pooled 'ppsnr' = inf; its per-frame values are then not
      meaningful (both directions have mean inf, since the middle frame
      matches either way, and the tie rule keeps the reversal). Pass e.g.
      max_db=100.0 when exact matches can occur (synthetic tests).
    level: 'sequence' (official: direction chosen per sequence) | 'pair'.
    data_sharding: as in `OrderingEvaluator` (for `blur`, `sharp` and `mask`).
    baseline: True -> also score "copy the blur" (the blur repeated as all 7
      frames) with the same metrics, examples and masks: 'blur/ppsnr',
      'blur/ppsnr_f0'..'blur/ppsnr_f6', 'blur/pssim', 'blur/plpips' (with
      lpips); no 'blur/pred_*' (7 identical frames have no order) and no
      'blur/n' (it is 'n').
    cache_baseline: True -> the baseline (which does not depend on the
      model) is computed on the first `run()` only and reused; batches_fn
      must then yield the same examples on every run (a later run with
      another example count raises). False -> computed on every run.

  `run(*args)` -> (metrics, examples). metrics: dict of floats 'ppsnr'
  (mean over examples of the mean over frames), 'ppsnr_f0'..'ppsnr_f6'
  (per frame of the direction kept per sequence), 'pssim', 'plpips',
  'pred_*', 'n' and the 'blur/' baseline. examples: {'blur':
  uint8[n,H,W,3], 'pred': f32[n,7,H,W,3], 'gt': uint8[n,7,H,W,3], 'id':
  [n]} with n <= num_examples_to_keep (empty dict when 0).
  """

  def __init__(self, batches_fn, predict_fn, score_fn=None, lpips=True,
               num_examples_to_keep=4, max_db=None, level='sequence', data_sharding=None,
               baseline=True, cache_baseline=True):
    if not callable(batches_fn) or not callable(predict_fn):
      raise ValueError('GeneratorEvaluator needs callables batches_fn and predict_fn')
    if score_fn is not None and not callable(score_fn):
      raise ValueError(f'score_fn must be callable or None, got {type(score_fn).__name__}')
    if level not in ('sequence', 'pair'):
      raise ValueError(f"level={level!r}; known: ['sequence', 'pair']")
    if int(num_examples_to_keep) < 0:
      raise ValueError(f'num_examples_to_keep must be >= 0, got {num_examples_to_keep}')
    self.batches_fn = batches_fn
    self.predict_fn = predict_fn
    self.score_fn = score_fn
    self.lpips = bool(lpips)
    self.num_examples_to_keep = int(num_examples_to_keep)
    self.max_db = None if max_db is None else float(max_db)
    self.level = level
    self.data_sharding = data_sharding
    self.baseline = bool(baseline)
    self.cache_baseline = bool(cache_baseline)
    self._baseline_cache = None   # (n, {'blur/...': float}) after the first run

  def run(self, *args):
    lpips_fn = _lpips_fn('alexnet') if self.lpips else None
    score_blur = self.baseline and self._baseline_cache is None
    acc, blur_acc, kept = None, None, []
    n_kept = 0
    for batch in self.batches_fn():
      mask = _check_batch(batch, keys=('blur', 'sharp'))
      pred = self.predict_fn(*args, batch)
      want = _global_shape(batch['sharp'], self.data_sharding)
      if tuple(pred.shape) != want:
        raise ValueError(f"predict_fn must return f32{list(want)} like "
                         f"batch['sharp'], got shape {tuple(pred.shape)}")
      sharp = _put(batch['sharp'], self.data_sharding)
      per_example = _image_metrics(lpips_fn, self.score_fn, self.max_db, self.level, pred, sharp)
      mask_dev = _put(mask, self.data_sharding)
      acc = _accumulate(acc, _masked_sums(per_example, mask_dev))
      if score_blur:
        blur = _put(batch['blur'], self.data_sharding)
        blur_acc = _accumulate(blur_acc, _masked_sums(
            _copy_blur_metrics(lpips_fn, self.max_db, self.level, blur, sharp), mask_dev))
      if n_kept < self.num_examples_to_keep and mask.any():
        rows = np.flatnonzero(mask)[:self.num_examples_to_keep - n_kept]
        pred_host = _host_rows(pred)
        ids = batch.get('id')
        kept.append({'blur': np.asarray(batch['blur'])[rows],
                     'pred': pred_host[rows].astype(np.float32),
                     'gt': np.asarray(batch['sharp'])[rows],
                     'id': (np.asarray(ids)[rows] if ids is not None
                            else np.full(len(rows), '', dtype=object))})
        n_kept += len(rows)
    results = _finalize(acc, 'GeneratorEvaluator')
    if self.baseline:
      results.update(self._baseline(blur_acc, results['n']))
    examples = ({k: np.concatenate([e[k] for e in kept]) for k in kept[0]} if kept else {})
    return results, examples

  def _baseline(self, blur_acc, n):
    """The 'blur/' metrics: finalized from this run's sums, or the cached ones."""
    if blur_acc is not None:
      values = _prefixed(metrics.finalize(blur_acc), 'blur/')
      if self.cache_baseline:
        self._baseline_cache = (n, values)
      return values
    cached_n, values = self._baseline_cache
    if cached_n != n:
      raise ValueError(f'GeneratorEvaluator: this run saw {n:g} examples, the cached '
                       f'"copy the blur" baseline {cached_n:g}; batches_fn must yield the '
                       'same examples every run, or pass cache_baseline=False')
    return dict(values)


class BestOfNEvaluator:
  """P_n of a stochastic generator: best of the first n of max(ns) samples.

  For each batch, `max(ns)` predictions are drawn with keys
  `fold_in(fold_in(key(seed), batch_index), sample_index)` (the same numbers
  on every run); each is scored per example (order-aware pPSNR, pSSIM and
  pLPIPS, as `GeneratorEvaluator`). For each n in ns, each metric's best of
  the first n samples is chosen independently (`metrics.best_of_n`: max,
  min for pLPIPS), so P_n is monotone in n by construction.

  Args:
    batches_fn: () -> fresh iterable of eval batches.
    sample_fn: ([*args,] batch, key) -> f32[B,7,H,W,3] in [0,1].
    ns: increasing sample counts, e.g. (1, 3, 5) (the paper's P1/P3/P5).
    lpips, max_db, level, data_sharding: as in `GeneratorEvaluator`.
    seed: int, root of the sampling keys.

  `run(*args)` -> dict of floats 'p{n}/ppsnr', 'p{n}/pssim', 'p{n}/plpips'
  (with lpips) for each n, and 'n' (examples counted).
  """

  def __init__(self, batches_fn, sample_fn, ns=(1, 3, 5), lpips=True, max_db=None,
               level='sequence', data_sharding=None, seed=0):
    if not callable(batches_fn) or not callable(sample_fn):
      raise ValueError('BestOfNEvaluator needs callables batches_fn and sample_fn')
    ns = tuple(int(n) for n in ns)
    if not ns or any(n < 1 for n in ns) or len(set(ns)) != len(ns):
      raise ValueError(f'ns must be distinct positive ints, got {ns}')
    if level not in ('sequence', 'pair'):
      raise ValueError(f"level={level!r}; known: ['sequence', 'pair']")
    self.batches_fn = batches_fn
    self.sample_fn = sample_fn
    self.ns = tuple(sorted(ns))
    self.lpips = bool(lpips)
    self.max_db = None if max_db is None else float(max_db)
    self.level = level
    self.data_sharding = data_sharding
    self.seed = int(seed)

  def run(self, *args):
    lpips_fn = _lpips_fn('alexnet') if self.lpips else None
    root = jax.random.key(self.seed)
    acc = None
    for batch_index, batch in enumerate(self.batches_fn()):
      mask = _check_batch(batch)
      sharp = _put(batch['sharp'], self.data_sharding)
      batch_key = jax.random.fold_in(root, batch_index)
      samples = []
      for s in range(max(self.ns)):
        pred = self.sample_fn(*args, batch, jax.random.fold_in(batch_key, s))
        want = _global_shape(batch['sharp'], self.data_sharding)
        if tuple(pred.shape) != want:
          raise ValueError(f"sample_fn must return f32{list(want)} like "
                           f"batch['sharp'], got shape {tuple(pred.shape)}")
        per_example = _image_metrics(lpips_fn, None, self.max_db, self.level, pred, sharp)
        samples.append({k: per_example[k] for k in ('ppsnr', 'pssim', 'plpips')
                        if k in per_example})
      stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *samples)
      acc = _accumulate(acc, _best_of_n_sums(self.ns, stacked, _put(mask, self.data_sharding)))
    return _finalize(acc, 'BestOfNEvaluator')


class PerExampleEvaluator:
  """Means over the real examples of per-example values of any function.

  Args:
    batches_fn: () -> fresh iterable of eval batches (module docstring; no
      'sharp' is needed, only `keys` and optionally 'mask').
    per_example_fn: ([*args,] arrays, key) -> dict name -> f32[B]; arrays =
      {k: batch[k] for k in keys} placed as global arrays (with
      `data_sharding`) or as is; key: a PRNG key, `fold_in(key(seed),
      batch_index)`, so every run draws the same numbers. Jit it (and give
      it out_shardings) yourself; it is called once per batch.
    keys: the batch entries the function needs, e.g. ('blur', 'guidance').
    data_sharding, seed: as in `BestOfNEvaluator`.

  `run(*args)` -> dict of floats (each name's mean) and 'n'.
  """

  def __init__(self, batches_fn, per_example_fn, keys, data_sharding=None, seed=0):
    if not callable(batches_fn) or not callable(per_example_fn):
      raise ValueError('PerExampleEvaluator needs callables batches_fn and per_example_fn')
    keys = tuple(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
      raise ValueError(f'keys must be a non-empty sequence of batch keys, got {keys!r}')
    self.batches_fn = batches_fn
    self.per_example_fn = per_example_fn
    self.keys = keys
    self.data_sharding = data_sharding
    self.seed = int(seed)

  def run(self, *args):
    root = jax.random.key(self.seed)
    acc = None
    for batch_index, batch in enumerate(self.batches_fn()):
      if not isinstance(batch, dict):
        raise ValueError(f'eval batches must be dicts of arrays, got {type(batch).__name__}')
      missing = [k for k in self.keys if k not in batch]
      if missing:
        raise ValueError(f'eval batch has no {missing}; keys: {sorted(batch)}')
      b = np.shape(batch[self.keys[0]])[0]
      mask = batch.get('mask')
      mask = np.ones((b,), bool) if mask is None else np.asarray(mask)
      if mask.shape != (b,) or mask.dtype != bool:
        raise ValueError(f"batch['mask'] must be bool[{b}], got {mask.dtype}{list(mask.shape)}")
      arrays = {k: _put(np.asarray(batch[k]), self.data_sharding) for k in self.keys}
      per_example = self.per_example_fn(*args, arrays, jax.random.fold_in(root, batch_index))
      want = (_global_shape(batch[self.keys[0]], self.data_sharding)[0],)
      for name, values in per_example.items():
        if tuple(values.shape) != want:
          raise ValueError(f'per_example_fn must return f32{list(want)} per name; '
                           f'{name!r} has shape {tuple(values.shape)}')
      acc = _accumulate(acc, _masked_sums(per_example, _put(mask, self.data_sharding)))
    return _finalize(acc, 'PerExampleEvaluator')


# ---------------------------------------------------- from the config ---
REGISTRY = {}


def register(name: str):
  """Class decorator: `config.eval.extra` entries can name the class."""
  def add(cls):
    if REGISTRY.get(name, cls) is not cls:
      raise ValueError(f'evaluator name {name!r} is already registered for '
                       f'{REGISTRY[name].__name__}')
    REGISTRY[name] = cls
    return cls
  return add


def resolve(name: str):
  """The evaluator class of a registered name or a 'module.path:Class'."""
  if name in REGISTRY:
    return REGISTRY[name]
  module, sep, attr = str(name).partition(':')
  if not sep or not module or not attr:
    raise ValueError(f'evaluator {name!r}: not a registered name '
                     f'({sorted(REGISTRY)}) nor a \'module.path:Class\'')
  try:
    return getattr(importlib.import_module(module), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f'evaluator {name!r} cannot be imported: {e}') from None


def check_specs(specs, prefix: str = 'config') -> None:
  """ValueError naming `eval.extra[i]` unless each entry resolves."""
  if specs is None:
    return
  if not isinstance(specs, (list, tuple)):
    raise ValueError(f'{prefix}.eval.extra={specs!r}; expected a list of '
                     "{'name': ..., **settings}")
  for i, spec in enumerate(specs):
    spec = spec.to_dict() if hasattr(spec, 'to_dict') else spec
    if not isinstance(spec, dict) or not isinstance(spec.get('name'), str):
      raise ValueError(f'{prefix}.eval.extra[{i}]={spec!r}; expected '
                       "{'name': str, **settings}")
    try:
      resolve(spec['name'])
    except ValueError as e:
      raise ValueError(f'{prefix}.eval.extra[{i}]: {e}') from None


def build_extra(specs, **context) -> list:
  """The evaluators of `config.eval.extra`, each built with `context`
  (batches_fn, mesh, config) and its own settings."""
  out = []
  for spec in specs or ():
    spec = dict(spec.to_dict() if hasattr(spec, 'to_dict') else spec)
    cls = resolve(spec.pop('name'))
    out.append(cls(**context, **spec))
  return out

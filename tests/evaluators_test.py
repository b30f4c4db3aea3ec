"""Tests for hypercut_jax.train.evaluators (tiny images, CPU)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax.train import evaluators

# ---------------------------------------------------------------- helpers ---


def _batches(sharp, batch_size, pad_value=None):
  """Eval batches like the pipeline's: the last one padded, padding masked out.

  Padding rows are `pad_value` (or the inverted first rows) so that counting
  them would change every metric.
  """
  out = []
  for i in range(0, len(sharp), batch_size):
    s = sharp[i:i + batch_size]
    mask = np.ones(len(s), bool)
    if len(s) < batch_size:
      n_pad = batch_size - len(s)
      pad = (np.full((n_pad,) + s.shape[1:], pad_value, np.uint8) if pad_value is not None
             else 255 - sharp[:n_pad])
      s = np.concatenate([s, pad])
      mask = np.concatenate([mask, np.zeros(n_pad, bool)])
    out.append({'blur': s.mean(axis=1).round().astype(np.uint8), 'sharp': s,
                'id': np.array([f'ex{i + j}' for j in range(batch_size)]), 'mask': mask})
  return lambda: iter(out)


def _g(frames):
  """A per-frame feature: f32[B,7,H,W,3] -> f32[B,7]."""
  w = jnp.array([0.2, -0.5, 0.3])
  return jnp.mean(frames * w, axis=(2, 3, 4)) + jnp.mean(frames[:, :, :2, :2, 0], axis=(2, 3))


@jax.jit
def _antisymmetric_score(frames):
  """s(a, b) = g(x_a) - g(x_b): swapping a pair flips the sign by construction."""
  g = _g(frames)
  u = jnp.stack([g[:, k] - g[:, 6 - k] for k in range(3)], axis=-1)
  return u, -u


# Hand-built scores per example (rows 0..4 real, row 5 = what padding rows get).
#          u                 v                hits  first con@2 con@3
_U = np.array([
    [1., 2., 3.],  # v=(-1,-1,-1)      3/3   1     1     1
    [1., -2., 3.],  # v=(-1,-1,-1)      2/3   1     0     0
    [-1., -1., 0.],  # v=( 1, 1, 0)      2/3   1     1     0  (sign 0 is its own class)
    [2., 1., 1.],  # v=(-1,-1,-1)      3/3   1     1     1
    [0., 0., 0.],  # v=( 1, 1, 1)      0/3   0     1     1  (0*1 = 0 is no hit)
    [1., -1., 1.],  # padding: v=(-1,1,-1) 3/3 1     0     0
], np.float32)
_V = np.array([[-1, -1, -1], [-1, -1, -1], [1, 1, 0], [-1, -1, -1], [1, 1, 1], [-1, 1, -1]],
              np.float32)
# hit = (3+2+2+3+0) / 15; hit_first = 4/5; con@2 = 4/5; con@3 = 3/5.
_EXPECTED = {'hit': 10 / 15, 'hit_first': 0.8, 'con@2': 0.8, 'con@3': 0.6, 'n': 5.0}


@jax.jit
def _table_score(frames):
  """Looks the scores up by the example index written into the frames' first pixel."""
  idx = jnp.round(frames[:, 0, 0, 0, 0] * 255).astype(jnp.int32)
  return jnp.asarray(_U)[idx], jnp.asarray(_V)[idx]


def _index_frames(n):
  sharp = np.zeros((n, 7, 4, 4, 3), np.uint8)
  sharp[:, :, 0, 0, 0] = np.arange(n)[:, None]
  return sharp


@pytest.fixture(scope='module')
def gt():
  return np.random.default_rng(0).integers(0, 256, (3, 7, 32, 32, 3), dtype=np.uint8)


_NOISE = np.random.default_rng(7).standard_normal((4, 7, 32, 32, 3)).astype(np.float32)


def _noisy(sigma):
  """gt + sigma * fixed noise per example (looked up by id, so batching does not matter)."""
  def predict_fn(batch):
    idx = np.array([int(i[2:]) for i in batch['id']])
    x = jnp.asarray(batch['sharp']).astype(jnp.float32) / 255.0
    return jnp.clip(x + sigma * _NOISE[idx], 0.0, 1.0)
  return predict_fn


# ------------------------------------------------------ OrderingEvaluator ---


def test_ordering_antisymmetric_scorer_hits_every_pair():
  sharp = np.random.default_rng(1).integers(0, 256, (5, 7, 8, 8, 3), dtype=np.uint8)
  out = evaluators.OrderingEvaluator(_batches(sharp, 2), _antisymmetric_score).run()
  assert out['hit'] == 1.0 and out['hit_first'] == 1.0
  assert out['n'] == 5.0
  # con is data-dependent here: recompute it from the scorer directly.
  u, _ = _antisymmetric_score(jnp.asarray(sharp, jnp.float32) / 255.0)
  s = np.sign(np.asarray(u))
  assert out['con@2'] == pytest.approx(np.mean(s[:, 0] == s[:, 1]))
  assert out['con@3'] == pytest.approx(np.mean((s[:, 0] == s[:, 1]) & (s[:, 1] == s[:, 2])))


@pytest.mark.parametrize('batch_size', [1, 2, 3, 5])
def test_ordering_fixed_scores_hand_computed_with_padding(batch_size):
  # Padding rows carry index 5, whose scores would change every metric.
  out = evaluators.OrderingEvaluator(_batches(_index_frames(5), batch_size, pad_value=5),
                                     _table_score).run()
  assert out.keys() == _EXPECTED.keys()
  for k, v in _EXPECTED.items():
    assert out[k] == pytest.approx(v, abs=1e-6), k


def test_ordering_padding_would_count_without_mask():
  batches = _batches(_index_frames(5), 2, pad_value=5)
  unmasked = [{k: v for k, v in b.items() if k != 'mask'} for b in batches()]
  out = evaluators.OrderingEvaluator(lambda: iter(unmasked), _table_score).run()
  assert out['n'] == 6.0
  assert out['con@3'] == pytest.approx(3 / 6)


def test_ordering_compiles_once_and_passes_traced_args():
  @jax.jit
  def score(scale, frames):
    u, v = _table_score(frames)
    return scale * u, v
  batches = _batches(_index_frames(5), 2, pad_value=5)
  evaluators.OrderingEvaluator(batches, score).run(jnp.float32(1.0))
  size = evaluators._ordering_sums._cache_size()
  # A second instance and new parameter values reuse the compiled function.
  out = evaluators.OrderingEvaluator(batches, score).run(jnp.float32(-2.0))
  assert evaluators._ordering_sums._cache_size() == size
  # u -> -2u flips the sign of every u*v: only ex1's pair 1 (u*v = 2 > 0) now
  # hits; con is invariant to a global sign flip.
  assert out['hit'] == pytest.approx((0 + 1 + 0 + 0 + 0) / 15)
  assert out['con@2'] == pytest.approx(_EXPECTED['con@2'])


def test_ordering_sharded_batches_match_host_batches():
  # 8 fake CPU devices (conftest): the batch axis sharded over a 'data' mesh.
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharp = _index_frames(5)[np.arange(10) % 5]  # each hand-built example twice
  batches = _batches(sharp, 8, pad_value=5)
  out = evaluators.OrderingEvaluator(batches, _table_score, data_sharding=sharding).run()
  expected = {**_EXPECTED, 'n': 10.0}
  assert out.keys() == expected.keys()
  for k, v in expected.items():
    assert out[k] == pytest.approx(v, abs=1e-6), k


def test_ordering_bad_inputs_raise():
  with pytest.raises(ValueError, match='sharp'):
    evaluators.OrderingEvaluator(lambda: iter([{'blur': np.zeros((1, 4, 4, 3), np.uint8)}]),
                                 _table_score).run()
  bad = lambda f: (jnp.zeros((f.shape[0], 2)), jnp.zeros((f.shape[0], 2)))
  with pytest.raises(ValueError, match=r'f32\[B,3\]'):
    evaluators.OrderingEvaluator(_batches(_index_frames(2), 2), bad).run()
  with pytest.raises(ValueError, match='no batches'):
    evaluators.OrderingEvaluator(lambda: iter([]), _table_score).run()


# ----------------------------------------------------- GeneratorEvaluator ---


def test_generator_perfect_and_reversed_perfect(gt):
  # Perfect = the same float32 frames the evaluator compares against.
  perfect = lambda b: jnp.asarray(b['sharp']).astype(jnp.float32) / 255.0
  reversed_ = lambda b: jnp.flip(perfect(b), axis=1)
  # Default (max_db=None, official: no cap): an exact match has PSNR +inf, so
  # the pooled pPSNR is inf. Both directions then have mean inf (the middle
  # frame matches either way) and the tie rule keeps the reversal, so the
  # per-frame values are only meaningful with a cap (below).
  m_f, ex = evaluators.GeneratorEvaluator(_batches(gt, 2), perfect, lpips=True,
                                          num_examples_to_keep=2).run()
  m_r, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), reversed_, lpips=True).run()
  for m in (m_f, m_r):
    assert m['n'] == 3.0
    assert m['ppsnr'] == np.inf
    assert m['pssim'] == pytest.approx(1.0, abs=1e-5)
    assert m['plpips'] == pytest.approx(0.0, abs=1e-6)
  assert ex['blur'].shape == (2, 32, 32, 3) and ex['blur'].dtype == np.uint8
  assert ex['pred'].shape == (2, 7, 32, 32, 3) and ex['pred'].dtype == np.float32
  np.testing.assert_array_equal(ex['gt'], gt[:2])
  np.testing.assert_allclose(ex['pred'], gt[:2] / 255.0, atol=1e-6)
  assert list(ex['id']) == ['ex0', 'ex1']
  # Capped: every frame of the kept direction sits at the cap, either order.
  for fn in (perfect, reversed_):
    m, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), fn, lpips=False, max_db=100.0).run()
    assert m['ppsnr'] == pytest.approx(100.0)
    for t in range(7):
      assert m[f'ppsnr_f{t}'] == pytest.approx(100.0), t


def test_generator_noisy_lower_reversal_invariant_and_masked(gt):
  image_keys = {'ppsnr', 'pssim', 'plpips', *[f'ppsnr_f{t}' for t in range(7)]}
  keys = {'n', *image_keys, *[f'blur/{k}' for k in image_keys]}
  noisy = _noisy(0.05)
  m2, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), noisy, lpips=True).run()
  assert set(m2) == keys
  assert 15.0 < m2['ppsnr'] < 40.0 and 0.0 < m2['pssim'] < 1.0 and m2['plpips'] > 0.0
  # Padded batches of 2 (third row masked out) == one unpadded batch of 3.
  m3, _ = evaluators.GeneratorEvaluator(_batches(gt, 3), noisy, lpips=True).run()
  for k in keys:
    assert m2[k] == pytest.approx(m3[k], rel=1e-5), k
  # The time-reversed noisy prediction scores the same, frame by frame.
  rev = lambda b: jnp.flip(noisy(b), axis=1)
  mr, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), rev, lpips=True).run()
  for k in keys:
    assert mr[k] == pytest.approx(m2[k], rel=1e-5), k
  # More noise, lower pPSNR / pSSIM, higher pLPIPS.
  m_more, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), _noisy(0.2), lpips=True).run()
  assert m_more['ppsnr'] < m2['ppsnr'] - 5.0
  assert m_more['pssim'] < m2['pssim'] and m_more['plpips'] > m2['plpips']


def test_generator_padding_rows_do_not_count(gt):
  # Real rows predicted perfectly; padding rows (inverted frames) predicted badly.
  def predict_fn(batch):
    x = jnp.asarray(batch['sharp']).astype(jnp.float32) / 255.0
    return jnp.where(jnp.asarray(batch['mask'])[:, None, None, None, None], x, 1.0 - x)
  m, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), predict_fn, lpips=False,
                                       max_db=60.0).run()
  assert m['n'] == 3.0
  assert m['ppsnr'] == pytest.approx(60.0)  # capped; padding would pull it far down
  assert 'plpips' not in m


def test_generator_pred_hit_con_under_h(gt):
  m, _ = evaluators.GeneratorEvaluator(_batches(gt, 2), _noisy(0.05), score_fn=_antisymmetric_score,
                                       lpips=False, num_examples_to_keep=0).run()
  assert m['pred_hit'] == 1.0 and m['pred_hit_first'] == 1.0
  pred = np.asarray(_noisy(0.05)({'sharp': gt, 'id': ['ex0', 'ex1', 'ex2']}))
  u, _ = _antisymmetric_score(jnp.asarray(pred))
  s = np.sign(np.asarray(u))
  assert m['pred_con@2'] == pytest.approx(np.mean(s[:, 0] == s[:, 1]))
  assert 0.0 <= m['pred_con@3'] <= m['pred_con@2']


def _copy_blur(batch):
  """The blur as all 7 frames: what the 'blur/' baseline scores."""
  x = jnp.asarray(batch['blur']).astype(jnp.float32) / 255.0
  return jnp.repeat(x[:, None], 7, axis=1)


def test_generator_copy_the_blur_baseline_matches_a_copy_blur_model(gt):
  # The 'blur/' metrics are the model metrics of a model that copies the blur,
  # padding masked out (batches of 2 with one padding row == one batch of 3).
  ev = evaluators.GeneratorEvaluator(_batches(gt, 2), _noisy(0.05), score_fn=_antisymmetric_score,
                                     lpips=True)
  m, _ = ev.run()
  copy, _ = evaluators.GeneratorEvaluator(_batches(gt, 3), _copy_blur, lpips=True,
                                          baseline=False).run()
  assert not any(k.startswith('blur/') for k in copy)
  for k in ('ppsnr', 'pssim', 'plpips', *[f'ppsnr_f{t}' for t in range(7)]):
    assert m[f'blur/{k}'] == pytest.approx(copy[k], rel=1e-5), k
  assert not any(k.startswith('blur/pred_') for k in m) and 'blur/n' not in m
  assert m['pred_hit'] == 1.0   # the model's own keys are untouched
  # The blur is far from 7 random frames; the mildly noisy model is much closer.
  assert m['blur/ppsnr'] < m['ppsnr'] - 5.0
  # One value per frame (random frames: no frame is special here).
  assert len({round(m[f'blur/ppsnr_f{t}'], 6) for t in range(7)}) > 1


def test_generator_baseline_cached_after_the_first_run(gt, monkeypatch):
  calls = []
  real = evaluators._copy_blur_metrics
  monkeypatch.setattr(evaluators, '_copy_blur_metrics',
                      lambda *a: calls.append(1) or real(*a))
  ev = evaluators.GeneratorEvaluator(_batches(gt, 2), _noisy(0.05), lpips=False)
  first, _ = ev.run()
  assert len(calls) == 2   # two batches
  second, _ = ev.run()
  assert len(calls) == 2 and second == first
  uncached = evaluators.GeneratorEvaluator(_batches(gt, 2), _noisy(0.05), lpips=False,
                                           cache_baseline=False)
  uncached.run()
  uncached.run()
  assert len(calls) == 6
  # A later run over other examples cannot reuse the cache.
  runs = iter([_batches(gt, 2), _batches(gt[:2], 2)])
  changing = evaluators.GeneratorEvaluator(lambda: next(runs)(), _noisy(0.05), lpips=False)
  changing.run()
  with pytest.raises(ValueError, match='cache_baseline=False'):
    changing.run()


def test_generator_baseline_sharded_matches_host(gt):
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharp = np.concatenate([gt, gt[::-1], gt[:2]])   # 8 real rows
  host, _ = evaluators.GeneratorEvaluator(_batches(sharp, 8), _copy_blur, lpips=False,
                                          max_db=100.0).run()
  sharded, _ = evaluators.GeneratorEvaluator(_batches(sharp, 8), _copy_blur, lpips=False,
                                             max_db=100.0, data_sharding=sharding).run()
  for k, v in host.items():
    assert sharded[k] == pytest.approx(v, rel=1e-5), k
  assert host['blur/ppsnr'] == pytest.approx(host['ppsnr'], rel=1e-5)


def test_generator_bad_prediction_shape_raises(gt):
  with pytest.raises(ValueError, match='predict_fn'):
    evaluators.GeneratorEvaluator(_batches(gt, 2), lambda b: jnp.zeros((2, 7, 16, 16, 3)),
                                  lpips=False).run()


# ------------------------------------------------------- BestOfNEvaluator ---


def _sample_fn(batch, key):
  k_sigma, k_noise = jax.random.split(key)
  x = jnp.asarray(batch['sharp']).astype(jnp.float32) / 255.0
  sigma = jax.random.uniform(k_sigma, (x.shape[0], 1, 1, 1, 1), minval=0.02, maxval=0.3)
  return jnp.clip(x + sigma * jax.random.normal(k_noise, x.shape), 0.0, 1.0)


def test_best_of_n_monotone_and_deterministic(gt):
  ev = evaluators.BestOfNEvaluator(_batches(gt, 2), _sample_fn, ns=(1, 3, 5), lpips=True, seed=0)
  m = ev.run()
  assert m['n'] == 3.0
  for metric, sign in (('ppsnr', 1), ('pssim', 1), ('plpips', -1)):
    p1, p3, p5 = (sign * m[f'p{n}/{metric}'] for n in (1, 3, 5))
    assert p5 >= p3 >= p1, metric
    assert p5 > p1, metric  # noise levels differ per sample: best-of-5 strictly helps
  assert ev.run() == m


# ----------------------------------------------------- PerExampleEvaluator ---


@jax.jit
def _per_example(scale, arrays, key):
  x = arrays['x'].astype(jnp.float32)
  noise = jax.random.uniform(key, (x.shape[0],))
  return {'mean': scale * jnp.mean(x, axis=(1, 2)), 'noise': noise}


def test_per_example_masked_means_fixed_keys_and_sharding():
  x = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
  batches = []
  for i in range(0, 5, 4):   # 4 + 1 real rows; padding rows are huge
    rows = x[i:i + 4]
    pad = np.full((4 - len(rows), 2, 3), 1e6, np.float32)
    batches.append({'x': np.concatenate([rows, pad]),
                    'mask': np.arange(4) < len(rows)})
  ev = evaluators.PerExampleEvaluator(lambda: iter(batches), _per_example, ('x',), seed=3)
  m = ev.run(2.0)
  assert m['n'] == 5.0
  assert m['mean'] == pytest.approx(2.0 * x.mean())
  assert ev.run(2.0) == m   # keys fold the batch index into key(seed)
  assert evaluators.PerExampleEvaluator(lambda: iter(batches), _per_example, ('x',),
                                        seed=4).run(2.0)['noise'] != m['noise']
  mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:4])
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharded = evaluators.PerExampleEvaluator(lambda: iter(batches), _per_example, ('x',),
                                           data_sharding=sharding, seed=3).run(2.0)
  assert sharded['mean'] == pytest.approx(m['mean']) and sharded['n'] == 5.0


def test_per_example_bad_inputs_raise():
  batch = {'x': np.zeros((2, 3), np.float32)}
  with pytest.raises(ValueError, match="no \\['y'\\]"):
    evaluators.PerExampleEvaluator(lambda: iter([batch]), _per_example, ('y',)).run(1.0)
  bad = lambda scale, arrays, key: {'v': jnp.zeros((3,))}
  with pytest.raises(ValueError, match="'v' has shape \\(3,\\)"):
    evaluators.PerExampleEvaluator(lambda: iter([batch]), bad, ('x',)).run(1.0)
  with pytest.raises(ValueError, match='yielded no batches'):
    evaluators.PerExampleEvaluator(lambda: iter([]), bad, ('x',)).run(1.0)

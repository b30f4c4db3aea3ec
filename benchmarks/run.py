r"""Speed and memory of the training steps, side by side with eager PyTorch.

  python -m benchmarks.run                # H step (128, 256) + pipeline
  python -m benchmarks.run --quick        # tiny models, small sizes, smoke
  python -m benchmarks.run --parts=generators         # both generators
  python -m benchmarks.run --parts=h,generators,data --sizes=128 --reps=7
  python -m benchmarks.run --devices=1,2 --impls=xla,cpu --json=/tmp/b.json

Time on the 2-core CPU of docs/performance.md: the default (h,data) about
5 minutes (312 s quiet); --parts=generators about 15 minutes (jin2018's step alone is
2 TFLOP; --nomemory skips the two memory children per generator: about 7
minutes on the quiet machine); --quick about 1 minute.

Parts (`--parts`):
  h           the stage-1 step users run (`train.ordering.make_train_step`:
              3 pairs in both orders through H, official L_h, backward,
              torch-style AdaMax), jitted with the trainer's shardings and
              the state donated; next to it `benchmarks.torch_reference`
              (eager PyTorch, same network and loss, `torch.optim.Adamax`).
              Both start from the same weights: the JAX init is copied into
              the torch module and the first losses are compared
              (`loss diff`). Every `--impls` variant of H's convolutions
              (`OrderingNet.conv_impl`) gets its own row.
  generators  each generator's step (`train.generator.make_train_step`:
              official order-invariant loss, Purohit's multiscale form +
              0.02 mean|flow| with the ground-truth middle frame, + alpha *
              R_hyp through a frozen full-size H, Adam) at batch
              `--batch_size`, side `--generator_size` rounded to the nearest
              valid multiple (jin2018: 120, purohit2019: 128); next to it
              `benchmarks.torch_generators` (eager PyTorch, same network,
              loss and H, `torch.optim.Adam`), the JAX init and H copied in,
              first losses compared, parameter counts asserted equal
              (18,213,376 and 9,525,740). Every `--precisions` value of the
              JAX side gets its own row (torch stays float32).
  data        examples/s of `data.pipeline.make_train_iterator` on the
              synthetic source (one process, 1 and 2 read threads), and
              that rate over the samples/s of the fastest H step measured in
              the same run at the same crop and batch ('x H step': how many
              H steps' worth of examples the pipeline delivers).

Method. Each (size, devices) runs in a child process that builds every
variant (`--impls` x `--precisions`, and torch), then times them
interleaved: per repetition the variants run once each, in an order
rotated every repetition, so machine noise falls on all alike (one child
per generator likewise, `--generator_reps` repetitions). Samples/s is the
median over `--reps`; `spread` is
(max - min) / median of the per-step times. CPU-s/sample counts every thread
of the child (what a free machine would need). Compile time is measured
apart (JAX: `lower().compile()` of the step; torch: its first step).
Threads: the child is pinned to `--threads` cores (`sched_setaffinity`;
0 = all) and torch gets `torch.set_num_threads` of the same; XLA:CPU sizes
its own intra-op pool from the cores the process may use, so both sides use
the same cores. `--devices=N` runs the JAX side on N fake CPU devices
(`--xla_force_host_platform_device_count`), the batch sharded over the
trainer's mesh as on a pod; torch is unchanged.
Peak host memory: every side runs once more alone in its own child
(`ru_maxrss`, the peak resident set of that whole process: interpreter,
libraries, XLA's compiler and buffers); `step MiB` is that peak minus the
resident set just before the first step. GFLOP/s uses the model's FLOPs
(XLA's cost analysis of the plain-`lax` step, the same for every variant);
on accelerators MFU divides them by the chip's dense peak (`--peak_tflops`
or a small table of known chips).
"""
import importlib
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

_PARTS = ('h', 'generators', 'data')
_GENERATORS = ('jin2018', 'purohit2019')
_IMPLS = ('auto', 'xla', 'cpu')
_SHORT = {'float32': 'f32', 'bfloat16': 'bf16'}
_MODELS = {'full': {}, 'tiny': dict(nf=4, embed_dim=8, n_blocks=1)}
# Dense peak TFLOP/s by device kind substring, per compute precision
# (float32 runs as TF32 on these chips under XLA's default precision).
PEAK_TFLOPS = {
    'H100': {'float32': 494.7, 'bfloat16': 989.4},
    'H200': {'float32': 494.7, 'bfloat16': 989.4},
    'A100': {'float32': 156.0, 'bfloat16': 312.0},
}

_FLAGS = flags.FLAGS


def define_flags():
  """Registers the command-line flags (only when run as a program)."""
  flags.DEFINE_list('parts', ['h', 'data'], f'what to measure, of {_PARTS} '
                    '(generators: about 15 minutes on 2 cores, see '
                    'docs/performance.md).')
  flags.DEFINE_list('sizes', ['128', '256'], 'square crop sides of the H step.')
  flags.DEFINE_integer('batch_size', 8,
                       'examples per step (6 pairs each for H).')
  flags.DEFINE_integer('reps', 5, 'timed repetitions per variant.')
  flags.DEFINE_list('impls', ['xla', 'cpu'],
                    f'H conv_impl variants, of {_IMPLS}.')
  flags.DEFINE_list('devices', ['1'], 'JAX CPU device counts (one child each).')
  flags.DEFINE_list('precisions', ['float32'], 'float32 and/or bfloat16 (JAX).')
  flags.DEFINE_integer('threads', 0, 'cores for both sides (0: all).')
  flags.DEFINE_enum('model', 'full', list(_MODELS),
                    'H size: full (2.3M) or tiny.')
  flags.DEFINE_bool('torch', True, 'measure the PyTorch reference too.')
  flags.DEFINE_enum('torch_device', 'cpu', ['cpu', 'cuda'], 'where torch runs.')
  flags.DEFINE_bool('memory', True,
                    'peak host memory per side (extra children).')
  flags.DEFINE_list('generators', ['jin2018', 'purohit2019'],
                    'generator names.')
  flags.DEFINE_integer('generator_size', 128, 'generator image side '
                       "(the nearest multiple of the model's size_multiple: "
                       'jin2018 120, purohit2019 128).')
  flags.DEFINE_integer('generator_reps', 2, 'timed repetitions per side of '
                       'each generator step (after one warm-up step).')
  flags.DEFINE_float('alpha', 0.2, 'R_hyp weight of the generator steps.')
  flags.DEFINE_float('data_seconds', 5.0, 'seconds per data measurement.')
  flags.DEFINE_integer('data_size', 160, 'synthetic image side for the '
                       'data part (crops 4/5 of it: 128).')
  flags.DEFINE_float('peak_tflops', 0.0, 'chip peak for MFU (0: known chips).')
  flags.DEFINE_bool('quick', False, 'smoke run: tiny H, side 40, batch 2, '
                    '2 reps, no memory children.')
  flags.DEFINE_string('json', None, 'also write the results here.')
  flags.DEFINE_list('plot_inputs', [], 'JSON files of earlier runs to plot '
                    '(with --plot; measures nothing).')
  flags.DEFINE_string('plot', None, 'PNG: CPU-s per sample vs crop side, one '
                      'line per batch size and side (needs matplotlib).')
  flags.DEFINE_string('child', None,
                      'internal: run one measurement, print JSON.')
  flags.DEFINE_string('spec', None, 'internal: JSON arguments of the child.')


# =============================================================================
# Helpers (no jax / torch at module level: the parent never imports them;
# importing this module registers no flags).
# =============================================================================
def _median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _rss_mib() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def _peak_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pin(threads: int) -> int:
  """Restricts this process to `threads` cores (0: all); returns the count."""
  cores = sorted(os.sched_getaffinity(0))
  if threads and threads < len(cores):
    cores = cores[:threads]
    os.sched_setaffinity(0, cores)
  return len(cores)


def _timed(fn):
  """(wall s, process CPU s) of fn()."""
  t, c = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - t, time.process_time() - c


def _summary(walls, cpus, batch):
  med = _median(walls)
  return {'step_s': med, 'samples_per_s': batch / med,
          'spread': (max(walls) - min(walls)) / med,
          'cpu_s_per_sample': _median(cpus) / batch,
          'walls': walls}


def _peak_for(kind: str, precision: str):
  if _FLAGS.peak_tflops:
    return _FLAGS.peak_tflops
  for key, table in PEAK_TFLOPS.items():
    if key in kind:
      return table.get(precision)
  return None


def _interleave(variants, reps):
  """Runs every variant once per repetition, order rotated; walls, cpus."""
  names = list(variants)
  walls = {n: [] for n in names}
  cpus = {n: [] for n in names}
  for rep in range(reps):
    k = rep % len(names)
    for name in names[k:] + names[:k]:
      w, c = _timed(variants[name]['run'])
      walls[name].append(w)
      cpus[name].append(c)
  return walls, cpus


def _time_variants(spec, variants, make_torch):
  """Adds torch (with spec['torch']), warms up, times all interleaved.

  Args:
    spec: the child's spec.
    variants: {name: JAX variant} (a dict from `_jax_side`), in order.
    make_torch: () -> the torch variant; torch is imported already, so its
      build and first step are its 'compile_s'.

  Returns:
    {'walls', 'cpus': {name: [s]}, 'load_before', 'load_after': load
    average, 'torch': the torch row or None}.
  """
  if spec['torch']:
    t0 = time.perf_counter()
    variants['torch'] = make_torch()
    variants['torch']['run']()
    variants['torch']['compile_s'] = time.perf_counter() - t0
  for v in variants.values():
    if v['box']['loss0'] is None:
      v['run']()        # warm-up; records the first loss
  load0 = os.getloadavg()[0]
  walls, cpus = _interleave(variants, spec['reps'])
  load1 = os.getloadavg()[0]
  torch_row = None
  if spec['torch']:
    t = variants['torch']
    torch_row = {'name': 'torch', 'params': t['params'],
                 'compile_s': t['compile_s'], 'loss0': t['box']['loss0'],
                 'threads': t['threads'],
                 'device': spec.get('torch_device', 'cpu'),
                 **_summary(walls['torch'], cpus['torch'], spec['batch'])}
  return {'walls': walls, 'cpus': cpus, 'load_before': load0,
          'load_after': load1, 'torch': torch_row}


def _jax_row(head, v, name, timing, threads, batch, what):
  """The result row of JAX variant `name`: head, measurements, vs torch.

  head: the first keys ('name' .. 'precision'); v: the variant; timing:
  from `_time_variants`; what: the network, for `check_param_counts`.
  """
  precision = head['precision']
  row = {**head, 'params': v['params'],
         'compile_s': v['compile_s'], 'loss0': v['box']['loss0'],
         'flops': v['flops'], 'xla_mib': v['xla_mib'],
         'device_kind': v['device_kind'], 'platform': v['platform'],
         'threads': threads, 'load_before': timing['load_before'],
         'load_after': timing['load_after'],
         **_summary(timing['walls'][name], timing['cpus'][name], batch)}
  row['gflops_per_s'] = (v['flops'] / row['step_s'] / 1e9
                         if v['flops'] else None)
  peak = _peak_for(v['device_kind'], precision)
  row['mfu'] = (row['gflops_per_s'] / 1e3 / peak
                if peak and row['gflops_per_s'] and v['platform'] != 'cpu'
                else None)
  torch_row = timing['torch']
  if torch_row is not None:
    check_param_counts(row['params'], torch_row['params'], what)
    row['torch'] = torch_row
    row['ratio'] = row['samples_per_s'] / torch_row['samples_per_s']
    row['loss_diff'] = abs(row['loss0'] - torch_row['loss0'])
  return row


def _step_memory(v):
  """Peak RSS of this process after warm-up + 2 steps of variant v alone."""
  before = _rss_mib()
  for _ in range(3):
    v['run']()
  return {'peak_mib': _peak_mib(), 'step_mib': _peak_mib() - before}


# =============================================================================
# The H step, JAX side.
# =============================================================================
def _flops(fn, *args):
  """Model FLOPs of `fn(*args)` from XLA's HLO cost analysis.

  Lowered for the CPU platform whatever the backend: the analysis of the
  HLO counts convolutions on any platform, while a CUDA executable's
  analysis misses the cuDNN custom calls (it reported 0.1 GFLOP for the
  94 GFLOP H step). Abstract arguments, so nothing is copied or compiled.
  """
  import jax  # pylint: disable=g-import-not-at-top
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                          args)
  lowered = jax.jit(fn).trace(*abstract).lower(lowering_platforms=('cpu',))
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


def _jax_side(step, state, args, mesh):
  """Compiles `step(state, *args)` (jitted, state donated) and wraps it.

  Returns:
    dict: run() (one step; the first loss goes to box['loss0']),
    compile_s, xla_mib, params (count), params0 (host copy of the initial
    params), box, mesh_size, device_kind and platform.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  params0 = jax.device_get(state.params)
  t0 = time.perf_counter()
  compiled = step.lower(state, *args).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  xla_bytes = None
  if mem is not None:   # XLA's buffer assignment: arguments, outputs, temps
    xla_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                 + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
  box = {'state': state, 'loss0': None}

  def run():
    box['state'], metrics = compiled(box['state'], *args)
    loss = jax.block_until_ready(metrics['train/loss'])
    if box['loss0'] is None:
      box['loss0'] = float(loss)

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params0))
  return {'run': run, 'compile_s': compile_s,
          'xla_mib': xla_bytes / 2 ** 20 if xla_bytes else None,
          'params': n_params, 'params0': params0, 'box': box,
          'mesh_size': mesh.size,
          'device_kind': jax.devices()[0].device_kind,
          'platform': jax.devices()[0].platform}


def _jax_h(spec, impl, precision):
  """Builds the trainer's stage-1 step; returns a dict with run() etc."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hypercut_jax.models import ordering  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import optim  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import ordering as ordering_train  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import sharding  # pylint: disable=g-import-not-at-top

  size, batch = spec['size'], spec['batch']
  mesh = sharding.make_mesh()
  sharding.check_batch_size(batch, mesh)
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  model = ordering_train.make_model(dict(_MODELS[spec['model']]), precision)
  model = model.clone(conv_impl=impl)
  tx = optim.adamax_torch(5e-4)
  init = ordering_train.make_init(model, tx, size)
  state = jax.jit(init, out_shardings=repl)(jax.random.key(0))
  host = {'sharp': np.random.default_rng(0).integers(
      0, 256, (batch, 7, size, size, 3), dtype=np.uint8)}
  data = sharding.put_batch(host, batch_sh)
  key = jax.device_put(jax.random.key(1), repl)
  step = jax.jit(ordering_train.make_train_step(model, tx),
                 in_shardings=(repl, batch_sh, repl),
                 out_shardings=(repl, repl), donate_argnums=0)
  flops = _flops(ordering_train.make_train_step(model.clone(conv_impl='xla'),
                                               tx), state, data, key)
  plane0 = np.asarray(jax.device_get(state.hyperplane))
  return {**_jax_side(step, state, (data, key), mesh), 'flops': flops,
          'plane0': plane0, 'host': host['sharp']}


# =============================================================================
# The H step, PyTorch side.
# =============================================================================
def _import_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'the PyTorch side needs torch ({e}); install the '
                      "'bench' extra (pip install -e '.[bench]') or pass "
                      '--notorch') from e
  return torch, torch_reference


def _torch_h(spec, threads, params0=None, plane0=None, sharp=None):
  import numpy as np  # pylint: disable=g-import-not-at-top
  torch, tr = _import_torch()
  device = torch.device(spec.get('torch_device', 'cpu'))
  if device.type == 'cuda' and not torch.cuda.is_available():
    raise ValueError('--torch_device=cuda but this torch has no CUDA device')
  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
  torch.set_num_threads(threads)
  kw = _MODELS[spec['model']]
  net = tr.TorchHyperCUT(**kw)
  if params0 is not None:
    tr.load_flax_params(net, params0, plane0)
  net = net.to(device)
  opt = torch.optim.Adamax(net.parameters(), lr=5e-4, betas=(0.9, 0.999),
                           eps=1e-8)
  if sharp is None:
    size, batch = spec['size'], spec['batch']
    sharp = np.random.default_rng(0).integers(
        0, 256, (batch, 7, size, size, 3), dtype=np.uint8)
  frames_u8 = torch.from_numpy(np.ascontiguousarray(sharp)).to(device)
  box = {'loss0': None}

  def run():
    opt.zero_grad(set_to_none=True)
    loss = tr.ordering_loss(net, tr.normalize_frames(frames_u8))
    loss.backward()
    opt.step()
    sync()
    if box['loss0'] is None:
      box['loss0'] = float(loss.detach())

  return {'run': run, 'params': tr.num_params(net.f_func), 'box': box,
          'threads': torch.get_num_threads()}


def check_param_counts(jax_params: int, torch_params: int,
                       what: str = 'H') -> None:
  """The two sides must run the same network."""
  if jax_params != torch_params:
    raise AssertionError(f'parameter counts differ: JAX {what} '
                         f'{jax_params:,} vs torch reference '
                         f'{torch_params:,}')


def _h_child(spec):
  """Times every JAX variant and torch, interleaved, in this process."""
  threads = _pin(spec['threads'])
  variants = {}
  for precision in spec['precisions']:
    for impl in spec['impls']:
      variants[f'jax:{impl}:{precision}'] = _jax_h(spec, impl, precision)
  first = next(iter(variants.values()))
  if spec['torch']:
    _import_torch()
  timing = _time_variants(spec, variants, lambda: _torch_h(
      spec, threads, first['params0'], first['plane0'], first['host']))
  rows = []
  for name, v in variants.items():
    if name == 'torch':
      continue
    _, impl, precision = name.split(':')
    head = {'name': name, 'impl': impl, 'size': spec['size'],
            'batch': spec['batch'], 'devices': v['mesh_size'],
            'precision': precision}
    rows.append(_jax_row(head, v, name, timing, threads, spec['batch'], 'H'))
  return rows


def _h_mem_child(spec):
  """Peak RSS of one side alone: warm-up + 2 steps."""
  threads = _pin(spec['threads'])
  if spec['side'] == 'torch':
    return _step_memory(_torch_h(spec, threads))
  impl, precision = spec['side'].split(':')
  return _step_memory(_jax_h(spec, impl, precision))


# =============================================================================
# Generator steps, JAX and PyTorch sides.
# =============================================================================
def generator_side(size: int, multiple: int) -> int:
  """The multiple of `multiple` nearest to `size` (at least `multiple`)."""
  return max(multiple, int(size / multiple + 0.5) * multiple)


def _jax_gen(spec, precision):
  """Builds the trainer's stage-2 step (Adam, + alpha R_hyp through H)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  from hypercut_jax.models import ordering  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import generator  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import ordering as ordering_train  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import sharding  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh()
  sharding.check_batch_size(spec['batch'], mesh)
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  if spec['model'] == 'tiny':   # the module's test-only variant, tiny H
    tiny = importlib.import_module(models.get(spec['name']).__module__).Tiny
    dtype = config_lib.compute_dtype(precision)
    model = tiny(**({'dtype': dtype} if dtype is not None else {}))
    h_kw = _MODELS['tiny']
  else:
    model = generator.make_model(spec['name'], None, precision)
    h_kw = {}
  side = generator_side(spec['size'], model.size_multiple)
  batch = spec['batch']
  tx = optax.adam(1e-4)
  state = jax.jit(generator.make_init(model, tx, side),
                  out_shardings=repl)(jax.random.key(0, impl='rbg'))
  h_model = ordering_train.make_model(h_kw, precision)
  h_params = jax.jit(lambda k: h_model.init(k, np.zeros((1, 64, 64, 6))),
                     out_shardings=repl)(jax.random.key(2))['params']
  plane = jax.device_put(
      ordering.init_hyperplane(jax.random.key(3), h_model.embed_dim), repl)
  rng = np.random.default_rng(0)
  sharp = rng.integers(0, 256, (batch, 7, side, side, 3), dtype=np.uint8)
  host = {'sharp': sharp, 'blur': sharp.mean(1).round().astype(np.uint8)}
  data = sharding.put_batch(host, batch_sh)
  key = jax.device_put(jax.random.key(1), repl)
  flow_weight = 0.02 if spec['name'] == 'purohit2019' else 0.0

  def make_step(h):
    return jax.jit(
        generator.make_train_step(model, tx, flow_weight=flow_weight,
                                  h_model=h, alpha=spec['alpha']),
        in_shardings=(repl, batch_sh, repl, repl, repl),
        out_shardings=(repl, repl), donate_argnums=0)

  args = (data, key, h_params, plane)
  # Model FLOPs: XLA's count of the step with plain convs in H.
  flops = _flops(generator.make_train_step(
      model, tx, flow_weight=flow_weight,
      h_model=h_model.clone(conv_impl='xla'), alpha=spec['alpha']),
                 state, *args)
  return {**_jax_side(make_step(h_model), state, args, mesh),
          'flops': flops, 'side': side,
          'h_params0': jax.device_get(h_params),
          'plane0': np.asarray(jax.device_get(plane)), 'host': host}


def _import_torch_generators():
  torch, tr = _import_torch()
  from benchmarks import torch_generators  # pylint: disable=g-import-not-at-top
  return torch, tr, torch_generators


def _torch_gen(spec, threads, params0=None, h_params0=None, plane0=None,
               host=None):
  """The same step in eager PyTorch: torch.optim.Adam, same loss and H."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  torch, tr, tg = _import_torch_generators()
  device = torch.device(spec.get('torch_device', 'cpu'))
  if device.type == 'cuda' and not torch.cuda.is_available():
    raise ValueError('--torch_device=cuda but this torch has no CUDA device')
  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
  torch.set_num_threads(threads)
  tiny = spec['model'] == 'tiny'
  net = tg.make(spec['name'], tiny)
  if params0 is not None:
    tg.load_flax_params(net, params0)
  h_net = tr.TorchHyperCUT(**_MODELS[spec['model']])
  if h_params0 is not None:
    tr.load_flax_params(h_net, h_params0, plane0)
  for p in h_net.parameters():
    p.requires_grad_(False)
  net, h_net = net.to(device), h_net.to(device)
  opt = torch.optim.Adam(net.parameters(), lr=1e-4)
  if host is None:
    side = generator_side(spec['size'], net.size_multiple)
    sharp = np.random.default_rng(0).integers(
        0, 256, (spec['batch'], 7, side, side, 3), dtype=np.uint8)
    host = {'sharp': sharp, 'blur': sharp.mean(1).round().astype(np.uint8)}
  sharp_u8 = torch.from_numpy(np.ascontiguousarray(host['sharp'])).to(device)
  blur_u8 = torch.from_numpy(np.ascontiguousarray(host['blur'])).to(device)
  flow_weight = 0.02 if spec['name'] == 'purohit2019' else 0.0
  box = {'loss0': None}

  def run():
    opt.zero_grad(set_to_none=True)
    sharp = tg.to_float_frames(sharp_u8)
    out = net(tg.to_float_frames(blur_u8), middle=sharp[:, 3])
    loss = tg.generator_loss(out, sharp, h_net, spec['alpha'], flow_weight)
    loss.backward()
    opt.step()
    sync()
    if box['loss0'] is None:
      box['loss0'] = float(loss.detach())

  return {'run': run, 'params': tg.num_params(net), 'box': box,
          'threads': torch.get_num_threads()}


def _gen_child(spec):
  """One generator: every JAX precision and torch, interleaved."""
  threads = _pin(spec['threads'])
  variants = {}
  for precision in spec['precisions']:
    variants[f'jax:{precision}'] = _jax_gen(spec, precision)
  first = next(iter(variants.values()))
  if spec['torch']:
    _import_torch_generators()
  timing = _time_variants(spec, variants, lambda: _torch_gen(
      spec, threads, first['params0'], first['h_params0'], first['plane0'],
      first['host']))
  rows = []
  for name, v in variants.items():
    if name == 'torch':
      continue
    head = {'name': spec['name'], 'size': v['side'], 'batch': spec['batch'],
            'devices': v['mesh_size'], 'precision': name.split(':')[1]}
    rows.append(_jax_row(head, v, name, timing, threads, spec['batch'],
                         spec['name']))
  return rows


def _gen_mem_child(spec):
  """Peak RSS of one generator side alone: warm-up + 2 steps."""
  threads = _pin(spec['threads'])
  if spec['side'] == 'torch':
    return _step_memory(_torch_gen(spec, threads))
  return _step_memory(_jax_gen(spec, spec['side'].split(':')[1]))
# =============================================================================
# The input pipeline.
# =============================================================================
def _data_child(spec):
  from hypercut_jax import data  # pylint: disable=g-import-not-at-top
  from hypercut_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  _pin(spec['threads'])
  src = data.get_source({'name': 'synthetic', 'seed': 0, 'num_train': 4096,
                         'num_test': 8, 'size': spec['size']}, 'train')
  crop = spec['size'] * 4 // 5
  rows = []
  for threads in (1, 2):
    it = pipeline.make_train_iterator(
        src, batch_size=spec['batch'], crop=crop, seed=0, process_index=0,
        process_count=1, read_threads=threads, prefetch=2)
    next(it)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < spec['seconds'] or n < 2:
      next(it)
      n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows.append({'name': f'synthetic {spec["size"]}px -> crop {crop}, '
                         f'{threads} read thread(s)',
                 'examples_per_s': n * spec['batch'] / wall,
                 'examples_per_cpu_s': n * spec['batch'] / max(cpu, 1e-9),
                 'load': os.getloadavg()[0]})
  return rows


_CHILDREN = {'h': _h_child, 'h_mem': _h_mem_child, 'gen': _gen_child,
             'gen_mem': _gen_mem_child,
             'data': _data_child}


# =============================================================================
# Parent: children, tables.
# =============================================================================
def _spawn(kind: str, spec: dict, devices: int = 1):
  env = dict(os.environ)
  flag = f'--xla_force_host_platform_device_count={devices}'
  env['XLA_FLAGS'] = ' '.join(
      [f for f in env.get('XLA_FLAGS', '').split()
       if not f.startswith('--xla_force_host_platform_device_count')] + [flag])
  cmd = [sys.executable, '-m', 'benchmarks.run', f'--child={kind}',
         f'--spec={json.dumps(spec)}']
  done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        check=False)
  if done.returncode:
    raise RuntimeError(f'benchmark child {kind} {spec} failed '
                       f'(rc={done.returncode}):\n{done.stderr[-4000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def validate_settings(s: dict) -> dict:
  """Checks the resolved settings; raises ValueError naming the flag."""
  for part in s['parts']:
    if part not in _PARTS:
      raise ValueError(f'--parts has {part!r}; known: {_PARTS}')
  for impl in s['impls']:
    if impl not in _IMPLS:
      raise ValueError(f'--impls has {impl!r}; known: {_IMPLS}')
  for p in s['precisions']:
    if p not in _SHORT:
      raise ValueError(f'--precisions has {p!r}; known: {sorted(_SHORT)}')
  if s['reps'] < 1 or s['batch'] < 1 or s.get('generator_reps', 1) < 1:
    raise ValueError(f'--reps={s["reps"]}, --batch_size={s["batch"]} and '
                     f'--generator_reps={s.get("generator_reps")} must be '
                     '>= 1')
  if min(s['sizes']) < 33:
    raise ValueError(f'--sizes must be >= 33 (H needs 33 px); '
                     f'got {s["sizes"]}')
  for name in s.get('generators', ()):
    if name not in _GENERATORS:
      raise ValueError(f'--generators has {name!r}; known (with a torch '
                       f'reference): {_GENERATORS}')
  if s.get('generator_size', 33) < 33:
    raise ValueError('--generator_size must be >= 33 (R_hyp runs H on the '
                     f'frames); got {s["generator_size"]}')
  return s


def _settings():
  s = {'parts': _FLAGS.parts, 'sizes': [int(x) for x in _FLAGS.sizes],
       'batch': _FLAGS.batch_size, 'reps': _FLAGS.reps, 'impls': _FLAGS.impls,
       'devices': [int(x) for x in _FLAGS.devices],
       'precisions': _FLAGS.precisions, 'model': _FLAGS.model,
       'memory': _FLAGS.memory, 'generators': _FLAGS.generators,
       'generator_size': _FLAGS.generator_size,
       'generator_reps': _FLAGS.generator_reps,
       'data_size': _FLAGS.data_size, 'data_seconds': _FLAGS.data_seconds}
  if _FLAGS.quick:
    s.update(sizes=[40], batch=2, reps=2, model='tiny', memory=False,
             generator_size=40, generator_reps=1, data_size=50,
             data_seconds=1.0)
  return validate_settings(s)


def _add_memory(rows, kind, spec, devices, jax_sides, side_of):
  """Runs a `kind` memory child per side (+ torch); adds row['memory'].

  side_of(row) names the JAX side of a row; torch's goes to
  row['torch']['memory'].
  """
  sides = jax_sides + (['torch'] if _FLAGS.torch else [])
  mem = {side: _spawn(kind, dict(spec, side=side), devices) for side in sides}
  for row in rows:
    row['memory'] = mem[side_of(row)]
    if 'torch' in mem:
      row['torch']['memory'] = mem['torch']


def run_h(s) -> list:
  rows = []
  for devices in s['devices']:
    for size in s['sizes']:
      spec = {'size': size, 'batch': s['batch'], 'reps': s['reps'],
              'impls': s['impls'], 'precisions': s['precisions'],
              'model': s['model'], 'torch': _FLAGS.torch,
              'torch_device': _FLAGS.torch_device, 'threads': _FLAGS.threads}
      got = _spawn('h', spec, devices)
      if s['memory']:
        _add_memory(got, 'h_mem', spec, devices,
                    [f'{i}:{p}' for p in s['precisions'] for i in s['impls']],
                    lambda row: f"{row['impl']}:{row['precision']}")
      _print_h(got, header=not rows)
      rows += got
  return rows


def _fmt(x, spec='.2f'):
  return '-' if x is None else format(x, spec)


def _print_h(rows, header=True):
  if header:
    print('\n| step | size | batch | dev | prec | JAX impl | JAX samples/s | '
          'torch samples/s | JAX/torch | spread J/T | compile s J/T | '
          'CPU-s/sample J/T | GFLOP/s | MFU | XLA MiB | peak MiB J/T | '
          'step MiB J/T | params J/T | loss diff | load |')
    print('|' + '---|' * 20)
  for r in rows:
    t = r.get('torch') or {}
    mj, mt = r.get('memory', {}), t.get('memory', {})
    print(f"| {r.get('step', 'H')} | {r['size']} | {r['batch']} | "
          f"{r['devices']} | {_SHORT[r['precision']]} | {r['impl']} | "
          f"{r['samples_per_s']:.2f} | "
          f"{_fmt(t.get('samples_per_s'))} | {_fmt(r.get('ratio'))} | "
          f"{r['spread']:.2f}/{_fmt(t.get('spread'))} | "
          f"{r['compile_s']:.1f}/{_fmt(t.get('compile_s'), '.1f')} | "
          f"{r['cpu_s_per_sample']:.3f}/"
          f"{_fmt(t.get('cpu_s_per_sample'), '.3f')} | "
          f"{_fmt(r['gflops_per_s'], '.1f')} | {_fmt(r['mfu'], '.1%')} | "
          f"{_fmt(r['xla_mib'], '.0f')} | "
          f"{_fmt(mj.get('peak_mib'), '.0f')}/"
          f"{_fmt(mt.get('peak_mib'), '.0f')} | "
          f"{_fmt(mj.get('step_mib'), '.0f')}/"
          f"{_fmt(mt.get('step_mib'), '.0f')} | "
          f"{r['params']:,}/{_fmt(t.get('params'), ',')} | "
          f"{_fmt(r.get('loss_diff'), '.1e')} | "
          f"{r['load_before']:.1f}-{r['load_after']:.1f} |", flush=True)


def run_generators(s) -> list:
  """Each generator's step, JAX (every precision) vs torch, one child each."""
  rows = []
  for devices in s['devices']:
    for name in s['generators']:
      spec = {'name': name, 'size': s['generator_size'], 'batch': s['batch'],
              'reps': s['generator_reps'], 'alpha': _FLAGS.alpha,
              'precisions': s['precisions'], 'model': s['model'],
              'torch': _FLAGS.torch, 'torch_device': _FLAGS.torch_device,
              'threads': _FLAGS.threads}
      got = _spawn('gen', spec, devices)
      if s['memory']:
        _add_memory(got, 'gen_mem', spec, devices,
                    [f'jax:{p}' for p in s['precisions']],
                    lambda row: f"jax:{row['precision']}")
      for row in got:
        row['step'], row['impl'] = name, '-'
      _print_h(got, header=not rows)
      rows += got
  return rows


def h_consumption(h_rows, crop: int, batch: int):
  """Samples/s of the fastest JAX H step at this crop and batch, or None."""
  rates = [r['samples_per_s'] for r in h_rows or ()
           if r['size'] == crop and r['batch'] == batch]
  return max(rates) if rates else None


def run_data(s, h_rows=None) -> list:
  """Pipeline examples/s, and its ratio to what the H step consumes.

  The H step takes one example per sample, so the ratio is pipeline
  examples/s over H samples/s at the pipeline's crop and batch (from the H
  rows of this run; '-' without them: run --parts=h,data --sizes=128).
  """
  spec = {'size': s['data_size'], 'batch': s['batch'],
          'seconds': s['data_seconds'], 'threads': _FLAGS.threads}
  rows = _spawn('data', spec)
  crop = s['data_size'] * 4 // 5
  h_rate = h_consumption(h_rows, crop, s['batch'])
  print(f'\n| input pipeline | examples/s | examples per CPU-s | '
        f'x H step (crop {crop}, batch {s["batch"]}: '
        f'{_fmt(h_rate)} samples/s) | load |')
  print('|---|---|---|---|---|')
  for r in rows:
    r['h_samples_per_s'] = h_rate
    r['x_h_step'] = r['examples_per_s'] / h_rate if h_rate else None
    print(f"| {r['name']} | {r['examples_per_s']:.1f} | "
          f"{r['examples_per_cpu_s']:.1f} | {_fmt(r['x_h_step'])} | "
          f"{r['load']:.1f} |", flush=True)
  return rows


def plot_scaling(inputs, path):
  """CPU-s/sample and samples/s vs crop side from `--json` files of runs."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  series = {}
  for name in inputs:
    with open(name) as f:
      for r in json.load(f).get('h', []):
        keys = [(f"JAX {r['impl']} {r['precision']}", r)]
        if r.get('torch'):
          keys.append(('PyTorch eager', dict(r['torch'], size=r['size'],
                                              batch=r['batch'])))
        for label, row in keys:
          pts = series.setdefault((label, row['batch']), {})
          pts[row['size']] = (row['cpu_s_per_sample'], row['samples_per_s'])
  if not series:
    raise ValueError(f'no H rows in {inputs}')
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for (label, batch), pts in sorted(series.items()):
    sizes = sorted(pts)
    style = '--' if label.startswith('PyTorch') else '-'
    for ax, i in zip(axes, (0, 1)):
      ax.plot(sizes, [pts[z][i] for z in sizes], style, marker='o',
              label=f'{label}, batch {batch}')
  axes[0].set_ylabel('CPU-seconds per sample (all threads)')
  axes[1].set_ylabel('samples/s (wall clock, shared machine)')
  for ax in axes:
    ax.set_xlabel('crop side (px)')
    ax.grid(alpha=0.3)
  for ax in axes:
    ax.set_yscale('log')
  axes[0].legend(fontsize=7)
  fig.suptitle('H training step (6 pairs per sample), 2-core CPU')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def main(argv):
  del argv
  if _FLAGS.plot:
    print(plot_scaling(_FLAGS.plot_inputs, _FLAGS.plot))
    return
  if _FLAGS.child:
    if _FLAGS.child not in _CHILDREN:
      raise ValueError(f'--child={_FLAGS.child!r}; known: {sorted(_CHILDREN)}')
    print(json.dumps(_CHILDREN[_FLAGS.child](json.loads(_FLAGS.spec))))
    return
  s = _settings()
  cpu = os.cpu_count()
  print(f'# benchmarks.run: {cpu} CPUs, threads={_FLAGS.threads or cpu}, '
        f'load {", ".join(f"{x:.1f}" for x in os.getloadavg())}; {s}')
  results = {'settings': s, 'cpus': cpu}
  if 'h' in s['parts']:
    results['h'] = run_h(s)
  if 'generators' in s['parts']:
    results['generators'] = run_generators(s)
  if 'data' in s['parts']:
    results['data'] = run_data(s, results.get('h'))
  if _FLAGS.json:
    with open(_FLAGS.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  define_flags()
  app.run(main)

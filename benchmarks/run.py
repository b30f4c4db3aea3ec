r"""Speed and memory of the training steps, side by side with eager PyTorch.

  python -m benchmarks.run                # H step, 128 and 256, both sides
  python -m benchmarks.run --quick        # tiny H, one small size, 2 reps
  python -m benchmarks.run --parts=h,generators,data --sizes=128 --reps=7
  python -m benchmarks.run --devices=1,2 --impls=xla,cpu --json=/tmp/b.json

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
  generators  each generator's step (`train.generator.make_train_step`,
              Adam, + alpha * R_hyp through a frozen full-size H); JAX only,
              there is no PyTorch reference of the generators.
  data        examples/s of `data.pipeline.make_train_iterator` on the
              synthetic source (one process, `read_threads` threads).

Method. Each (size, devices) runs in a child process that builds every
variant (`--impls` x `--precisions`, and torch), then times them
interleaved: per repetition the variants run once each, in an order
rotated every repetition, so machine noise falls on all alike. Samples/s is the median over `--reps`; `spread` is
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
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

_PARTS = ('h', 'generators', 'data')
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
  flags.DEFINE_list('parts', ['h'], f'what to measure, of {_PARTS}.')
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
                       "(rounded up to the model's size_multiple).")
  flags.DEFINE_float('alpha', 0.2, 'R_hyp weight of the generator steps.')
  flags.DEFINE_float('data_seconds', 5.0, 'seconds per data measurement.')
  flags.DEFINE_integer('data_size', 160, 'synthetic image side for the '
                       'data part (crops 128).')
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


# =============================================================================
# The H step, JAX side.
# =============================================================================
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
  flops = jax.jit(ordering_train.make_train_step(model.clone(conv_impl='xla'),
                                                 tx)).lower(
                                                     state, data, key
                                                 ).cost_analysis()['flops']
  params0 = jax.device_get(state.params)
  plane0 = np.asarray(jax.device_get(state.hyperplane))
  t0 = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  xla_bytes = None
  if mem is not None:   # XLA's buffer assignment: arguments, outputs, temps
    xla_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                 + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
  box = {'state': state, 'loss0': None}

  def run():
    box['state'], metrics = compiled(box['state'], data, key)
    loss = jax.block_until_ready(metrics['train/loss'])
    if box['loss0'] is None:
      box['loss0'] = float(loss)

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params0))
  return {'run': run, 'compile_s': compile_s, 'flops': float(flops),
          'xla_mib': xla_bytes / 2 ** 20 if xla_bytes else None,
          'params': n_params, 'params0': params0, 'plane0': plane0,
          'host': host['sharp'], 'box': box, 'mesh_size': mesh.size,
          'device_kind': jax.devices()[0].device_kind,
          'platform': jax.devices()[0].platform}


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


def check_param_counts(jax_params: int, torch_params: int) -> None:
  """The two sides must run the same network."""
  if jax_params != torch_params:
    raise AssertionError(f'parameter counts differ: JAX H {jax_params:,} vs '
                         f'torch reference {torch_params:,}')


def _h_child(spec):
  """Times every JAX variant and torch, interleaved, in this process."""
  threads = _pin(spec['threads'])
  variants, rows = {}, []
  for precision in spec['precisions']:
    for impl in spec['impls']:
      variants[f'jax:{impl}:{precision}'] = _jax_h(spec, impl, precision)
  first = next(iter(variants.values()))
  if spec['torch']:
    _import_torch()
    t0 = time.perf_counter()
    variants['torch'] = _torch_h(spec, threads, first['params0'],
                                 first['plane0'], first['host'])
    variants['torch']['run']()
    variants['torch']['compile_s'] = time.perf_counter() - t0
  for v in variants.values():
    if v['box']['loss0'] is None:
      v['run']()        # warm-up; records the first loss
  names = list(variants)
  walls = {n: [] for n in names}
  cpus = {n: [] for n in names}
  load0 = os.getloadavg()[0]
  for rep in range(spec['reps']):
    k = rep % len(names)
    for name in names[k:] + names[:k]:
      w, c = _timed(variants[name]['run'])
      walls[name].append(w)
      cpus[name].append(c)
  load1 = os.getloadavg()[0]
  torch_row = None
  if spec['torch']:
    t = variants['torch']
    torch_row = {'name': 'torch', 'params': t['params'],
                 'compile_s': t['compile_s'], 'loss0': t['box']['loss0'],
                 'threads': t['threads'],
                 'device': spec.get('torch_device', 'cpu'),
                 **_summary(walls['torch'], cpus['torch'], spec['batch'])}
  for name in names:
    if name == 'torch':
      continue
    v = variants[name]
    _, impl, precision = name.split(':')
    row = {'name': name, 'impl': impl, 'size': spec['size'],
           'batch': spec['batch'], 'devices': v['mesh_size'],
           'precision': precision, 'params': v['params'],
           'compile_s': v['compile_s'], 'loss0': v['box']['loss0'],
           'flops': v['flops'], 'xla_mib': v['xla_mib'],
           'device_kind': v['device_kind'], 'platform': v['platform'],
           'threads': threads, 'load_before': load0, 'load_after': load1,
           **_summary(walls[name], cpus[name], spec['batch'])}
    row['gflops_per_s'] = v['flops'] / row['step_s'] / 1e9
    peak = _peak_for(v['device_kind'], precision)
    row['mfu'] = (row['gflops_per_s'] / 1e3 / peak
                  if peak and v['platform'] != 'cpu' else None)
    if torch_row is not None:
      check_param_counts(row['params'], torch_row['params'])
      row['torch'] = torch_row
      row['ratio'] = row['samples_per_s'] / torch_row['samples_per_s']
      row['loss_diff'] = abs(row['loss0'] - torch_row['loss0'])
    rows.append(row)
  return rows


def _h_mem_child(spec):
  """Peak RSS of one side alone: warm-up + 2 steps."""
  threads = _pin(spec['threads'])
  if spec['side'] == 'torch':
    v = _torch_h(spec, threads)
  else:
    impl, precision = spec['side'].split(':')
    v = _jax_h(spec, impl, precision)
  before = _rss_mib()
  for _ in range(3):
    v['run']()
  return {'peak_mib': _peak_mib(), 'step_mib': _peak_mib() - before}


# =============================================================================
# Generators (JAX only) and the input pipeline.
# =============================================================================
def _gen_child(spec):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from hypercut_jax.models import ordering  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import generator  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import sharding  # pylint: disable=g-import-not-at-top

  _pin(spec['threads'])
  mesh = sharding.make_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  model = generator.make_model(spec['name'], None, spec['precision'])
  side = -(-spec['size'] // model.size_multiple) * model.size_multiple
  batch = spec['batch']
  tx = optax.adam(1e-4)
  state = jax.jit(generator.make_init(model, tx, side),
                  out_shardings=repl)(jax.random.key(0, impl='rbg'))
  h_model = ordering.OrderingNet()
  h_params = jax.jit(lambda k: h_model.init(k, np.zeros((1, 64, 64, 6))),
                     out_shardings=repl)(jax.random.key(2))['params']
  plane = jax.device_put(ordering.init_hyperplane(jax.random.key(3), 128), repl)
  rng = np.random.default_rng(0)
  sharp = rng.integers(0, 256, (batch, 7, side, side, 3), dtype=np.uint8)
  host = {'sharp': sharp, 'blur': sharp.mean(1).astype(np.uint8)}
  data = sharding.put_batch(host, batch_sh)
  key = jax.device_put(jax.random.key(1), repl)
  flow_weight = 0.02 if spec['name'] == 'purohit2019' else 0.0
  step = jax.jit(
      generator.make_train_step(model, tx, flow_weight=flow_weight,
                                h_model=h_model, alpha=spec['alpha']),
      in_shardings=(repl, batch_sh, repl, repl, repl),
      out_shardings=(repl, repl), donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state, data, key, h_params, plane).compile()
  compile_s = time.perf_counter() - t0
  box = {'state': state}

  def run():
    box['state'], m = compiled(box['state'], data, key, h_params, plane)
    jax.block_until_ready(m['train/loss'])

  run()
  before = _rss_mib()
  walls, cpus = [], []
  for _ in range(spec['reps']):
    w, c = _timed(run)
    walls.append(w)
    cpus.append(c)
  n_params = sum(int(np.prod(x.shape))
                 for x in jax.tree.leaves(box['state'].params))
  return [{'name': spec['name'], 'size': side, 'batch': batch,
           'params': n_params, 'compile_s': compile_s,
           'peak_mib': _peak_mib(), 'step_mib': _peak_mib() - before,
           'load': os.getloadavg()[0], **_summary(walls, cpus, batch)}]


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
  if s['reps'] < 1 or s['batch'] < 1:
    raise ValueError(f'--reps={s["reps"]} and --batch_size={s["batch"]} '
                     'must be >= 1')
  if min(s['sizes']) < 33:
    raise ValueError(f'--sizes must be >= 33 (H needs 33 px); '
                     f'got {s["sizes"]}')
  return s


def _settings():
  s = {'parts': _FLAGS.parts, 'sizes': [int(x) for x in _FLAGS.sizes],
       'batch': _FLAGS.batch_size, 'reps': _FLAGS.reps, 'impls': _FLAGS.impls,
       'devices': [int(x) for x in _FLAGS.devices],
       'precisions': _FLAGS.precisions, 'model': _FLAGS.model,
       'memory': _FLAGS.memory}
  if _FLAGS.quick:
    s.update(sizes=[40], batch=2, reps=2, model='tiny', memory=False)
  return validate_settings(s)


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
        sides = [f'{i}:{p}' for p in s['precisions'] for i in s['impls']]
        sides += ['torch'] if _FLAGS.torch else []
        mem = {side: _spawn('h_mem', dict(spec, side=side), devices)
               for side in sides}
        for row in got:
          row['memory'] = mem[f"{row['impl']}:{row['precision']}"]
          if 'torch' in mem:
            row['torch']['memory'] = mem['torch']
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
    print(f"| H | {r['size']} | {r['batch']} | {r['devices']} | "
          f"{_SHORT[r['precision']]} | {r['impl']} | "
          f"{r['samples_per_s']:.2f} | "
          f"{_fmt(t.get('samples_per_s'))} | {_fmt(r.get('ratio'))} | "
          f"{r['spread']:.2f}/{_fmt(t.get('spread'))} | "
          f"{r['compile_s']:.1f}/{_fmt(t.get('compile_s'), '.1f')} | "
          f"{r['cpu_s_per_sample']:.3f}/"
          f"{_fmt(t.get('cpu_s_per_sample'), '.3f')} | "
          f"{r['gflops_per_s']:.1f} | {_fmt(r['mfu'], '.1%')} | "
          f"{_fmt(r['xla_mib'], '.0f')} | "
          f"{_fmt(mj.get('peak_mib'), '.0f')}/"
          f"{_fmt(mt.get('peak_mib'), '.0f')} | "
          f"{_fmt(mj.get('step_mib'), '.0f')}/"
          f"{_fmt(mt.get('step_mib'), '.0f')} | "
          f"{r['params']:,}/{_fmt(t.get('params'), ',')} | "
          f"{_fmt(r.get('loss_diff'), '.1e')} | "
          f"{r['load_before']:.1f}-{r['load_after']:.1f} |", flush=True)


def run_generators(s) -> list:
  rows = []
  print('\n| generator step (+alpha R_hyp) | side | batch | params | '
        'samples/s | spread | compile s | CPU-s/sample | peak MiB | step MiB | '
        'torch | load |')
  print('|' + '---|' * 12)
  for name in _FLAGS.generators:
    spec = {'name': name, 'size': _FLAGS.generator_size, 'batch': s['batch'],
            'reps': s['reps'], 'alpha': _FLAGS.alpha,
            'precision': s['precisions'][0], 'threads': _FLAGS.threads}
    r = _spawn('gen', spec, s['devices'][0])[0]
    rows.append(r)
    print(f"| {r['name']} | {r['size']} | {r['batch']} | {r['params']:,} | "
          f"{r['samples_per_s']:.2f} | {r['spread']:.2f} | "
          f"{r['compile_s']:.1f} | {r['cpu_s_per_sample']:.3f} | "
          f"{r['peak_mib']:.0f} | {r['step_mib']:.0f} | no reference | "
          f"{r['load']:.1f} |", flush=True)
  return rows


def run_data(s) -> list:
  spec = {'size': _FLAGS.data_size, 'batch': s['batch'],
          'seconds': _FLAGS.data_seconds, 'threads': _FLAGS.threads}
  rows = _spawn('data', spec)
  print('\n| input pipeline | examples/s | examples per CPU-s | load |')
  print('|---|---|---|---|')
  for r in rows:
    print(f"| {r['name']} | {r['examples_per_s']:.1f} | "
          f"{r['examples_per_cpu_s']:.1f} | {r['load']:.1f} |", flush=True)
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
    results['data'] = run_data(s)
  if _FLAGS.json:
    with open(_FLAGS.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  define_flags()
  app.run(main)

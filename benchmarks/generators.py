r"""Generator train-step speed and peak host memory, full-size models.

  python -m benchmarks.generators [--models=jin2018,purohit2019] \
      [--batch_size=8] [--size=128] [--steps=3] [--alpha=0.2]

Each model runs in a fresh subprocess (`--child=NAME`), so its peak memory is
its own: the child reports `resource.getrusage(RUSAGE_SELF).ru_maxrss`, the
peak resident set of the whole process (XLA's compiler, its buffer
allocations and the Python heap together; `tracemalloc` sees only Python
allocations and misses everything XLA allocates, so it is not used).

One step = forward + backward + Adam update (`optax.adam(1e-4)`), jitted
with the parameters and optimiser state donated, on random images in [0,1]:
  jin2018      order-invariant loss (official form)
  purohit2019  multiscale order-invariant loss + 0.02 mean|flow|, with the
               ground-truth middle frame (its training protocol)
  + alpha * R_hyp (official softplus form) of the predicted forward pairs
    through a frozen full-size H (`OrderingNet`, 2.3M params), when
    `hypercut_jax.models.ordering` is importable and alpha > 0.
The side is rounded up to the model's `size_multiple` (jin2018: 128 -> 140,
purohit2019: 128). Columns: compile seconds (the step only; init is
reported apart), samples/s over `steps` timed steps after one warm-up step
(wall clock) and samples per CPU second of the process (what a free core
would give, on a shared machine), and peak RSS. Numbers are noisy when the
machine is shared: the 1-minute load average is printed with them.
Init uses an 'rbg' key: threefry random init takes far longer to compile on
XLA:CPU and does not change the step.
"""
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

_MODELS = flags.DEFINE_list('models', ['jin2018', 'purohit2019'],
                            'registry names to measure.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'examples per step.')
_SIZE = flags.DEFINE_integer('size', 128, 'image side (rounded up to the '
                             "model's size_multiple).")
_STEPS = flags.DEFINE_integer('steps', 3, 'timed steps after one warm-up.')
_ALPHA = flags.DEFINE_float('alpha', 0.2, 'R_hyp weight; 0 skips H.')
_CHILD = flags.DEFINE_string('child', None, 'internal: measure this model '
                             'in this process and print one JSON line.')


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def measure(name: str, batch: int, size: int, steps: int, alpha: float):
  """Builds, compiles and times one train step; returns a dict of numbers."""
  # Imports live here: the parent process never loads jax.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from hypercut_jax import losses  # pylint: disable=g-import-not-at-top
  from hypercut_jax import models  # pylint: disable=g-import-not-at-top
  try:
    from hypercut_jax.models import ordering  # pylint: disable=g-import-not-at-top
  except ImportError:
    ordering = None

  model = models.get(name)()
  side = _round_up(size, model.size_multiple)
  rng = np.random.default_rng(0)
  sharp = jnp.asarray(rng.uniform(size=(batch, 7, side, side, 3)), jnp.float32)
  blur = sharp.mean(axis=1)
  middle = sharp[:, 3]
  key = jax.random.key(0, impl='rbg')

  t0 = time.perf_counter()
  x1 = jnp.zeros((1, side, side, 3))
  params = jax.jit(lambda k: model.init(k, x1, train=False, middle=x1))(
      key)['params']
  jax.block_until_ready(params)
  init_s = time.perf_counter() - t0
  n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))

  use_h = ordering is not None and alpha > 0
  if use_h:
    h_model = ordering.OrderingNet()
    h_params = jax.jit(lambda k: h_model.init(
        k, jnp.zeros((1, side, side, 6))))(key)['params']
    hyperplane = ordering.init_hyperplane(jax.random.key(1),
                                          h_model.embed_dim)
  else:
    h_model, h_params, hyperplane = None, None, None

  tx = optax.adam(1e-4)

  def loss_fn(p, blur, sharp, middle, h_params, hyperplane):
    out = model.apply({'params': p}, blur, train=True, middle=middle)
    if 'pyramid' in out:
      loss = losses.multiscale_deblur_loss('order_invariant', out['pyramid'],
                                           sharp)
      loss = loss + 0.02 * losses.flow_smoothness(out['flows'])
    else:
      loss = losses.order_invariant_loss(out['frames'], sharp)
    if use_h:
      scores = ordering.forward_scores(h_model, h_params, hyperplane,
                                       out['frames'])
      loss = loss + alpha * losses.hyperplane_reg(scores)
    return loss

  def step(p, opt, blur, sharp, middle, h_params, hyperplane):
    loss, g = jax.value_and_grad(loss_fn)(p, blur, sharp, middle, h_params,
                                          hyperplane)
    updates, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, updates), opt, loss

  opt = tx.init(params)
  args = (blur, sharp, middle, h_params, hyperplane)
  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, opt, *args).compile()
  compile_s = time.perf_counter() - t0

  params, opt, loss = compiled(params, opt, *args)   # warm-up
  jax.block_until_ready(loss)
  t0, c0 = time.perf_counter(), time.process_time()
  for _ in range(steps):
    params, opt, loss = compiled(params, opt, *args)
  jax.block_until_ready(loss)
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  return {
      'model': name, 'params': n_params, 'batch': batch, 'side': side,
      'hypercut': use_h, 'init_s': init_s, 'compile_s': compile_s,
      'step_s': wall / steps, 'samples_per_s': batch * steps / wall,
      'samples_per_cpu_s': batch * steps / max(cpu, 1e-9),
      'loss': float(loss),
      'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'load_avg_1m': os.getloadavg()[0],
  }


def _run_child(name: str) -> dict:
  cmd = [sys.executable, '-m', 'benchmarks.generators', f'--child={name}',
         f'--batch_size={_BATCH.value}', f'--size={_SIZE.value}',
         f'--steps={_STEPS.value}', f'--alpha={_ALPHA.value}']
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f'benchmark child for {name} failed '
                       f'(rc={done.returncode}):\n{done.stderr[-4000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(measure(_CHILD.value, _BATCH.value, _SIZE.value,
                             _STEPS.value, _ALPHA.value)))
    return
  print(f'# generators, batch {_BATCH.value}, side >= {_SIZE.value}, '
        f'{_STEPS.value} timed steps, alpha {_ALPHA.value}, '
        f'{os.cpu_count()} CPUs')
  print('| model | params | side | H | init s | compile s | step s | '
        'samples/s | samples/CPU s | peak RSS MiB | load 1m |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for name in _MODELS.value:
    r = _run_child(name)
    print(f"| {r['model']} | {r['params']:,} | {r['side']} | "
          f"{'yes' if r['hypercut'] else 'no'} | {r['init_s']:.1f} | "
          f"{r['compile_s']:.1f} | {r['step_s']:.2f} | "
          f"{r['samples_per_s']:.2f} | {r['samples_per_cpu_s']:.2f} | "
          f"{r['peak_rss_mib']:.0f} | {r['load_avg_1m']:.1f} |", flush=True)


if __name__ == '__main__':
  app.run(main)

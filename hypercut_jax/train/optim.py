"""Optimisers and learning-rate schedules, built from `config.optim`.

`scale_by_adamax_torch` is torch's Adamax, the official H optimiser: the
infinity-norm accumulator takes eps *inside* the max,

  m_t = b1 m_{t-1} + (1 - b1) g_t
  u_t = max(b2 u_{t-1}, |g_t| + eps)
  update_t = m_t / ((1 - b1^t) u_t)           (then scaled by -lr_t)

The textbook Adamax divides by `u_t + eps` with eps outside the max; the
two differ whenever |g| is of the order of eps (e.g. dead units). optax
0.2.8's `optax.adamax` happens to take eps inside the max as torch does
(checked in tests/train_test.py); this transformation pins the torch form
whatever optax version is installed.

Config fields read here (`config.optim`):
  name: 'adamax_torch' | 'adam' | 'adamax' | 'sgd'
  lr: float; b1, b2, eps: floats (adam/adamax); momentum (sgd)
  weight_decay: float, torch-style L2 added to the gradient (0 = off)
  grad_clip_norm: float or None, global-norm clipping before the update
  schedule: 'constant' | 'step' | 'multistep' | 'cosine'
    step:      lr * decay_rate ** floor(t / decay_every), staircase
               (torch StepLR, stepped once per epoch in the official code);
               decay_every given as `decay_every_epochs` or `decay_every_steps`
    multistep: lr * decay_rate ** (number of milestones <= t);
               `milestones_epochs` or `milestones_steps` (torch MultiStepLR)
    cosine:    cosine decay from lr to `lr * final_lr_fraction` over training
  warmup_steps: int (0 = off), a linear warm-up multiplied onto any
    schedule: update t uses lr(t) * min(1, (t + 1) / warmup_steps). A
    generator that starts at the blur (zero-initialised heads) gets its
    first Adam steps (each about lr * sign(g) per weight) scaled down, so
    they do not kick it far off the blur.
Durations follow the one vocabulary of `loop.steps_of`: `<what>_steps` or
`<what>_epochs`, never both.
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ('adamax_torch', 'adam', 'adamax', 'sgd')
SCHEDULES = ('constant', 'step', 'multistep', 'cosine')


class ScaleByAdamaxTorchState(NamedTuple):
  """count: i32[] updates so far; mu, nu: pytrees like the params."""
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adamax_torch(b1: float = 0.9, b2: float = 0.999,
                          eps: float = 1e-8) -> optax.GradientTransformation:
  """Torch Adamax direction (eps inside the max), before the learning rate.

  Returns updates `m_t / ((1 - b1^t) u_t)`; chain with
  `optax.scale_by_learning_rate(lr)` for the step `-lr_t * m_t / (...)`.
  """
  if not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0:
    raise ValueError(f'adamax betas must be in [0, 1); got b1={b1}, b2={b2}')
  if eps <= 0:
    raise ValueError(f'adamax eps must be > 0 (it keeps u_t > 0); got {eps}')

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p)
    return ScaleByAdamaxTorchState(count=jnp.zeros([], jnp.int32),
                                   mu=jax.tree.map(zeros, params),
                                   nu=jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g) + eps),
                      state.nu, updates)
    count = state.count + 1
    correction = 1.0 - b1 ** count.astype(jnp.float32)
    new_updates = jax.tree.map(
        lambda m, u: (m / (correction * u)).astype(m.dtype), mu, nu)
    return new_updates, ScaleByAdamaxTorchState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def adamax_torch(learning_rate, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> optax.GradientTransformation:
  """torch.optim.Adamax (no weight decay): a float or a schedule for lr."""
  return optax.chain(scale_by_adamax_torch(b1, b2, eps),
                     optax.scale_by_learning_rate(learning_rate))


def _get(cfg, name, default=None):
  value = cfg.get(name, default) if hasattr(cfg, 'get') else default
  return default if value is None else value


def make_schedule(optim_cfg, *, steps_of: Callable[[str], int | None],
                  total_steps: int) -> optax.Schedule:
  """Learning rate per update count t (0-based: update t uses lr(t)).

  steps_of(what) resolves `optim.<what>_steps | <what>_epochs` to steps (or
  None when neither is set); total_steps is the length of training.
  `optim.warmup_steps` (> 0) multiplies the schedule by a linear ramp.
  """
  base = _base_schedule(optim_cfg, steps_of=steps_of, total_steps=total_steps)
  warmup = int(_get(optim_cfg, 'warmup_steps', 0))
  if warmup < 0:
    raise ValueError(f'config.optim.warmup_steps={warmup}; must be >= 0')
  if not warmup:
    return base
  return lambda t: base(t) * jnp.minimum(1.0, (t + 1.0) / warmup)


def _base_schedule(optim_cfg, *, steps_of: Callable[[str], int | None],
                   total_steps: int) -> optax.Schedule:
  """`make_schedule` without the warm-up."""
  lr = float(optim_cfg.lr)
  kind = _get(optim_cfg, 'schedule', 'constant')
  rate = float(_get(optim_cfg, 'decay_rate', 1.0))
  if kind == 'constant':
    return optax.constant_schedule(lr)
  if kind == 'step':
    every = steps_of('decay_every')
    if every is None or every < 1:
      raise ValueError('config.optim.schedule=\'step\' needs '
                       'optim.decay_every_epochs or optim.decay_every_steps '
                       f'>= 1 step; got {every}')
    return optax.exponential_decay(lr, transition_steps=int(every),
                                   decay_rate=rate, staircase=True)
  if kind == 'multistep':
    milestones = steps_of('milestones')
    if not milestones:
      raise ValueError('config.optim.schedule=\'multistep\' needs '
                       'optim.milestones_epochs or optim.milestones_steps')
    return optax.piecewise_constant_schedule(
        lr, {int(m): rate for m in milestones})
  if kind == 'cosine':
    final = float(_get(optim_cfg, 'final_lr_fraction', 0.0))
    return optax.cosine_decay_schedule(lr, max(int(total_steps), 1), final)
  raise ValueError(f'config.optim.schedule={kind!r}; known: {SCHEDULES}')


def make_optimizer(optim_cfg, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """The optimiser named by `optim_cfg.name`, driven by `schedule`."""
  name = optim_cfg.name
  b1 = float(_get(optim_cfg, 'b1', 0.9))
  b2 = float(_get(optim_cfg, 'b2', 0.999))
  eps = float(_get(optim_cfg, 'eps', 1e-8))
  if name == 'adamax_torch':
    core = adamax_torch(schedule, b1, b2, eps)
  elif name == 'adam':
    core = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == 'adamax':
    core = optax.adamax(schedule, b1=b1, b2=b2, eps=eps)
  elif name == 'sgd':
    core = optax.sgd(schedule, momentum=_get(optim_cfg, 'momentum', None))
  else:
    raise ValueError(f'config.optim.name={name!r}; known: {OPTIMIZERS}')
  parts = []
  clip = _get(optim_cfg, 'grad_clip_norm', None)
  if clip:
    parts.append(optax.clip_by_global_norm(float(clip)))
  wd = float(_get(optim_cfg, 'weight_decay', 0.0))
  if wd:
    # torch adds weight_decay * param to the gradient before the moments.
    parts.append(optax.add_decayed_weights(wd))
  return optax.chain(*parts, core) if parts else core

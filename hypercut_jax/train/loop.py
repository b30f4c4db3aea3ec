"""The training loop: `run(config, workdir)` for stage 1, stage 2 or both.

Read top to bottom in stages (big_vision train.py style):
  validate -> mesh -> input -> model/optimiser -> state (restored or born
  sharded) -> jitted step -> loop (log, eval, checkpoint, preemption) -> end.

Each stage is owned by a module (`STAGE_MODULES`): `validate(cfg, *,
prefix, auto_h)` checks its fields after `config.validate_common`, and
`parts(cfg, mesh, *, tx, schedule, steps_per_epoch, total_steps)` returns
its `state.StageParts` (model, init, step, evaluation). This file is the
loop only. Config helpers live in `train/config.py`.

Randomness: one root key from `config.seed`, split once into (init, train);
steps fold `state.step` into the train key, so a resumed run draws the same
numbers without saving any RNG. The data order is grain's, restored from the
checkpoint's iterator state.

`config.stage = 'both'`: stage 1 into `workdir/ordering`, stage 2 into
`workdir/generator` with H frozen from `workdir/ordering`, then the results
table in `workdir/results.md`. With a `config.predictor` section
(Animation-from-Blur) the guidance predictor trains in between, into
`workdir/predictor`, and the zhong2022 generator's P_n evaluation uses it.
Rerunning the same command resumes whichever stage was interrupted; a
finished stage is only re-evaluated.
"""
import contextlib
import dataclasses
import math
import os
import signal
import threading
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from hypercut_jax.train import animation
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import config as config_lib
from hypercut_jax.train import evaluators
from hypercut_jax.train import fingerprint as fingerprint_lib
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import inputs
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import report
from hypercut_jax.train import sharding as sharding_lib

# The config helpers the loop and its callers use (home: train/config.py).
STAGES, steps_of = config_lib.STAGES, config_lib.steps_of
stage_config, stage_workdirs = config_lib.stage_config, config_lib.stage_workdirs


@dataclasses.dataclass(frozen=True)
class _Stage:
  """The two functions a stage module gives the loop."""
  validate: object
  parts: object


STAGE_MODULES = {
    'ordering': _Stage(ordering_lib.validate, ordering_lib.parts),
    'generator': _Stage(generator_lib.validate, generator_lib.parts),
    'predictor': _Stage(animation.validate_predictor,
                        animation.predictor_stage),
    # A generator stage with the Animation-from-Blur decomposer.
    'decomposer': _Stage(animation.validate_decomposer_stage,
                         animation.decomposer_stage),
}


def stage_module(cfg) -> _Stage:
  """The module that owns the stage of one-stage config `cfg`."""
  if (cfg.stage == 'generator'
      and cfg.model.get('name') == animation.DECOMPOSER_MODEL):
    return STAGE_MODULES['decomposer']
  return STAGE_MODULES[cfg.stage]


# =============================================================================
# Config.
# =============================================================================
def validate(config, *, devices=None) -> None:
  """Checks the whole config before anything is built or compiled.

  Raises ValueError / FileNotFoundError naming the field, its value and
  what is allowed.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f'config must be an ml_collections.ConfigDict, got '
                     f'{type(config).__name__}')
  config_lib.choice(config_lib.field(config, 'stage', str), STAGES,
                    'config.stage')
  if config.get('prng_impl') is not None:
    config_lib.choice(config.prng_impl, config_lib.PRNG_IMPLS,
                      'config.prng_impl')
  if config.get('matmul_precision') is not None:
    config_lib.choice(config.matmul_precision, config_lib.MATMUL_PRECISIONS,
                      'config.matmul_precision')
  config_lib.choice(config.get('resume', 'check'),
                    fingerprint_lib.RESUME_MODES, 'config.resume')
  for stage, _ in stage_workdirs(config, ''):
    prefix = f'config.{stage}' if config.stage == 'both' else 'config'
    cfg = stage_config(config, stage)
    config_lib.validate_common(cfg, prefix=prefix, devices=devices)
    stage_module(cfg).validate(cfg, prefix=prefix,
                               auto_h=config.stage == 'both')


# =============================================================================
# Preemption.
# =============================================================================
@contextlib.contextmanager
def _sigterm_flag():
  """Yields an Event set by SIGTERM (the handler does nothing else)."""
  flag = threading.Event()
  if (threading.current_thread() is not threading.main_thread()
      or jax.process_count() > 1):
    # Several processes: jax's preemption service (started by
    # jax.distributed.initialize) owns SIGTERM and picks the stop step.
    yield flag
    return
  previous = signal.getsignal(signal.SIGTERM)
  signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def _should_stop(stop_flag, step: int) -> bool:
  """Preempted? The same answer on every process, at the same step.

  One process: our SIGTERM flag. Several: a SIGTERM to any of them reaches
  jax's preemption service, which picks one step for all (each process
  acting on its own signal deadlocks: one saves while the others run the
  next step's collectives).
  """
  if jax.process_count() == 1:
    return stop_flag.is_set()
  return multihost_utils.reached_preemption_sync_point(step)


# =============================================================================
# One stage.
# =============================================================================
@dataclasses.dataclass
class StageResult:
  metrics: dict
  step: int
  preempted: bool
  table: str


def _mean_metrics(pending) -> dict:
  host = jax.device_get([m for _, m in pending])
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}, host


def _check_finite(pending, host, mngr, ckpt_dir) -> None:
  for (step, _), values in zip(pending, host):
    loss = float(values['train/loss'])
    if not math.isfinite(loss):
      raise FloatingPointError(
          f'train/loss={loss} at step {step}: stopping. The last good '
          f'checkpoint is step {mngr.latest_step()} in {ckpt_dir} (the '
          'non-finite state was not saved).')


def train_stage(cfg, workdir: str, *, devices=None, stop_flag=None
                ) -> StageResult:
  """Trains one stage into `workdir`, resuming from its checkpoints.

  Every step and evaluation is traced under `cfg.matmul_precision` (if set).
  """
  with config_lib.matmul_precision_scope(cfg.get('matmul_precision')):
    return _train_stage(cfg, workdir, devices=devices, stop_flag=stop_flag)


def _train_stage(cfg, workdir: str, *, devices, stop_flag) -> StageResult:
  stage = cfg.stage
  stop_flag = stop_flag or threading.Event()
  # Nothing is written before the data and the workdir's config are checked.
  train_src, test_src = inputs.sources(cfg)
  record = fingerprint_lib.check(cfg, workdir, override=config_lib.override(cfg))
  os.makedirs(workdir, exist_ok=True)

  # ---------------------------------------------------------------- mesh ---
  mesh = sharding_lib.make_mesh(devices)
  sharding_lib.check_batch_size(cfg.input.batch_size, mesh, 'input.batch_size')
  batch_sh = sharding_lib.batch_sharding(mesh)
  repl = sharding_lib.replicated(mesh)

  # --------------------------------------------------------------- input ---
  steps_per_epoch = max(1, len(train_src) // cfg.input.batch_size)
  total = steps_of('total', cfg, steps_per_epoch)
  eval_every = steps_of('eval', cfg, steps_per_epoch)
  ckpt_every = steps_of('ckpt', cfg, steps_per_epoch)
  log_every = int(cfg.log_steps)
  eval_batches = inputs.eval_batches_fn(cfg, test_src)

  # ------------------------------------------------------ model + optim ---
  schedule = optim_lib.make_schedule(
      cfg.optim, steps_of=lambda w: steps_of(w, cfg.optim, steps_per_epoch),
      total_steps=total)
  tx = optim_lib.make_optimizer(cfg.optim, schedule)
  parts = stage_module(cfg).parts(cfg, mesh, tx=tx, schedule=schedule,
                                  steps_per_epoch=steps_per_epoch,
                                  total_steps=total)

  # --------------------------------------------------------------- state ---
  init_key, train_key = jax.random.split(
      jax.random.key(cfg.seed, impl=cfg.get('prng_impl')))
  abstract = jax.eval_shape(parts.init, init_key)
  state_sh = sharding_lib.tree_shardings(abstract, mesh,
                                         fsdp=cfg.sharding.fsdp)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  best = cfg.best_metric
  # The newest step that verifies (newer damaged ones are moved aside to
  # checkpoints.corrupt/, one warning line each), before the manager opens.
  restored = ckpt_lib.restore_latest_verified(
      ckpt_dir, sharding_lib.with_shardings(abstract, state_sh),
      data_iter_fn=lambda: inputs.train_iterator(cfg, train_src),
      log=lambda line: logging.warning('[%s] %s', stage, line))
  mngr = ckpt_lib.make_manager(ckpt_dir, keep=cfg.keep,
                               best_metric=f'eval/{best}',
                               best_mode=config_lib.BEST_MODES[best],
                               async_save=cfg.async_checkpoint)
  if restored is not None:
    state, train_it, latest = restored
    logging.info('[%s] resumed from step %d in %s', stage, latest, ckpt_dir)
  else:
    train_it = inputs.train_iterator(cfg, train_src)
    state = jax.jit(parts.init, out_shardings=state_sh)(init_key)
  train_key = jax.jit(lambda k: k, out_shardings=repl)(train_key)  # multi-host safe
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  logging.info('[%s] %d params, %d steps (%d per epoch), %d devices', stage,
               n_params, total, steps_per_epoch, mesh.size)

  # ---------------------------------------------------------------- step ---
  step_fn = jax.jit(
      parts.step,
      in_shardings=(state_sh, batch_sh, repl, *parts.extra_shardings),
      out_shardings=(state_sh, repl), donate_argnums=0)
  evaluate = parts.make_evaluate(eval_batches)
  extra_evaluators = evaluators.build_extra(
      cfg.eval.get('extra'), batches_fn=eval_batches, mesh=mesh, config=cfg)

  # ---------------------------------------------------------------- loop ---
  writer = report.MetricWriter(workdir)
  start = int(jax.device_get(state.step))
  dropped = writer.rewind(start, drop_eval_at_step=start >= total)
  if dropped:
    logging.info('[%s] metrics.jsonl: dropped %d row(s) past step %d',
                 stage, dropped, start)
  writer.write_config(cfg)
  if jax.process_index() == 0:
    fingerprint_lib.write(workdir, record)
  metrics, table, preempted, step = {}, '', False, start
  last_eval_step = None

  def run_eval(step):
    nonlocal metrics, table, last_eval_step
    t0 = time.time()
    values, examples = evaluate(state)
    for evaluator in extra_evaluators:   # config.eval.extra
      values = {**values, **evaluator.run(state)}
    metrics = {f'eval/{k}': float(v) for k, v in values.items()}
    metrics['eval/seconds'] = time.time() - t0
    writer.write(step, metrics)
    table = report.markdown_table(metrics, parts.table_stage,
                                  **report.paper_row(cfg, parts.table_stage))
    bar.write(f'[{stage}] step {step} eval:\n{table}')
    if examples and jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, 'examples'), exist_ok=True)
      report.save_examples(
          os.path.join(workdir, 'examples', f'step_{step:07d}'),
          examples['blur'], examples['pred'], examples['gt'])
    last_eval_step = step
    return metrics

  bar = report.ProgressBar(total, initial=start, desc=stage)
  pending = []
  t_last = time.time()
  try:
    for step in range(start + 1, total + 1):
      host_batch = next(train_it)
      with jax.transfer_guard('disallow'):
        batch = sharding_lib.put_batch(host_batch, batch_sh)
        state, step_metrics = step_fn(state, batch, train_key, *parts.extra)
      pending.append((step, step_metrics))
      stop = _should_stop(stop_flag, step)
      is_end = step == total
      is_eval = is_end or bool(eval_every and step % eval_every == 0)
      is_ckpt = (is_end or is_eval or stop
                 or bool(ckpt_every and step % ckpt_every == 0))
      if step % log_every == 0 or is_ckpt:
        means, host = _mean_metrics(pending)
        _check_finite(pending, host, mngr, ckpt_dir)
        now = time.time()
        means['train/steps_per_sec'] = len(pending) / max(now - t_last, 1e-9)
        t_last = now
        writer.write(step, means)
        bar.update(step, means)
        pending = []
      eval_metrics = run_eval(step) if is_eval else None
      if is_ckpt:
        ckpt_lib.save(mngr, step, state, data_iter=train_it, config=cfg,
                      metrics=eval_metrics)
        t_last = time.time()
      if stop and not is_end:
        mngr.wait_until_finished()
        preempted = True
        bar.write(f'[{stage}] preempted: saved step {step}; rerun the same '
                  'command to resume.')
        break
    if step_fn._cache_size() > 1:  # pylint: disable=protected-access
      logging.warning('[%s] the train step compiled %d times',
                      stage, step_fn._cache_size())  # pylint: disable=protected-access
    if not preempted and last_eval_step != step:
      run_eval(step)  # finished earlier: evaluate the final state again
  finally:
    bar.close()
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return StageResult(metrics=metrics, step=step, preempted=preempted,
                     table=table)


# =============================================================================
# Entry point.
# =============================================================================
def run(config, workdir: str, *, devices=None) -> dict:
  """Validates `config`, trains its stage(s) in `workdir`, writes results.

  Returns {stage: StageResult}. For stage 'both' (and single stages) the
  final markdown table goes to stdout and `workdir/results.md`.
  """
  validate(config, devices=devices)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  stage_dirs = dict(stage_workdirs(config, workdir))
  # Every stage's data and recorded config first: a drift in a later stage
  # stops the run before an earlier one is touched.
  for stage, stage_dir in stage_dirs.items():
    cfg = config_lib.chained(config, stage, stage_dirs)
    inputs.sources(cfg)
    fingerprint_lib.check(cfg, stage_dir, override=config_lib.override(cfg))
  results = {}
  with _sigterm_flag() as stop_flag:
    for stage, stage_dir in stage_dirs.items():
      cfg = config_lib.chained(config, stage, stage_dirs)
      result = train_stage(cfg, stage_dir, devices=devices,
                           stop_flag=stop_flag)
      results[stage] = result
      if result.preempted:
        return results
  text = report.results_markdown(
      config, results, generator_cfg=stage_config(config, 'generator')
      if 'generator' in results else None)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
      f.write(text + '\n')
    print(text, flush=True)
  return results

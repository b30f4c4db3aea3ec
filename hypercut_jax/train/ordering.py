"""Stage 1: train the ordering network H against a fixed hyperplane.

Per example, the 3 frame pairs (k, 6-k) are scored in both orders in one
batched apply (`models.ordering.pair_scores`) and
`losses.ordering_loss(u, v, form)` pushes each pair and its swap to opposite
sides of the hyperplane. The hyperplane is drawn once from the init key and
kept in `OrderingState.hyperplane`; it is never differentiated and never
redrawn (a resumed run reads it from the checkpoint).
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from hypercut_jax import losses
from hypercut_jax import metrics as metrics_lib
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import config as config_lib
from hypercut_jax.train import evaluators
from hypercut_jax.train import sharding as sharding_lib
from hypercut_jax.train import state as state_lib

MODEL_NAME = 'hypercut'
# OrderingNet fields a config may set (everything but `dtype`).
MODEL_FIELDS = ('nf', 'embed_dim', 'n_down', 'n_blocks', 'negative_slope',
                'channel_order', 'mean', 'std')


def make_model(model_kwargs: dict, precision: str = 'float32'
               ) -> ordering_model.OrderingNet:
  """OrderingNet from `config.model.kwargs` (a dict of MODEL_FIELDS)."""
  kwargs = dict(model_kwargs or {})
  unknown = sorted(set(kwargs) - set(MODEL_FIELDS))
  if unknown:
    raise ValueError(f'config.model.kwargs has unknown OrderingNet fields '
                     f'{unknown}; known: {list(MODEL_FIELDS)}')
  # JSON lists for mean/std become tuples in OrderingNet itself.
  return ordering_model.OrderingNet(dtype=config_lib.compute_dtype(precision), **kwargs)


def make_init(model, tx: optax.GradientTransformation, image_size: int
              ) -> Callable:
  """init(key) -> OrderingState at step 0: params + hyperplane + opt state."""
  def init(key):
    param_key, plane_key = jax.random.split(key)
    pairs = jnp.zeros((1, image_size, image_size, 6), jnp.float32)
    params = model.init(param_key, pairs)['params']
    hyperplane = ordering_model.init_hyperplane(plane_key, model.embed_dim)
    return state_lib.create(params, tx, hyperplane=hyperplane)
  return init


def make_train_step(model, tx: optax.GradientTransformation, *,
                    loss_form: str = 'official',
                    schedule: optax.Schedule | None = None) -> Callable:
  """train_step(state, batch, key) -> (state, metrics).

  batch: {'sharp': uint8[B,7,H,W,3], ...} sharded on B. key: the run's
  train key; the step folds in `state.step` (H itself draws no randomness,
  the fold keeps the signature uniform across stages). metrics: flat dict
  of f32[] ('train/loss', its parts 'train/diff' and 'train/same' (as the
  official trainer logs them, `losses.ordering_loss`), 'train/hit',
  'train/con@3', 'train/grad_norm', 'train/lr').
  """
  def loss_fn(params, hyperplane, frames):
    u, v = ordering_model.pair_scores(model, params, hyperplane, frames)
    loss, terms = losses.ordering_loss(u, v, form=loss_form, return_terms=True)
    return loss, (u, v, terms)

  def train_step(state, batch, key):
    del key  # deterministic network; see docstring
    frames = metrics_lib.to_float(batch['sharp'])
    (loss, (u, v, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.hyperplane, frames)
    new_state = state_lib.apply_gradients(state, grads, tx)
    out = {'train/loss': loss,
           'train/diff': terms['diff'], 'train/same': terms['same'],
           'train/hit': jnp.mean(metrics_lib.hit(u, v)),
           'train/con@3': jnp.mean(metrics_lib.con(u, 3)),
           'train/grad_norm': optax.global_norm(grads)}
    if schedule is not None:
      out['train/lr'] = jnp.asarray(schedule(state.step), jnp.float32)
    return new_state, out
  return train_step


def make_score_fn(model) -> Callable:
  """score(params, hyperplane, frames) -> (u, v), each f32[B,3].

  frames: uint8[B,7,H,W,3] or f32 in [0,1]; jit it with shardings.
  """
  def score(params, hyperplane, frames):
    return ordering_model.pair_scores(model, params, hyperplane,
                                      metrics_lib.to_float(frames))
  return score


# ------------------------------------------------------ the loop's interface ---
def validate(cfg, *, prefix: str, auto_h: bool = False) -> None:
  """Stage 1's own checks (after `config.validate_common`)."""
  del auto_h  # stage 1 needs no frozen model
  config_lib.choice(cfg.model.name, (MODEL_NAME,), f'{prefix}.model.name')
  kwargs = dict(cfg.model.get('kwargs', None) or {})
  unknown = sorted(set(kwargs) - set(MODEL_FIELDS))
  if unknown:
    raise ValueError(f'{prefix}.model.kwargs has unknown OrderingNet fields '
                     f'{unknown}; known: {list(MODEL_FIELDS)}')
  config_lib.choice(config_lib.field(cfg, 'loss.form', str, prefix=prefix),
                    losses.FORMS, f'{prefix}.loss.form')
  lo = ordering_model.min_side(kwargs.get('n_down', 5))
  if cfg.input.crop < lo:
    raise ValueError(f'{prefix}.input.crop={cfg.input.crop}; H needs >= {lo} '
                     'px')
  config_lib.choice(cfg.best_metric, ('hit', 'hit_first', 'con@2', 'con@3'),
                    f'{prefix}.best_metric')


def parts(cfg, mesh, *, tx, schedule, **unused) -> state_lib.StageParts:
  """Stage 1 for the loop: H, its init, step and evaluation."""
  del unused
  model = make_model(cfg.model.get('kwargs', None), cfg.precision)
  score_fn = make_score_fn(model)

  def make_evaluate(batches_fn):
    evaluator = evaluators.OrderingEvaluator(
        batches_fn, score_fn, data_sharding=sharding_lib.batch_sharding(mesh))
    def evaluate(state):
      return evaluator.run(state.params, state.hyperplane), None
    return evaluate

  return state_lib.StageParts(
      init=make_init(model, tx, cfg.input.crop),
      step=make_train_step(model, tx, loss_form=cfg.loss.form,
                           schedule=schedule),
      extra=(), extra_shardings=(), make_evaluate=make_evaluate,
      table_stage='ordering')

"""Train states: plain pytrees (step, params, optimiser state).

The optimiser itself (an optax GradientTransformation) is not part of the
state: it is rebuilt from the config and closed over by the step, so the
state is exactly what a checkpoint holds.
"""
import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: i32[] updates done; params: Flax params; opt_state: optax state."""
  step: jax.Array
  params: Any
  opt_state: Any


@flax.struct.dataclass
class OrderingState(TrainState):
  """Stage-1 state. hyperplane: f32[D+1], drawn once, never trained.

  It lives in the state so every checkpoint carries it and a resumed run
  reads it back instead of redrawing it.
  """
  hyperplane: jax.Array


def create(params, tx: optax.GradientTransformation, **extra) -> TrainState:
  """Fresh state at step 0 (an OrderingState when `hyperplane` is given)."""
  step = jnp.zeros([], jnp.int32)
  if 'hyperplane' in extra:
    return OrderingState(step=step, params=params, opt_state=tx.init(params),
                         hyperplane=extra['hyperplane'])
  if extra:
    raise ValueError(f'unknown train state fields: {sorted(extra)}')
  return TrainState(step=step, params=params, opt_state=tx.init(params))


def apply_gradients(state: TrainState, grads,
                    tx: optax.GradientTransformation) -> TrainState:
  """One optimiser update; returns the state at step + 1."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state)


@dataclasses.dataclass
class StageParts:
  """What the loop needs from a stage module (`<module>.parts(...)`).

  init(key) -> state; step(state, batch, key, *extra) -> (state, metrics);
  extra: frozen arrays after the key (H for stage 2), extra_shardings theirs;
  make_evaluate(batches_fn) -> evaluate(state) -> (metrics dict, examples
  dict or None); table_stage: which results table `report` prints.
  """
  init: Callable
  step: Callable
  extra: tuple
  extra_shardings: tuple
  make_evaluate: Callable
  table_stage: str

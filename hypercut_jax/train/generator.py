"""Stage 2: train a generator (blur -> 7 frames), optionally with HyperCUT.

Loss = L_D + alpha * R_hyp:
  L_D    `losses.deblur_loss(name, frames, sharp)`, or for models that return
         a 'pyramid' (Purohit) `losses.multiscale_deblur_loss(name, pyramid,
         sharp)` + `flow_weight * losses.flow_smoothness(flows)`;
  R_hyp  `losses.hyperplane_reg(forward_scores(H, frames), reg_form)` with H
         frozen: its params and hyperplane are separate, replicated, non-donated
         arguments of the step, loaded from a stage-1 checkpoint; they never
         enter the optimiser or this stage's checkpoint. alpha = 0 or no H
         checkpoint is the baseline.
Purohit receives the ground-truth middle frame `sharp[:, 3]` in training;
every generator ignores the keyword inputs it does not use.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from hypercut_jax import losses
from hypercut_jax import models
from hypercut_jax.models import ordering as ordering_model
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import optim as optim_lib
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import sharding as sharding_lib
from hypercut_jax.train import state as state_lib

MIDDLE = 3


def _field_names(cls) -> set:
  try:
    return {f.name for f in dataclasses.fields(cls)}
  except TypeError:
    return set()


def make_model(name: str, kwargs: dict | None, precision: str = 'float32'):
  """`models.get(name)(**kwargs)`, with the compute dtype when it has one."""
  cls = models.get(name)
  kwargs = dict(kwargs or {})
  dtype = ordering_lib.compute_dtype(precision)
  if dtype is not None and 'dtype' in _field_names(cls) and 'dtype' not in kwargs:
    kwargs['dtype'] = dtype
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise ValueError(f'config.model.kwargs={kwargs} do not fit '
                     f'{cls.__name__}: {e}') from e


def make_init(model, tx: optax.GradientTransformation, image_size: int,
              with_guidance: bool = False) -> Callable:
  """init(key) -> TrainState at step 0."""
  def init(key):
    blur = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    kw = {'middle': blur}
    if with_guidance:
      kw['guidance'] = jnp.zeros((1, image_size, image_size), jnp.int32)
    params = model.init({'params': key}, blur, train=False, **kw)['params']
    return state_lib.create(params, tx)
  return init


# ---------------------------------------------------------------- frozen H ---
def load_hypercut(directory: str, mesh, precision: str = 'float32'):
  """Frozen H from a stage-1 workdir or checkpoint dir.

  Reads H's model config and optimiser config from the checkpoint's config
  item, rebuilds the abstract stage-1 state, and restores it replicated on
  `mesh`. Returns (model, params, hyperplane f32[D+1], step).
  """
  saved, _ = ckpt_lib.read_config(directory)
  saved = ml_collections.ConfigDict(saved)
  model = ordering_lib.make_model(saved.model.get('kwargs', {}), precision)
  tx = optim_lib.make_optimizer(saved.optim, optax.constant_schedule(0.0))
  crop = int(saved.input.crop)
  abstract = jax.eval_shape(ordering_lib.make_init(model, tx, crop),
                            jax.random.key(0))
  target = sharding_lib.with_shardings(
      abstract, jax.tree.map(lambda _: sharding_lib.replicated(mesh), abstract))
  state, step = ckpt_lib.restore_state(directory, target)
  return model, state.params, state.hyperplane, step


# --------------------------------------------------------------------- step ---
def deblur_terms(out: dict, sharp, loss_name: str, flow_weight: float):
  """L_D of the generator outputs against sharp f32[B,7,H,W,3]."""
  terms = {}
  if out.get('pyramid') is not None:
    terms['deblur'] = losses.multiscale_deblur_loss(loss_name, out['pyramid'],
                                                    sharp)
  else:
    terms['deblur'] = losses.deblur_loss(loss_name, out['frames'], sharp)
  total = terms['deblur']
  if out.get('flows') is not None and flow_weight:
    terms['flow'] = losses.flow_smoothness(out['flows'])
    total = total + flow_weight * terms['flow']
  return total, terms


def make_train_step(model, tx: optax.GradientTransformation, *,
                    loss_name: str = 'order_invariant',
                    flow_weight: float = 0.0, h_model=None, alpha: float = 0.0,
                    reg_form: str = 'official',
                    schedule: optax.Schedule | None = None) -> Callable:
  """train_step(state, batch, key, h_params, hyperplane) -> (state, metrics).

  batch: {'blur': uint8[B,H,W,3], 'sharp': uint8[B,7,H,W,3],
  'guidance'?: int[B,H,W]} sharded on B. key: the run's train key, folded
  with `state.step` for the model's rngs. h_params / hyperplane: frozen H
  (ignored, may be None, when `h_model` is None or alpha == 0).
  """
  use_h = h_model is not None and alpha != 0

  def loss_fn(params, blur, sharp, guidance, key, h_params, hyperplane):
    kw = {'middle': sharp[:, MIDDLE]}
    if guidance is not None:
      kw['guidance'] = guidance
    out = model.apply({'params': params}, blur, train=True,
                      rngs={'dropout': key, 'noise': key}, **kw)
    loss, terms = deblur_terms(out, sharp, loss_name, flow_weight)
    if use_h:
      scores = ordering_model.forward_scores(
          h_model, jax.lax.stop_gradient(h_params),
          jax.lax.stop_gradient(hyperplane), out['frames'])
      terms['r_hyp'] = losses.hyperplane_reg(scores, form=reg_form)
      terms['pred_sign_neg'] = jnp.mean((scores < 0).astype(jnp.float32))
      loss = loss + alpha * terms['r_hyp']
    return loss, terms

  def train_step(state, batch, key, h_params=None, hyperplane=None):
    key = jax.random.fold_in(key, state.step)
    blur = ordering_lib.to_float(batch['blur'])
    sharp = ordering_lib.to_float(batch['sharp'])
    guidance = batch.get('guidance')
    if guidance is not None:
      guidance = guidance.astype(jnp.int32)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, blur, sharp, guidance, key, h_params, hyperplane)
    new_state = state_lib.apply_gradients(state, grads, tx)
    out = {'train/loss': loss, 'train/grad_norm': optax.global_norm(grads)}
    out.update({f'train/{k}': v for k, v in terms.items()})
    if schedule is not None:
      out['train/lr'] = jnp.asarray(schedule(state.step), jnp.float32)
    return new_state, out
  return train_step


def make_predict_fn(model) -> Callable:
  """predict(params, blur) -> f32[B,7,H,W,3] in [0,1]; blur uint8 or f32.

  Any H x W: `models.predict` pads to the model's size multiple. No middle
  frame is given (inference setting).
  """
  def predict(params, blur):
    return models.predict(model, {'params': params},
                          ordering_lib.to_float(blur))
  return predict

"""R_hyp goes down with a trained H (issue 6 must-show).

Stage 1: a tiny H learns to order the embedded synthetic data (40 px
records, camera + sprite motion, direction reversed at random) with the
trainer's own ordering step, until its hit on held-out records is well above
that of the untrained H. Stage 2: a tiny purohit2019 generator is trained
with the trainer's generator step (order-invariant multiscale loss on [0,1]
frames, `space='unit'`, + flow term + alpha * R_hyp) under that frozen H; `train/r_hyp` (official form,
mean over the batch of sum_k softplus(s([f_k, f_{6-k}]))) must fall and the
share of predicted pairs on the chosen (negative) side must rise.

Everything is seeded; the generator sees one fixed batch of training records
(H is scored on the unseen test scenes) so the comparison
of the first and last steps is not drowned by batch-to-batch variation.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hypercut_jax import metrics
from hypercut_jax.data import synthetic
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import optim
from hypercut_jax.train import ordering as ordering_lib

SIZE = 40            # H needs >= 33 px; the generator below needs multiples of 2
N_TRAIN, N_TEST = 512, 64
H_KWARGS = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1, negative_slope=0.2)
H_STEPS, H_LR = 150, 1e-2
# purohit2019 with two scales and no centre net (training feeds the
# ground-truth middle frame): the smallest registered generator to compile.
G_KWARGS = dict(blur_widths=(4, 8), blur_strides=(1, 2), flow_channels=(4, 8),
                middle='none')
G_STEPS, G_LR, ALPHA, K = 24, 3e-3, 1.0, 6
BATCH = 8


def _records(split, n):
  src = synthetic.SyntheticBlur2Vid(split, seed=0, num_records=n,
                                    size=(SIZE, SIZE))
  examples = [src[i] for i in range(n)]
  return {'blur': np.stack([e['blur'] for e in examples]),
          'sharp': np.stack([e['sharp'] for e in examples])}


def _hit(score, state, sharp):
  u, v = score(state.params, state.hyperplane, sharp)
  return float(jnp.mean(metrics.hit(u, v)))


def test_r_hyp_decreases_under_a_trained_h():
  train, test = _records('train', N_TRAIN), _records('test', N_TEST)
  rng = np.random.default_rng(0)

  # ---- stage 1: H orders the synthetic data.
  h_model = ordering_lib.make_model(H_KWARGS)
  h_tx = optim.adamax_torch(H_LR)
  h_state = jax.jit(ordering_lib.make_init(h_model, h_tx, SIZE))(
      jax.random.key(0))
  h_step = jax.jit(ordering_lib.make_train_step(h_model, h_tx))
  score = jax.jit(ordering_lib.make_score_fn(h_model))
  hit_before = _hit(score, h_state, test['sharp'])
  for _ in range(H_STEPS):
    idx = rng.choice(N_TRAIN, BATCH, replace=False)
    h_state, _ = h_step(h_state, {'sharp': train['sharp'][idx]},
                        jax.random.key(0))
  hit_after = _hit(score, h_state, test['sharp'])
  assert hit_before < 0.5 and hit_after >= 0.75, (hit_before, hit_after)

  # ---- stage 2: the generator under the frozen H, alpha > 0.
  model = generator_lib.make_model('purohit2019', G_KWARGS)
  tx = optax.adam(G_LR)
  # rbg: the same init distribution, a much faster init compile on CPU.
  state = jax.jit(generator_lib.make_init(model, tx, SIZE))(
      jax.random.key(1, impl='rbg'))
  step = jax.jit(generator_lib.make_train_step(
      model, tx, loss_name='order_invariant', flow_weight=0.02,
      h_model=h_model, alpha=ALPHA, reg_form='official', space='unit'))
  h_params, plane = h_state.params, h_state.hyperplane
  h_before = jax.tree.map(np.asarray, h_params)
  idx = np.arange(BATCH)
  batch = {'blur': train['blur'][idx], 'sharp': train['sharp'][idx]}
  r_hyp, neg, loss = [], [], []
  for _ in range(G_STEPS):
    state, m = step(state, batch, jax.random.key(2), h_params, plane)
    r_hyp.append(float(m['train/r_hyp']))
    neg.append(float(m['train/pred_sign_neg']))
    loss.append(float(m['train/loss']))
  assert np.all(np.isfinite(loss)), loss
  first, last = np.mean(r_hyp[:K]), np.mean(r_hyp[-K:])
  assert last < 0.75 * first, np.round(r_hyp, 3).tolist()
  assert np.mean(neg[-K:]) > np.mean(neg[:K]), np.round(neg, 3).tolist()
  # H stayed frozen.
  jax.tree.map(np.testing.assert_array_equal, h_before,
               jax.tree.map(np.asarray, h_params))

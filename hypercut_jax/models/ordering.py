"""The ordering network H and its fixed hyperplane (HyperCUT stage 1).

`OrderingNet` is the official `ResnetIm2Vec` (nf=32, d=128, 2,315,552
parameters): a pair of frames concatenated on channels (6 ch) ->
reflect pad 3 + conv7x7 -> n_down stride-2 conv3x3 (pad 1) -> n_blocks
residual blocks -> global average pool -> e in R^d. No FC, no L2 norm. The
activation after the stem and each downsampling conv is
`layers.leaky_relu(negative_slope)`; the official `LeakyReLU(True)` sets the
slope to 1.0, i.e. the identity, so stem + downsampling form one affine map
and the only non-linearities are the ReLUs inside the residual blocks.

Input normalisation is part of the model (a converted checkpoint must see the
input it was trained on): frames come in as RGB in [0,1]; with
`channel_order='bgr'` (official, OpenCV reads BGR) the 3 channels of each
frame are reversed, then `(x - mean) / std` with `mean`/`std` applied to the
channels in that order as given (the ImageNet RGB statistics land on B, G, R,
exactly as the official code does).

Parameter names and the official torch keys (torch `nn.Sequential` indices of
`f_func.model`; kernels OIHW -> HWIO, biases as is). With n_down=5, n_blocks=6:

  torch key prefix                         Flax params path
  f_func.model.1                           stem/conv/{kernel,bias}
  f_func.model.{3 + 2*i}       i < n_down  down{i}/{kernel,bias}
  f_func.model.{j0 + j}.conv_block.1       block{j}/conv1/conv/{kernel,bias}
  f_func.model.{j0 + j}.conv_block.4       block{j}/conv2/conv/{kernel,bias}
  (j0 = 3 + 2*n_down = 13, j < n_blocks)

`official_param_names` returns this table for any (n_down, n_blocks). The
hyperplane (`hyperplane.hyperplane` in torch, d+1 values) is not a Flax param:
`init_hyperplane` draws it once, the trainer stores it in every checkpoint and
passes it to `pair_scores` / `forward_scores`, which never differentiate it.

Speed on CPU (`conv_impl`): with 'cpu' the stem and the stride-2
convolutions run as the restructured convolutions of `models.cpu_conv`
(space-to-depth stem, im2col matmuls; the same sums in another order: float
rounding apart, same parameters, same tree); with 'xla' as plain `lax` convs
(`layers`). 'auto' (default) takes 'cpu' when the default backend is the CPU
and 'xla' elsewhere (GPU/TPU convolutions are the fast path there). Numbers
and the profile are in docs/performance.md. The restructured convs define
their own VJP (`jax.custom_vjp`): reverse mode (grad, vjp) works, forward
mode (jvp) through H needs `conv_impl='xla'`.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hypercut_jax import losses
from hypercut_jax.models import cpu_conv
from hypercut_jax.models import layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ('bgr', 'rgb')
CONV_IMPLS = ('auto', 'xla', 'cpu')
# Sequence-valued fields, kept as tuples so the module stays hashable.
SEQUENCE_FIELDS = ('mean', 'std')


def min_side(n_down: int = 5) -> int:
  """Smallest input side H: 2**n_down + 1 (33 for the default).

  Below it the last feature map has side 1 and the residual blocks' reflect
  padding is undefined (the official network fails there too).
  """
  return max(2 ** n_down + 1, 4)


def normalize_pairs(pairs, channel_order: str = 'bgr',
                    mean=IMAGENET_MEAN, std=IMAGENET_STD):
  """Official H input normalisation.

  pairs: f32[..., 6] in [0,1], two RGB frames concatenated on channels.
  Returns f32[..., 6]: per 3-channel frame, channels reversed when
  channel_order == 'bgr', then `(x - mean) / std` channel by channel in that
  order (mean, std: 3 floats each, applied as given).
  """
  if channel_order not in CHANNEL_ORDERS:
    raise ValueError(f'channel_order={channel_order!r}; known: {CHANNEL_ORDERS}')
  if len(mean) != 3 or len(std) != 3:
    raise ValueError(f'mean and std need 3 values each; got mean={mean}, std={std}')
  if any(s <= 0 for s in std):
    raise ValueError(f'std values must be > 0; got {std}')
  if pairs.shape[-1] != 6:
    raise ValueError(f'pairs must have 6 channels (2 RGB frames); got {pairs.shape}')
  x = pairs.reshape(*pairs.shape[:-1], 2, 3)
  if channel_order == 'bgr':
    x = x[..., ::-1]
  x = (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)
  return x.reshape(pairs.shape)


def resolve_conv_impl(conv_impl: str) -> str:
  """'auto' -> 'cpu' when jax's default backend is the CPU, else 'xla'."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f'conv_impl={conv_impl!r}; known: {CONV_IMPLS}')
  if conv_impl == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return conv_impl


class OrderingNet(nn.Module):
  """H: frame pair -> embedding (official `ResnetIm2Vec`).

  Downsampling conv i (i < n_down) has min(nf * 2**(i+1), embed_dim) output
  channels (32 -> 64 -> 128 -> 128 -> 128 -> 128 for the default), the
  residual blocks have embed_dim channels. `dtype` is the compute dtype
  (e.g. jnp.bfloat16); parameters stay float32 and the pooled output is
  float32. `conv_impl`: 'auto' | 'cpu' | 'xla', how the stem and the
  stride-2 convs are computed (module docstring); every choice has the same
  parameters and the same outputs up to float rounding.

  `mean`/`std` given as lists or arrays (e.g. from a JSON config) are
  stored as tuples, so the module is hashable (`jax.jit` static argument).
  """
  nf: int = 32
  embed_dim: int = 128
  n_down: int = 5
  n_blocks: int = 6
  negative_slope: float = 1.0
  channel_order: str = 'bgr'
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD
  dtype: Any = None
  conv_impl: str = 'auto'

  def __post_init__(self):
    for name in SEQUENCE_FIELDS:
      value = getattr(self, name)
      if isinstance(value, (list, np.ndarray)):
        # Set before linen's own __post_init__ freezes the fields.
        object.__setattr__(self, name, tuple(np.asarray(value).tolist()))
    super().__post_init__()

  @nn.compact
  def __call__(self, pairs):
    """pairs: f32[N,H,W,6] in [0,1] RGB, frame a first -> f32[N,embed_dim].

    H and W must be >= `min_side(n_down)` (33 by default).
    """
    if pairs.ndim != 4 or pairs.shape[-1] != 6:
      raise ValueError(f'OrderingNet input must be [N,H,W,6]; got {pairs.shape}')
    lo = min_side(self.n_down)
    if pairs.shape[1] < lo or pairs.shape[2] < lo:
      raise ValueError(
          f'OrderingNet input sides must be >= {lo} px (n_down={self.n_down}); '
          f'got {pairs.shape}')
    if min(self.nf * 2 ** self.n_down, self.embed_dim) != self.embed_dim:
      raise ValueError(
          f'nf * 2**n_down must reach embed_dim; got nf={self.nf}, '
          f'n_down={self.n_down}, embed_dim={self.embed_dim}')
    cpu = resolve_conv_impl(self.conv_impl) == 'cpu'
    act = layers.leaky_relu(self.negative_slope)
    x = normalize_pairs(pairs.astype(jnp.float32), self.channel_order,
                        self.mean, self.std)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    stem = cpu_conv.CpuStem if cpu else layers.ReflectConv
    x = act(stem(self.nf, 7, dtype=self.dtype, name='stem')(x))
    for i in range(self.n_down):
      features = min(self.nf * 2 ** (i + 1), self.embed_dim)
      if cpu:
        down = cpu_conv.CpuConv(features, 3, 'down', self.dtype,
                                name=f'down{i}')
      else:
        down = layers.strided_conv(features, 3, 2, dtype=self.dtype,
                                   name=f'down{i}')
      x = act(down(x))
    for j in range(self.n_blocks):
      x = layers.ResnetBlock(self.embed_dim, dtype=self.dtype,
                             name=f'block{j}')(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


# Test-only variant: same structure, 33 px minimum, a few thousand params.
OrderingNetTiny = functools.partial(OrderingNet, nf=4, embed_dim=8, n_blocks=1)


def official_param_names(n_down: int = 5, n_blocks: int = 6
                         ) -> dict[str, tuple[str, ...]]:
  """Torch module prefix (under `f_func.`) -> Flax params path of that conv.

  Each entry holds a `weight` (OIHW; Flax `kernel`, HWIO) and a `bias`.
  """
  names = {'model.1': ('stem', 'conv')}
  for i in range(n_down):
    names[f'model.{3 + 2 * i}'] = (f'down{i}',)
  j0 = 3 + 2 * n_down
  for j in range(n_blocks):
    names[f'model.{j0 + j}.conv_block.1'] = (f'block{j}', 'conv1', 'conv')
    names[f'model.{j0 + j}.conv_block.4'] = (f'block{j}', 'conv2', 'conv')
  return names


def init_hyperplane(key, embed_dim: int):
  """Fixed hyperplane w: f32[embed_dim+1] uniform in [-1, 1).

  Drawn once, never trained; scores use `losses.hyperplane_score(e, w)`.
  """
  if int(embed_dim) != embed_dim or embed_dim < 1:
    raise ValueError(f'embed_dim must be a positive int; got {embed_dim!r}')
  return jax.random.uniform(key, (int(embed_dim) + 1,), jnp.float32,
                            minval=-1.0, maxval=1.0)


def _variables(params):
  # Accepts the params tree or the full {'params': ...} variables.
  return params if 'params' in params else {'params': params}


def _check(model, hyperplane, frames):
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ValueError(f'frames must be [B,T,H,W,3]; got {frames.shape}')
  if hyperplane.shape != (model.embed_dim + 1,):
    raise ValueError(
        f'hyperplane must be [{model.embed_dim + 1}] (embed_dim + 1); '
        f'got {hyperplane.shape}')


def _embed_and_score(model, params, hyperplane, pairs):
  """pairs: f32[..., H, W, 6] -> f32[...] scores, one apply for all."""
  lead = pairs.shape[:-3]
  e = model.apply(_variables(params), pairs.reshape(-1, *pairs.shape[-3:]))
  s = losses.hyperplane_score(e, jax.lax.stop_gradient(hyperplane))
  return s.reshape(lead)


def pair_scores(model, params, hyperplane, frames):
  """Scores of every pair in both orders, in one batched apply.

  model: an `OrderingNet`; params: its params tree (or `{'params': ...}`);
  hyperplane: f32[embed_dim+1] (no gradient flows into it);
  frames: f32[B,T,H,W,3] in [0,1] RGB.
  Returns (u, v), each f32[B,P]: u[:, k] = s([x_k, x_{T-1-k}]),
  v[:, k] = s([x_{T-1-k}, x_k]).
  """
  _check(model, hyperplane, frames)
  both = jnp.stack([losses.make_pairs(frames),
                    losses.make_pairs(frames, reverse=True)])  # [2,B,P,H,W,6]
  s = _embed_and_score(model, params, hyperplane, both)
  return s[0], s[1]


def forward_scores(model, params, hyperplane, frames):
  """Scores of the forward pairs only (generator stage, R_hyp).

  frames: f32[B,T,H,W,3] in [0,1] RGB -> f32[B,P], s([x_k, x_{T-1-k}]).
  """
  _check(model, hyperplane, frames)
  return _embed_and_score(model, params, hyperplane, losses.make_pairs(frames))

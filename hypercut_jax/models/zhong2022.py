"""Animation-from-Blur (Zhong et al., ECCV 2022): decomposer + guidance predictor.

Architecture facts from the paper and the authors' code
(zzh-tech/Animation-from-Blur, configs `mbd_2s_residual.yaml` and
`cvaegan_gumble_celoss_z4.yaml`); the code is ours, and so are the defaults
marked "ours" below.

**Motion guidance** (`hypercut_jax.data.guidance`): a class map in {0: static,
1..4: quadrant directions}. The generator protocol passes it as
`guidance: i32[B,H,W]`; inside, stage 1 sees it the way the authors feed it:
two channels `(sx, sy)` in {-1, 0, 1} (their "trend", `CLASS_SIGNS` below),
concatenated to the blur (3 + 2 = 5 input channels).

**Decomposer** (`Decomposer`, generator `zhong2022`, ~129M parameters at the
authors' width): two `DecomposerStage`s, each conv7x7 -> 128, two down blocks
(conv3x3 + stride-2 conv3x3) to 256 / 512, 12 pre-activation residual blocks
(512), two up blocks (4x4 stride-2 transposed conv + conv3x3) back to 128,
and a conv7x7 head (`final_conv`) -> 21 channels = 7 RGB frames (channel =
3 * frame + colour, as the authors' `reshape(b, 7, 3, h, w)`). Zero padding
everywhere (torch `padding=1/3`); the transposed conv uses padding k-1-p = 2
and `transpose_kernel=True`, so a torch `ConvTranspose2d` weight (in, out,
kh, kw) converts by a plain transpose to (kh, kw, out, in).
  * stages: stage 1 reads blur + trend; its frames are replaced by the blur
    wherever the guidance is static (authors: `dynamic * s1 + static *
    blur`). Stage 2 reads the blur and the 21 channels of stage 1 and, with
    `residual=True` (the authors' `residual: true`), its output is added to
    stage 1. `two_stage=False` keeps stage 1 only.
  * heads by default (`start_at_blur=True`, ours): residuals on the blur
    that are zero at init. Stage 1 is `blur + tanh(h1)` per frame and stage
    2 `s1 + tanh(h2)` (`blur + tanh(h2)` with `residual=False`); both
    `final_conv`s (kernel and bias) start at zero, so `stage1 == frames_raw
    == frames == blur` at step 0. The first gradient step moves only the two
    `final_conv`s, later steps the whole network. `residual_activation`
    defaults to None, which resolves to 'tanh' here; 'sigmoid' on a residual
    stage 2 raises (a sigmoid residual is 0.5, not 0, at init).
  * the authors' heads (`start_at_blur=False`): sigmoids with Flax's default
    inits; stage 1 outputs the frames, stage 2 a non-negative residual
    (`residual_activation` None = 'sigmoid'; 'tanh' is the signed option; a
    direct stage 2, `residual=False`, is a sigmoid). The setting for loading
    their checkpoints. `stage2_activation` resolves the stage-2 head;
    parameter names and shapes do not depend on `start_at_blur`.
  * outputs: 'frames' (stage 2 clipped to [0, 1]), 'frames_raw' (stage 2
    before clipping), 'stage1'.
  * loss (`train/animation.py:decomposer_terms`): `config.loss.deblur` (MSE
    for the authors) of each stage's raw output against the ground truth,
    summed over the stages (as the authors), in `config.loss.space`
    (default: the official HyperCUT trainer's ImageNet-normalised space);
    "+ HyperCUT" adds alpha * R_hyp of a frozen H on the raw stage-2 frames
    (`animation.make_decomposer_step`).
  * normalisation (ours): the authors use (Sync)BatchNorm. The generator
    protocol allows `{'params'}` only (no batch statistics), so the default
    is InstanceNorm with affine scale/bias (the same parameter count as
    BatchNorm's affine part); `norm='affine'` is a per-channel scale and
    bias, i.e. BatchNorm in eval mode, the target for converting the
    authors' checkpoints (`gamma / sqrt(var + eps)`, `beta - mean * that`);
    `norm='none'` drops it.

**Guidance predictor** (BicycleGAN, `GuidancePredictor`): `unet_256`
generator with the latent added at every level (`where_add='all'`, nz = 4,
ngf = 64, 8 downsamplings, InstanceNorm without affine, dropout 0.5 in the
three inner 512-wide blocks, ReLU up / LeakyReLU(0.2) down) producing 5-class
logits per pixel; `resnet_256` encoder (nef = 64, 5 levels, LeakyReLU(0.2),
average pooling, two linear heads -> mu, logvar) that reads the one-hot
guidance (the authors' E sees only the guidance; `use_blur=True` also feeds
the blur); `basic_256_multi` PatchGAN discriminator (2 scales, ndf = 64 and
32, 3 layers, unconditional: it judges one-hot guidance maps only), the same
D for the encoded and the random branch (`use_same_D: true`). A generated
map reaches D as a straight-through Gumbel-softmax sample (tau = 1, hard).
Its objective and updates are in `train/bicyclegan.py`, its trainer stage
('predictor') in `train/animation.py`.
"""
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hypercut_jax.models import layers

N_FRAMES = 7
N_CLASSES = 5
# (sx, sy) of each guidance class; identical to data.guidance.CLASS_SIGNS
# (kept here so models do not import the data package; a test checks it).
CLASS_SIGNS = ((0, 0), (1, -1), (-1, -1), (-1, 1), (1, 1))
NORMS = ('instance', 'affine', 'none')
RESIDUAL_ACTIVATIONS = ('sigmoid', 'tanh')


def guidance_to_trend(guidance, dtype=jnp.float32):
  """i32[..., H, W] classes -> f32[..., H, W, 2] (sx, sy) in {-1, 0, 1}."""
  return jnp.asarray(CLASS_SIGNS, dtype)[guidance]


def frames_from_channels(x):
  """f32[B,H,W,3T] (channel 3t + c) -> f32[B,T,H,W,3]."""
  b, h, w, c = x.shape
  return x.reshape(b, h, w, c // 3, 3).transpose(0, 3, 1, 2, 4)


def frames_to_channels(frames):
  """f32[B,T,H,W,3] -> f32[B,H,W,3T] (channel 3t + c)."""
  b, t, h, w, c = frames.shape
  return frames.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)


def _conv(features, k, stride=1, dtype=None, name=None, zero_init=False):
  """torch-style conv: zero padding (k-1)//2 on each side.

  zero_init: zero kernel and bias at init (else Flax's default inits).
  """
  p = (k - 1) // 2
  return nn.Conv(features, (k, k), strides=(stride, stride),
                 padding=((p, p), (p, p)), dtype=dtype, name=name, 
                 **layers.zero_init(zero_init))


def _conv_transpose(features, dtype=None, name=None):
  """torch ConvTranspose2d(k=4, s=2, p=1): exactly doubles H and W."""
  return nn.ConvTranspose(features, (4, 4), strides=(2, 2),
                          padding=((2, 2), (2, 2)), transpose_kernel=True,
                          dtype=dtype, name=name)


class Affine(nn.Module):
  """Per-channel scale and bias (BatchNorm in eval mode, folded)."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    return x * scale.astype(x.dtype) + bias.astype(x.dtype)


def _norm(kind, dtype, name):
  if kind == 'instance':
    return nn.InstanceNorm(epsilon=1e-5, dtype=dtype, name=name)
  if kind == 'affine':
    return Affine(name=name)
  if kind == 'none':
    return lambda x: x
  raise ValueError(f'norm={kind!r}; known: {NORMS}')


def instance_norm(x, eps: float = 1e-5):
  """InstanceNorm2d without affine parameters: f32[B,H,W,C] -> same."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axis=(1, 2), keepdims=True)
  var = x32.var(axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class PreActResBlock(nn.Module):
  """norm, ReLU, conv3x3, norm, ReLU, conv3x3, + skip. f32[B,H,W,C] -> same."""
  norm: str = 'instance'
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = nn.relu(_norm(self.norm, self.dtype, 'norm1')(x))
    y = _conv(c, 3, dtype=self.dtype, name='conv1')(y)
    y = nn.relu(_norm(self.norm, self.dtype, 'norm2')(y))
    y = _conv(c, 3, dtype=self.dtype, name='conv2')(y)
    return x + y


class DecomposerStage(nn.Module):
  """One encoder / residual bottleneck / decoder stage.

  x: f32[B,H,W,Cin] (H, W divisible by 2**n_down) -> f32[B,H,W,out_channels]
  in (0,1) (sigmoid) or (-1,1) (tanh). `zero_init`: `final_conv` starts at
  zero (kernel and bias), so a tanh stage outputs 0 at init.
  """
  features: int = 128
  max_features: int = 512
  n_down: int = 2
  n_blocks: int = 12
  out_channels: int = 3 * N_FRAMES
  norm: str = 'instance'
  activation: str = 'sigmoid'
  dtype: Any = None
  zero_init: bool = False

  @nn.compact
  def __call__(self, x):
    width = lambda i: min(self.max_features, self.features * 2 ** i)
    h = _conv(self.features, 7, dtype=self.dtype, name='first_conv')(x)
    h = nn.relu(_norm(self.norm, self.dtype, 'first_norm')(h))
    for i in range(self.n_down):
      h = _conv(width(i + 1), 3, dtype=self.dtype, name=f'down{i}_conv1')(h)
      h = nn.relu(_norm(self.norm, self.dtype, f'down{i}_norm1')(h))
      h = _conv(width(i + 1), 3, stride=2, dtype=self.dtype, name=f'down{i}_conv2')(h)
      h = nn.relu(_norm(self.norm, self.dtype, f'down{i}_norm2')(h))
    for j in range(self.n_blocks):
      h = PreActResBlock(self.norm, self.dtype, name=f'block{j}')(h)
    for i in range(self.n_down):
      out = width(self.n_down - i - 1)
      h = _conv_transpose(out, dtype=self.dtype, name=f'up{i}_trans')(h)
      h = nn.relu(_norm(self.norm, self.dtype, f'up{i}_norm1')(h))
      h = _conv(out, 3, dtype=self.dtype, name=f'up{i}_conv')(h)
      h = nn.relu(_norm(self.norm, self.dtype, f'up{i}_norm2')(h))
    h = _conv(self.out_channels, 7, dtype=self.dtype, name='final_conv',
              zero_init=self.zero_init)(h)
    h = h.astype(jnp.float32)
    if self.activation == 'sigmoid':
      return nn.sigmoid(h)
    if self.activation == 'tanh':
      return jnp.tanh(h)
    raise ValueError(f'activation={self.activation!r}; known: {RESIDUAL_ACTIVATIONS}')


class _SizeMultiple:
  """`2 ** n_down`: of the instance's n_down, or of the default on the class."""

  def __get__(self, obj, cls=None):
    n_down = getattr(cls if obj is None else obj, 'n_down')
    return 2 ** int(n_down)


class Decomposer(nn.Module):
  """Guided two-stage blur decomposer (generator `zhong2022`).

  __call__(blur: f32[B,H,W,3] in [0,1], *, train, middle=None,
           guidance: i32[B,H,W] in {0..4}) -> dict:
    'frames':     f32[B,7,H,W,3] in [0,1] (stage 2, clipped);
    'frames_raw': f32[B,7,H,W,3] stage 2 before clipping (the loss uses it);
    'stage1':     f32[B,7,H,W,3] stage 1 (static pixels = blur).
  H and W must be divisible by `size_multiple` = 2**n_down (4 at the
  default n_down = 2; read on the class it is the default's). `middle` and
  `train` are accepted for the generator protocol and unused (no dropout, no
  batch statistics).

  `start_at_blur` (default True): every output equals the blur at init
  (tanh residual heads on the blur, zero final convs); False: the authors'
  sigmoid heads. `residual_activation`: the stage-2 residual head, None =
  'tanh' with start_at_blur, else 'sigmoid' (`stage2_activation`).
  """
  size_multiple = _SizeMultiple()
  features: int = 128
  max_features: int = 512
  n_down: int = 2
  n_blocks: int = 12
  norm: str = 'instance'
  two_stage: bool = True
  residual: bool = True
  residual_activation: str | None = None
  dtype: Any = None
  start_at_blur: bool = True

  @nn.compact
  def __call__(self, blur, *, train: bool, middle=None, guidance=None):
    del train, middle
    if guidance is None:
      raise ValueError('zhong2022 Decomposer needs guidance: i32[B,H,W] classes in '
                       '{0..4} (data.guidance.compute_guidance, or sampled by the '
                       'guidance predictor)')
    if blur.ndim != 4 or blur.shape[-1] != 3:
      raise ValueError(f'blur must be f32[B,H,W,3]; got {blur.shape}')
    if tuple(guidance.shape) != tuple(blur.shape[:3]):
      raise ValueError(f'guidance must be i32{list(blur.shape[:3])} for blur '
                       f'{blur.shape}; got {guidance.shape}')
    m = 2 ** self.n_down
    if blur.shape[1] % m or blur.shape[2] % m:
      raise ValueError(f'blur H, W must be divisible by {m} (pad with '
                       f'models.predict); got {blur.shape}')
    act2 = stage2_activation(self.start_at_blur, self.residual,
                             self.residual_activation)
    blur = blur.astype(jnp.float32)
    from_blur = self.start_at_blur
    stage = functools.partial(
        DecomposerStage, features=self.features, max_features=self.max_features,
        n_down=self.n_down, n_blocks=self.n_blocks, norm=self.norm,
        dtype=self.dtype, zero_init=from_blur)
    trend = guidance_to_trend(guidance)
    s1 = frames_from_channels(
        stage(activation='tanh' if from_blur else 'sigmoid', name='stage1')(
            jnp.concatenate([blur, trend], axis=-1)))
    if from_blur:
      s1 = blur[:, None] + s1
    static = (guidance == 0)[:, None, :, :, None]
    s1 = jnp.where(static, blur[:, None], s1)
    out = s1
    if self.two_stage:
      inp2 = jnp.concatenate([blur, frames_to_channels(s1)], axis=-1)
      s2 = frames_from_channels(stage(activation=act2, name='stage2')(inp2))
      if self.residual:
        out = s1 + s2
      else:
        out = blur[:, None] + s2 if from_blur else s2
    return {'frames': jnp.clip(out, 0.0, 1.0), 'frames_raw': out, 'stage1': s1}


def stage2_activation(start_at_blur: bool, residual: bool,
                      residual_activation: str | None) -> str:
  """The stage-2 head of a Decomposer with these fields.

  With start_at_blur the head is a residual that must be 0 at init: 'tanh'
  (None resolves to it; 'sigmoid' raises ValueError). Without, the authors':
  `residual_activation` (None: 'sigmoid') for a residual stage 2, 'sigmoid'
  for a direct one (residual=False ignores residual_activation).
  """
  if residual_activation not in (None, *RESIDUAL_ACTIVATIONS):
    raise ValueError(f'residual_activation={residual_activation!r}; '
                     f'known: {RESIDUAL_ACTIVATIONS} or None')
  if start_at_blur:
    if residual and residual_activation == 'sigmoid':
      raise ValueError(
          "residual_activation='sigmoid' (the authors' non-negative residual) "
          'is 0.5 at init, so it cannot start at the blur: use '
          "start_at_blur=False, or 'tanh' / None")
    return 'tanh'
  if not residual:
    return 'sigmoid'
  return residual_activation or 'sigmoid'


TinyDecomposer = functools.partial(Decomposer, features=8, max_features=16,
                                   n_blocks=1)


# ----------------------------------------------------------------------------
# Guidance predictor (BicycleGAN).
# ----------------------------------------------------------------------------


class GuidanceGenerator(nn.Module):
  """U-Net G(blur, z) -> guidance logits, z added at every level.

  blur: f32[B,H,W,3] in [0,1] (H, W divisible by 2**num_downs); z: f32[B,nz].
  Returns f32[B,H,W,n_classes] logits. `train` switches dropout (rng
  'dropout').
  """
  n_classes: int = N_CLASSES
  nz: int = 4
  ngf: int = 64
  num_downs: int = 8
  use_dropout: bool = True
  dropout_rate: float = 0.5
  dtype: Any = None

  @property
  def size_multiple(self) -> int:
    return 2 ** self.num_downs

  @nn.compact
  def __call__(self, blur, z, *, train: bool):
    if blur.ndim != 4 or blur.shape[-1] != 3:
      raise ValueError(f'blur must be f32[B,H,W,3]; got {blur.shape}')
    if z.shape != (blur.shape[0], self.nz):
      raise ValueError(f'z must be f32[{blur.shape[0]},{self.nz}]; got {z.shape}')
    m = self.size_multiple
    if blur.shape[1] % m or blur.shape[2] % m:
      raise ValueError(f'GuidanceGenerator(num_downs={self.num_downs}) needs H, W '
                       f'divisible by {m}; got {blur.shape}')
    n = self.num_downs
    inner = [self.ngf * min(2 ** i, 8) for i in range(n)]
    outer = [self.n_classes] + inner[:-1]
    z = z.astype(blur.dtype)

    def block(i, x):
      zz = jnp.broadcast_to(z[:, None, None, :], (*x.shape[:3], self.nz))
      h = jnp.concatenate([x, zz], axis=-1)
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      h = nn.Conv(inner[i], (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  dtype=self.dtype, name=f'down{i}')(h)
      innermost = i == n - 1
      if not innermost:
        if i > 0:
          h = instance_norm(h)
        h = block(i + 1, h)
      h = nn.relu(h)
      h = _conv_transpose(outer[i], dtype=self.dtype, name=f'up{i}')(h)
      if i == 0:
        return h
      h = instance_norm(h)
      if self.use_dropout and i >= 4 and not innermost:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      return jnp.concatenate([h, x], axis=-1)

    return block(0, blur).astype(jnp.float32)


class GuidanceEncoder(nn.Module):
  """ResNet encoder E(guidance [, blur]) -> (mu, logvar), each f32[B,nz].

  guidance: f32[B,H,W,n_classes] one-hot (or soft) map; blur f32[B,H,W,3]
  only when use_blur. Ends in a global average pool (the authors'
  AvgPool2d(8) at 256 px input).
  """
  nz: int = 4
  nef: int = 64
  n_blocks: int = 5
  use_blur: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, guidance, blur=None):
    if guidance.ndim != 4:
      raise ValueError(f'guidance must be f32[B,H,W,C] (one-hot); got {guidance.shape}')
    x = guidance
    if self.use_blur:
      if blur is None or blur.shape[:3] != guidance.shape[:3]:
        raise ValueError(f'use_blur=True needs blur f32[{list(guidance.shape[:3])},3]; '
                         f'got {None if blur is None else blur.shape}')
      x = jnp.concatenate([x, blur.astype(x.dtype)], axis=-1)
    h = nn.Conv(self.nef, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                dtype=self.dtype, name='conv0')(x)
    pool = lambda t: nn.avg_pool(t, (2, 2), strides=(2, 2))
    for n in range(1, self.n_blocks):
      c_in = self.nef * min(4, n)
      c_out = self.nef * min(4, n + 1)
      y = nn.leaky_relu(instance_norm(h), 0.2)
      y = _conv(c_in, 3, dtype=self.dtype, name=f'block{n}_conv1')(y)
      y = nn.leaky_relu(instance_norm(y), 0.2)
      y = pool(_conv(c_out, 3, dtype=self.dtype, name=f'block{n}_conv2')(y))
      s = nn.Conv(c_out, (1, 1), dtype=self.dtype, name=f'block{n}_shortcut')(pool(h))
      h = y + s
    h = nn.leaky_relu(h, 0.2).astype(jnp.float32).mean(axis=(1, 2))
    mu = nn.Dense(self.nz, name='fc_mu')(h)
    logvar = nn.Dense(self.nz, name='fc_logvar')(h)
    return mu, logvar


class GuidanceDiscriminator(nn.Module):
  """Multi-scale PatchGAN: f32[B,H,W,C] -> list of num_d maps f32[B,h_i,w_i,1].

  Scale i sees the input average-pooled i times (3x3, stride 2, pad 1, pads
  not counted) and has round(ndf / 2**i) base filters. Input sides must be
  at least 2**(n_layers + num_d - 1) * 3.
  """
  ndf: int = 64
  n_layers: int = 3
  num_d: int = 2
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    outs = []
    for i in range(self.num_d):
      nf = int(round(self.ndf / 2 ** i))
      conv = lambda f, s, name: nn.Conv(f, (4, 4), strides=(s, s),
                                        padding=((1, 1), (1, 1)),
                                        dtype=self.dtype, name=name)
      h = nn.leaky_relu(conv(nf, 2, f'scale{i}_conv0')(x), 0.2)
      for n in range(1, self.n_layers):
        h = conv(nf * min(2 ** n, 8), 2, f'scale{i}_conv{n}')(h)
        h = nn.leaky_relu(instance_norm(h), 0.2)
      h = conv(nf * min(2 ** self.n_layers, 8), 1, f'scale{i}_conv{self.n_layers}')(h)
      h = nn.leaky_relu(instance_norm(h), 0.2)
      h = conv(1, 1, f'scale{i}_out')(h)
      outs.append(h.astype(jnp.float32))
      if i != self.num_d - 1:
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                        count_include_pad=False)
    return outs


@dataclasses.dataclass(frozen=True)
class GuidancePredictor:
  """The three BicycleGAN networks; their params live in one dict.

  params = {'g': G params, 'e': E params, 'd': D params} (+ 'd2' when
  separate_d2, a second discriminator for the random-z branch; the authors
  share one D, `use_same_D: true`).
  """
  generator: GuidanceGenerator = dataclasses.field(default_factory=GuidanceGenerator)
  encoder: GuidanceEncoder = dataclasses.field(default_factory=GuidanceEncoder)
  discriminator: GuidanceDiscriminator = dataclasses.field(
      default_factory=GuidanceDiscriminator)
  separate_d2: bool = False

  @property
  def nz(self) -> int:
    return self.generator.nz

  @property
  def n_classes(self) -> int:
    return self.generator.n_classes

  @property
  def size_multiple(self) -> int:
    return self.generator.size_multiple

  def init(self, key, image_hw=None):
    """Random params for images of (H, W) (default: one size_multiple square)."""
    if self.encoder.nz != self.generator.nz:
      raise ValueError(f'encoder.nz={self.encoder.nz} != generator.nz={self.generator.nz}')
    h, w = image_hw or (self.size_multiple, self.size_multiple)
    blur = jnp.zeros((1, h, w, 3), jnp.float32)
    onehot = jnp.zeros((1, h, w, self.n_classes), jnp.float32)
    z = jnp.zeros((1, self.nz), jnp.float32)
    kg, ke, kd, kd2 = jax.random.split(key, 4)
    params = {
        'g': self.generator.init(kg, blur, z, train=False)['params'],
        'e': self.encoder.init(ke, onehot, blur)['params'],
        'd': self.discriminator.init(kd, onehot)['params'],
    }
    if self.separate_d2:
      params['d2'] = self.discriminator.init(kd2, onehot)['params']
    return params

  def generate(self, params, blur, z, *, train=False, rngs=None):
    """Logits f32[B,H,W,n_classes] of G(blur, z)."""
    return self.generator.apply({'params': params['g']}, blur, z, train=train,
                                rngs=rngs)

  def encode(self, params, guidance_onehot, blur=None):
    """(mu, logvar) f32[B,nz] each, from E."""
    return self.encoder.apply({'params': params['e']}, guidance_onehot, blur)

  def discriminate(self, params, x, which='d'):
    """List of PatchGAN maps from D ('d') or D2 ('d2', falls back to 'd')."""
    p = params[which] if which in params else params['d']
    return self.discriminator.apply({'params': p}, x)


def tiny_guidance_predictor(**kw) -> GuidancePredictor:
  """CPU test variant: 32 px multiple, a few thousand parameters."""
  return GuidancePredictor(
      generator=GuidanceGenerator(ngf=4, num_downs=5),
      encoder=GuidanceEncoder(nef=4, n_blocks=2),
      discriminator=GuidanceDiscriminator(ndf=8, n_layers=2, num_d=2), **kw)


def gumbel_softmax_hard(key, logits, tau: float = 1.0):
  """Straight-through Gumbel-softmax over the last axis.

  logits: f32[..., K]. Forward value: one-hot of argmax(logits + Gumbel
  noise); gradient: that of softmax((logits + noise) / tau) (torch
  `F.gumbel_softmax(hard=True)`).
  """
  g = jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax((logits + g) / tau, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype)
  return hard + soft - jax.lax.stop_gradient(soft)


def param_count(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))

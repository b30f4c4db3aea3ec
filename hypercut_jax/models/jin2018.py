"""Jin, Meishvili, Favaro, "Learning to Extract a Video Sequence from a Single
Motion-Blurred Image", CVPR 2018: the 7-frame cascade.

Frames are indexed 0..6 (the authors number them 1..7; their frame 4 is our
x3). The cascade, with the weight sharing of the authors' release:

  x3 = centre(y)                         `centre`  (JinCentre)
  x2 = N_a(y, x3, x3) + x3               `net_a`   (SideNet, deep)
  x4 = N_b(y, x2, x3) + x3               `net_b`   (SideNet, deep)
  x1 = N_c(y, x3, x2) + x2,  x5 = N_c(y, x3, x4) + x4     `net_c` (shared)
  x0 = N_d(y, x2, x1) + x1,  x6 = N_d(y, x4, x5) + x5     `net_d` (shared)

A side net N(y, a, r) sees the blur y and two references a, r and predicts
the residual to r (r is also added back inside, at low resolution).

Every colour channel runs through the same network (colour-shared weights):
channels are folded into the batch, each grey image is pixel-unshuffled
(x4 in the centre net, x5 in the side nets, so H and W must be multiples of
20), processed at low resolution, shuffled back, and only the last few
full-resolution convs see the 3 channels together.

Blocks (pre-activation, InstanceNorm with affine scale/bias, eps 1e-5, no conv
biases, zero 'same' padding as in torch):
  `PreActBlock(d2, d4)`: x + conv1x1(relu(IN(x)))
                           + conv3x3_{d4}(relu(IN(conv3x3_{d2}(relu(IN(x))))))
  (d2 = d4 = 1 is the authors' plain block, otherwise their dilated block).
  `FuseBlock(c)`: conv1x1(relu(IN(x))) + conv3x3(relu(IN(x))) -> c channels
  (no skip). One fuse block reads the output of every stage; the fused maps
  are summed with the unshuffled reference and shuffled back to full size.

Default widths and depths (the authors' release; 18,213,376 parameters):
  centre: conv5x5 16->144; stages of 3 plain | dilations (1,2),(2,4),(4,8) |
          (8,4),(4,2),(2,1) | 3 plain blocks at 144 ch; 4 fuse blocks
          144->16; tail conv3x3 3->64, PreActBlock(64), IN, ReLU,
          conv3x3 64->3, + y.                                     4,972,032
  net_a, net_b: conv5x5 25->64 (blur), 25->32, 25->32 (references), concat
          128 ch; stages of 4 plain | (1,2),(4,8),(8,4),(2,1) | 4 plain;
          3 fuse blocks 128->25; tail conv3x3 3->32, FuseBlock(32), IN,
          ReLU, conv3x3 32->3.                                 3,934,464 each
  net_c, net_d: as net_a with 2 plain blocks per plain stage.  2,686,208 each

Parameter names follow the authors' modules (for a weight converter; torch
kernels OIHW -> HWIO, InstanceNorm weight -> scale):
  centerEsti            -> centre          N8_IN / N9_IN      -> net_a.. net_d
  conv1_B               -> head            conv1_B, _S1, _S2  -> head_blur,
  LocalGrad{k}.{j}      -> trunk/stage{k-1}_block{j}             head_a, head_r
  fuse{k}.0             -> trunk/fuse{k-1}
  conv2, GlobalGrad.0, norm3, conv3 -> tail_in, tail_block, tail_norm, tail_out
  inside blocks: norm1, norm2, norm4, conv1, conv2, conv4 keep their names.
  F35_N8.generateFrame3 / generateFrame5 -> net_a / net_b;
  F26_N9.generateFrame2_6 -> net_c; F17_N9.generateFrame1_7 -> net_d.

Start at the blur (`start_at_blur=True`, the default; ours): the kernel of
the last conv of every net (`tail_out`, bias-free) is initialised to zero, so
at step 0 the centre net returns its input blur and every side net a zero
residual: all 7 frames equal the blur. The first gradient step moves only
the `tail_out` kernels (the rest of a net reaches the output through them);
from the second step on, gradients reach every parameter. Parameter names and
shapes do not depend on it. `start_at_blur=False` keeps Flax's default init
for `tail_out` too.

Differences from the authors: the paper trains the stages in sequence; here
the cascade is one differentiable function (train it end to end, or freeze
sub-trees with an optax mask). Weights use Flax default inits where the
authors' code has an orthogonal init (and `tail_out` starts at zero, above).
"""
import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from hypercut_jax.models import layers

Dilations = Sequence[tuple[int, int]]

PLAIN = (1, 1)
CENTRE_STAGES = ((PLAIN,) * 3, ((1, 2), (2, 4), (4, 8)),
                 ((8, 4), (4, 2), (2, 1)), (PLAIN,) * 3)
SIDE_DILATED = ((1, 2), (4, 8), (8, 4), (2, 1))


def side_stages(n_plain: int, dilated: Dilations = SIDE_DILATED):
  """Stages of a side net: n_plain plain blocks | dilated | n_plain plain."""
  return ((PLAIN,) * n_plain, tuple(dilated), (PLAIN,) * n_plain)


def _conv(features: int, kernel: int, dilation: int = 1, dtype=None,
          name: str | None = None, zero_init: bool = False) -> nn.Conv:
  """Bias-free stride-1 conv with torch's symmetric zero 'same' padding.

  zero_init: zero kernel at init (else Flax's default kernel init).
  """
  p = (kernel - 1) // 2 * dilation
  return nn.Conv(features, (kernel, kernel),
                 kernel_dilation=(dilation, dilation),
                 padding=((p, p), (p, p)), use_bias=False, dtype=dtype,
                 name=name, **layers.zero_init(zero_init, bias=False))


def _norm_relu(x, name: str, dtype=None):
  """relu(InstanceNorm(x)) with torch's eps and affine parameters."""
  x = nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False, dtype=dtype,
                      name=name)(x)
  return nn.relu(x)


def fold_colours(x):
  """f32[B,H,W,C] -> f32[B*C,H,W,1]: each colour channel its own image."""
  b, h, w, c = x.shape
  return x.transpose(0, 3, 1, 2).reshape(b * c, h, w, 1)


def unfold_colours(x, channels: int = 3):
  """Inverse of `fold_colours`: f32[B*C,H,W,1] -> f32[B,H,W,C]."""
  bc, h, w, _ = x.shape
  return x.reshape(bc // channels, channels, h, w).transpose(0, 2, 3, 1)


class PreActBlock(nn.Module):
  """Pre-activation InstanceNorm residual block with two dilations.

  x: f32[N,H,W,features] -> same shape.
  """
  features: int
  dilation: tuple[int, int] = PLAIN
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    d2, d4 = self.dilation
    short = _conv(self.features, 1, dtype=self.dtype, name='conv1')(
        _norm_relu(x, 'norm1', self.dtype))
    y = _conv(self.features, 3, d2, dtype=self.dtype, name='conv2')(
        _norm_relu(x, 'norm2', self.dtype))
    y = _conv(self.features, 3, d4, dtype=self.dtype, name='conv4')(
        _norm_relu(y, 'norm4', self.dtype))
    return x + short + y


class FuseBlock(nn.Module):
  """conv1x1(relu(IN(x))) + conv3x3(relu(IN(x))), no skip.

  x: f32[N,H,W,Cin] -> f32[N,H,W,features].
  """
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    a = _conv(self.features, 1, dtype=self.dtype, name='conv1')(
        _norm_relu(x, 'norm1', self.dtype))
    b = _conv(self.features, 3, dtype=self.dtype, name='conv2')(
        _norm_relu(x, 'norm2', self.dtype))
    return a + b


class _Trunk(nn.Module):
  """Low-resolution trunk shared by the centre and side nets.

  x: f32[N,h,w,features] (after the head convs); ref: f32[N,h,w,r*r]
  (unshuffled grey reference). Runs the stages, fuses every stage output to
  r*r channels, sums them with `ref`. Returns f32[N,h,w,r*r].
  """
  features: int
  out_features: int
  stages: Sequence[Dilations]
  dtype: Any = None

  @nn.compact
  def __call__(self, x, ref):
    total = ref
    for i, stage in enumerate(self.stages):
      for j, dil in enumerate(stage):
        x = PreActBlock(self.features, tuple(dil), dtype=self.dtype,
                        name=f'stage{i}_block{j}')(x)
      total = total + FuseBlock(self.out_features, dtype=self.dtype,
                                name=f'fuse{i}')(x)
    return total


def _check_image(x, name: str, multiple: int):
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'{name} must be f32[B,H,W,3]; got {x.shape}')
  if x.shape[1] % multiple or x.shape[2] % multiple:
    raise ValueError(
        f'{name}: H and W must be multiples of {multiple}; got {x.shape} '
        '(use models.predict, which pads)')


class JinCentre(nn.Module):
  """Centre-frame (deblurring) network: y -> x3.

  Usable alone as a deblurrer (Purohit's middle-frame estimate).
  `size_multiple` = scale (4 by default). `start_at_blur`: zero-initialised
  `tail_out` kernel, so the output is the blur at init (False: Flax's
  default init).
  """
  features: int = 144
  stages: Sequence[Dilations] = CENTRE_STAGES
  tail_features: int = 64
  scale: int = 4
  dtype: Any = None
  start_at_blur: bool = True

  size_multiple: ClassVar[int] = 4

  @nn.compact
  def __call__(self, blur):
    """blur: f32[B,H,W,3] in [0,1], H, W multiples of `scale` -> f32[B,H,W,3].

    The output is a residual on the blur and is not clipped.
    """
    _check_image(blur, 'blur', self.scale)
    r = self.scale
    grey = layers.pixel_unshuffle(fold_colours(blur), r)  # [3B,h,w,r*r]
    x = _conv(self.features, 5, dtype=self.dtype, name='head')(grey)
    x = _Trunk(self.features, r * r, self.stages, self.dtype, name='trunk')(
        x, grey)
    x = unfold_colours(layers.pixel_shuffle(x, r))
    x = _conv(self.tail_features, 3, dtype=self.dtype, name='tail_in')(x)
    x = PreActBlock(self.tail_features, dtype=self.dtype, name='tail_block')(x)
    x = _conv(3, 3, dtype=self.dtype, name='tail_out',
              zero_init=self.start_at_blur)(
                  _norm_relu(x, 'tail_norm', self.dtype))
    return x.astype(blur.dtype) + blur


class SideNet(nn.Module):
  """Side-frame network N(y, a, r): residual of a new frame w.r.t. r.

  Head widths: features/2 for the blur, features/4 for each reference.
  `start_at_blur`: zero-initialised `tail_out` kernel, so the residual is 0
  at init (False: Flax's default init).
  """
  features: int = 128
  stages: Sequence[Dilations] = side_stages(4)
  tail_features: int = 32
  scale: int = 5
  dtype: Any = None
  start_at_blur: bool = True

  @nn.compact
  def __call__(self, blur, a, r):
    """blur, a, r: f32[B,H,W,3], H, W multiples of `scale` -> f32[B,H,W,3].

    Returns the residual (the caller adds r).
    """
    if self.features % 4:
      raise ValueError(f'SideNet.features must be divisible by 4; got {self.features}')
    for name, v in (('blur', blur), ('a', a), ('r', r)):
      _check_image(v, name, self.scale)
    if not blur.shape == a.shape == r.shape:
      raise ValueError(f'blur, a, r shapes differ: {blur.shape}, {a.shape}, {r.shape}')
    s = self.scale
    grey = lambda v: layers.pixel_unshuffle(fold_colours(v), s)
    gy, ga, gr = grey(blur), grey(a), grey(r)
    q = self.features // 4
    x = jnp.concatenate([
        _conv(2 * q, 5, dtype=self.dtype, name='head_blur')(gy),
        _conv(q, 5, dtype=self.dtype, name='head_a')(ga),
        _conv(q, 5, dtype=self.dtype, name='head_r')(gr)], axis=-1)
    x = _Trunk(self.features, s * s, self.stages, self.dtype, name='trunk')(
        x, gr)
    x = unfold_colours(layers.pixel_shuffle(x, s))
    x = _conv(self.tail_features, 3, dtype=self.dtype, name='tail_in')(x)
    x = FuseBlock(self.tail_features, dtype=self.dtype, name='tail_block')(x)
    x = _conv(3, 3, dtype=self.dtype, name='tail_out',
              zero_init=self.start_at_blur)(
                  _norm_relu(x, 'tail_norm', self.dtype))
    return x.astype(blur.dtype)


class Model(nn.Module):
  """The Jin et al. 2018 cascade: blur -> 7 frames.

  Widths/depths: `centre_features`, `centre_stages`, `centre_tail`;
  `side_features`, `deep_plain` (plain blocks per plain stage of net_a/b),
  `shallow_plain` (net_c/d), `side_dilated`, `side_tail`.
  `start_at_blur` (passed to every sub-net): all 7 frames equal the blur at
  init (zero `tail_out` kernels); False is Flax's default init throughout.
  """
  centre_features: int = 144
  centre_stages: Sequence[Dilations] = CENTRE_STAGES
  centre_tail: int = 64
  side_features: int = 128
  deep_plain: int = 4
  shallow_plain: int = 2
  side_dilated: Dilations = SIDE_DILATED
  side_tail: int = 32
  dtype: Any = None
  start_at_blur: bool = True

  size_multiple: ClassVar[int] = 20

  @nn.compact
  def __call__(self, blur, *, train: bool, middle=None, guidance=None):
    """blur: f32[B,H,W,3] in [0,1], H, W multiples of 20.

    `train` is accepted for the generator protocol (no layer depends on it);
    `middle` and `guidance` are ignored. Returns {'frames': f32[B,7,H,W,3]}
    (not clipped; `models.predict` clips).
    """
    del train, middle, guidance
    _check_image(blur, 'blur', self.size_multiple)
    side = lambda n_plain, name: SideNet(
        self.side_features, side_stages(n_plain, self.side_dilated),
        self.side_tail, dtype=self.dtype, start_at_blur=self.start_at_blur,
        name=name)
    net_a = side(self.deep_plain, 'net_a')
    net_b = side(self.deep_plain, 'net_b')
    net_c = side(self.shallow_plain, 'net_c')
    net_d = side(self.shallow_plain, 'net_d')
    x3 = JinCentre(self.centre_features, self.centre_stages, self.centre_tail,
                   dtype=self.dtype, start_at_blur=self.start_at_blur,
                   name='centre')(blur)
    x2 = net_a(blur, x3, x3) + x3
    x4 = net_b(blur, x2, x3) + x3
    # The shared nets run once on both sides, stacked on the batch axis
    # (InstanceNorm is per example, so this equals two separate calls).
    two = lambda u, v: jnp.concatenate([u, v], axis=0)
    yy = two(blur, blur)
    x15 = net_c(yy, two(x3, x3), two(x2, x4)) + two(x2, x4)
    x06 = net_d(yy, two(x2, x4), x15) + x15
    x1, x5 = jnp.split(x15, 2, axis=0)
    x0, x6 = jnp.split(x06, 2, axis=0)
    return {'frames': jnp.stack([x0, x1, x2, x3, x4, x5, x6], axis=1)}


# Test-only variant: every stage kind, 80,264 parameters.
Tiny = functools.partial(
    Model, centre_features=8, centre_stages=((PLAIN,), ((1, 2),), ((2, 1),),
                                             (PLAIN,)),
    centre_tail=4, side_features=8, deep_plain=1, shallow_plain=1,
    side_dilated=((1, 2), (2, 1)), side_tail=4)

# CPU-sized variant for smoke runs: the full topology at a quarter width.
Small = functools.partial(
    Model, centre_features=36, centre_tail=16, side_features=32,
    deep_plain=2, shallow_plain=1, side_tail=8)

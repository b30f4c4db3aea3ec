"""Building blocks shared by the ordering network and the generators.

Every block is NHWC. Weights follow Flax naming (`kernel` HWIO, `bias`), so the
converter only transposes torch's OIHW kernels.
"""
from typing import Callable, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp


def reflect_pad(x, pad: int):
  """x: f32[B,H,W,C] -> f32[B,H+2p,W+2p,C], mirror without repeating the edge.

  This is torch's `ReflectionPad2d` (numpy mode 'reflect', not 'symmetric').
  """
  if pad == 0:
    return x
  if x.shape[-3] <= pad or x.shape[-2] <= pad:
    raise ValueError(
        f'reflect padding of {pad} needs a spatial size > {pad}; got {x.shape}')
  widths = [(0, 0)] * (x.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)]
  return jnp.pad(x, widths, mode='reflect')


class ReflectConv(nn.Module):
  """Reflection-padded 'same' convolution, stride 1.

  x: f32[B,H,W,Cin] -> f32[B,H,W,features].
  """
  features: int
  kernel_size: int = 3
  dilation: int = 1
  use_bias: bool = True
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    pad = (self.kernel_size - 1) // 2 * self.dilation
    x = reflect_pad(x, pad)
    return nn.Conv(
        self.features, (self.kernel_size, self.kernel_size),
        kernel_dilation=(self.dilation, self.dilation), padding='VALID',
        use_bias=self.use_bias, dtype=self.dtype, name='conv')(x)


def zero_init(enabled: bool, bias: bool = True) -> dict:
  """`nn.Conv` init kwargs for a head that starts at zero (`start_at_blur`).

  enabled False -> {} (Flax's default inits); True -> zero kernel init and,
  with `bias`, zero bias init.
  """
  if not enabled:
    return {}
  out = {'kernel_init': nn.initializers.zeros}
  if bias:
    out['bias_init'] = nn.initializers.zeros
  return out


def strided_conv(features: int, kernel_size: int = 3, stride: int = 2,
                 dtype=None, name: str | None = None) -> nn.Conv:
  """Stride-2 conv with torch's symmetric zero padding (k-1)//2 on each side.

  XLA's 'SAME' would pad (0, 1) on even inputs and shift every output pixel.
  """
  p = (kernel_size - 1) // 2
  return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride),
                 padding=((p, p), (p, p)), dtype=dtype, name=name)


class ResnetBlock(nn.Module):
  """Official HyperCUT residual block (no normalisation).

  reflect pad 1, conv3x3, ReLU, reflect pad 1, conv3x3, + skip.
  x: f32[B,H,W,features] -> same shape.
  """
  features: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    y = ReflectConv(self.features, 3, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(y)
    y = ReflectConv(self.features, 3, dtype=self.dtype, name='conv2')(y)
    return x + y


class ConvLSTMCell(nn.Module):
  """Convolutional LSTM cell (Shi et al. 2015), gates from one conv.

  carry: (c, h), each f32[B,H,W,features]; x: f32[B,H,W,Cin].
  Returns (new_carry, h). Gate order in the conv output: input, forget,
  output, candidate.
  """
  features: int
  kernel_size: int = 3
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    p = self.kernel_size // 2
    gates = nn.Conv(4 * self.features, (self.kernel_size, self.kernel_size),
                    padding=((p, p), (p, p)), dtype=self.dtype,
                    name='gates')(jnp.concatenate([x, h], axis=-1))
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @staticmethod
  def initial_carry(shape_bhw, features: int, dtype=jnp.float32):
    """Zero (c, h) for a batch of spatial size shape_bhw = (B, H, W)."""
    z = jnp.zeros((*shape_bhw, features), dtype)
    return z, z


def backward_warp(image, flow,
                  padding: Literal['border', 'zeros'] = 'border'):
  """Bilinear backward warp: out[y, x] = image[y + flow_y, x + flow_x].

  image: f32[..., H, W, C]; flow: f32[..., H, W, 2] in pixels, channel 0 = x
  (width) displacement, channel 1 = y (height). Sample positions outside the
  image are clamped to the border ('border', like torch grid_sample
  padding_mode='border') or read as zero ('zeros'). Differentiable in both
  image and flow (the gradient w.r.t. flow is the bilinear slope; it is zero
  only where a position is clamped).
  """
  *lead, h, w, c = image.shape
  if flow.shape[-1] != 2 or tuple(flow.shape[-3:-1]) != (h, w):
    raise ValueError(
        f'flow must be [..., {h}, {w}, 2] for image {image.shape}; got {flow.shape}')
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype),
                        jnp.arange(w, dtype=flow.dtype), indexing='ij')
  px = xs + flow[..., 0]
  py = ys + flow[..., 1]
  if padding == 'border':
    px = jnp.clip(px, 0.0, w - 1.0)
    py = jnp.clip(py, 0.0, h - 1.0)
  elif padding != 'zeros':
    raise ValueError(f"padding={padding!r}; known: 'border', 'zeros'")
  x0 = jnp.floor(px)
  y0 = jnp.floor(py)
  wx = (px - x0)[..., None]
  wy = (py - y0)[..., None]
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)

  flat = image.reshape(-1, h * w, c)
  batch = flat.shape[0]

  def gather(yi, xi):
    valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    idx = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1))
    idx = jnp.broadcast_to(idx, (*lead, h, w)).reshape(batch, h * w)
    vals = jnp.take_along_axis(flat, idx[..., None], axis=1)
    vals = vals.reshape(*lead, h, w, c)
    if padding == 'zeros':
      valid = jnp.broadcast_to(valid, (*lead, h, w))
      vals = vals * valid[..., None].astype(vals.dtype)
    return vals

  top = gather(y0, x0) * (1 - wx) + gather(y0, x0 + 1) * wx
  bottom = gather(y0 + 1, x0) * (1 - wx) + gather(y0 + 1, x0 + 1) * wx
  return top * (1 - wy) + bottom * wy


def pixel_unshuffle(x, r: int):
  """f32[B,H,W,C] -> f32[B,H/r,W/r,C*r*r], channel index c*r*r + i*r + j.

  The channel order equals torch's `pixel_unshuffle`, so converted weights
  line up.
  """
  b, h, w, c = x.shape
  if h % r or w % r:
    raise ValueError(f'pixel_unshuffle by {r} needs H, W divisible by {r}; got {x.shape}')
  x = x.reshape(b, h // r, r, w // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, h // r, w // r, c * r * r)


def pixel_shuffle(x, r: int):
  """Inverse of `pixel_unshuffle`: f32[B,H,W,C*r*r] -> f32[B,H*r,W*r,C]."""
  b, h, w, crr = x.shape
  if crr % (r * r):
    raise ValueError(f'pixel_shuffle by {r} needs channels divisible by {r*r}; got {x.shape}')
  c = crr // (r * r)
  x = x.reshape(b, h, w, c, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h * r, w * r, c)


def leaky_relu(negative_slope: float) -> Callable[[jax.Array], jax.Array]:
  """LeakyReLU with the given slope; slope 1.0 is the identity (official H)."""
  if negative_slope == 1.0:
    return lambda x: x
  return lambda x: jnp.where(x >= 0, x, negative_slope * x)

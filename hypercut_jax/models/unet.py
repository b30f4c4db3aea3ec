"""A small residual encoder-decoder generator for CPU budgets (ours).

Not from a paper: the quick-start generator of the embedded synthetic job
(configs/synthetic.py), sized to learn motion in a few CPU minutes. The
paper's generators (jin2018, purohit2019, zhong2022) stay what the
reproduction trains; HyperCUT regularises this one the same way (R_hyp on
its predicted pairs, H-ordered targets), since the method applies to any
generator.

  x = blur                                    f32[B,H,W,3]
  s = relu(conv3x3(x, features))              full resolution (the skip)
  d = relu(conv3x3/2(s, features))            1/2
  d = relu(conv3x3/2(d, deep_features))      1/4
  d = d + conv3x3(relu(conv3x3(d)))           num_blocks residual blocks
  u = bilinear_resize(d, H x W)               back to full resolution
  h = relu(conv3x3(concat(u, s, x), features))
  r = conv3x3(h, 3 * num_frames)              one residual per frame
  frames_t = x + r_t                          f32[B,T,H,W,3]

The receptive field (about 70 px at the defaults) spans the motion of the
synthetic data at 40-64 px. `start_at_blur` (default True) zero-initialises
the last conv (kernel and bias), so every frame equals the blur at step 0,
as for the paper's generators here (docs/divergences.md, `start_at_blur`).
Any odd or even `num_frames` >= 1 works; H and W must be multiples of 4.
Parameters at the defaults (48 / 64 channels, 4 blocks, T = 7): 404,085.
"""
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp


class UNet(nn.Module):
  """Residual encoder-decoder: blur -> `num_frames` frames (module docstring)."""
  features: int = 48
  deep_features: int = 64
  num_blocks: int = 4
  num_frames: int = 7
  start_at_blur: bool = True
  dtype: Any = None

  size_multiple: ClassVar[int] = 4

  @nn.compact
  def __call__(self, blur, *, train: bool = False, middle=None,
               guidance=None):
    """blur: f32[B,H,W,3] in [0,1], H and W multiples of 4.

    `train`, `middle` and `guidance` are accepted for the generator protocol
    and ignored. Returns {'frames': f32[B,T,H,W,3]} (not clipped).
    """
    del train, middle, guidance
    if blur.ndim != 4 or blur.shape[-1] != 3:
      raise ValueError(f'blur must be f32[B,H,W,3]; got {blur.shape}')
    b, h, w, _ = blur.shape
    if h % self.size_multiple or w % self.size_multiple:
      raise ValueError(f'blur is {h}x{w}; UNet needs H and W multiples of '
                       f'{self.size_multiple} (models.predict pads)')
    if self.num_frames < 1:
      raise ValueError(f'num_frames={self.num_frames}; must be >= 1')
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), dtype=self.dtype)
    x = blur.astype(self.dtype) if self.dtype is not None else blur
    skip = nn.relu(conv(self.features, name='head')(x))
    d = nn.relu(conv(self.features, strides=2, name='down1')(skip))
    d = nn.relu(conv(self.deep_features, strides=2, name='down2')(d))
    for i in range(self.num_blocks):
      y = nn.relu(conv(self.deep_features, name=f'block{i}_a')(d))
      d = d + conv(self.deep_features, name=f'block{i}_b')(y)
    u = jax.image.resize(d, (b, h, w, d.shape[-1]), 'bilinear')
    y = jnp.concatenate([u, skip, x.astype(u.dtype)], axis=-1)
    y = nn.relu(conv(self.features, name='fuse')(y))
    zeros = nn.initializers.zeros
    out = conv(3 * self.num_frames, name='out',
               kernel_init=zeros if self.start_at_blur else
               nn.linear.default_kernel_init,
               bias_init=zeros)(y)
    res = out.astype(jnp.float32).reshape(b, h, w, self.num_frames, 3)
    return {'frames': blur[:, None] + res.transpose(0, 3, 1, 2, 4)}


# Test-only variant: every layer kind, few channels.
Tiny = functools.partial(UNet, features=8, deep_features=8, num_blocks=1)

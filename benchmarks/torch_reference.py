"""Eager PyTorch reference of the ordering network H and its stage-1 loss.

Written from the description of the official `ResnetIm2Vec`
so that (a) benchmarks compare our jitted step with the same network and loss
in eager PyTorch, and (b) the checkpoint-converter tests have a module whose
`state_dict` carries the official key names:

  f_func.model.1.{weight,bias}            7x7 stem conv (index 0 is the pad)
  f_func.model.{3,5,7,9,11}.{weight,bias} stride-2 3x3 convs (even indices: act)
  f_func.model.{13..18}.conv_block.{1,4}.{weight,bias}  residual blocks
  hyperplane.hyperplane                   fixed vector of d+1 values

Needs the `bench` or `convert` extra (torch). `ordering_loss` takes NCHW
float frames already normalised the way the official data loader does it;
`normalize_frames` does that from the uint8 NHWC frames our pipeline yields,
and `load_flax_params` copies a Flax H (+ hyperplane) into the module so both
sides can be checked to compute the same loss.
"""
import numpy as np
import torch
from torch import nn


class _ResBlock(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.conv_block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))

  def forward(self, x):
    return x + self.conv_block(x)


class _Im2Vec(nn.Module):

  def __init__(self, in_dim=6, out_dim=128, nf=32, n_down=5, n_blocks=6,
               negative_slope=1.0):
    super().__init__()
    act = lambda: nn.LeakyReLU(negative_slope)
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_dim, nf, 7), act()]
    ch = nf
    for i in range(n_down):
      out = min(nf * 2 ** (i + 1), out_dim)
      layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), act()]
      ch = out
    layers += [_ResBlock(out_dim) for _ in range(n_blocks)]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x).mean(dim=(2, 3))


class _Hyperplane(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.hyperplane = nn.Parameter(torch.rand(dim + 1) * 2 - 1, requires_grad=False)

  def forward(self, e):
    """Official form: sum_c e_c (w_c + w_d)."""
    return e @ (self.hyperplane[:-1] + self.hyperplane[-1])


class TorchHyperCUT(nn.Module):
  """H (`f_func`) and the fixed hyperplane, with the official key names."""

  def __init__(self, nf=32, embed_dim=128, n_down=5, n_blocks=6, negative_slope=1.0):
    super().__init__()
    self.f_func = _Im2Vec(6, embed_dim, nf, n_down, n_blocks, negative_slope)
    self.hyperplane = _Hyperplane(embed_dim)

  def embed(self, pairs):
    """pairs: f32[N,6,H,W] (normalised) -> f32[N,embed_dim]."""
    return self.f_func(pairs)

  def score(self, pairs):
    return self.hyperplane(self.f_func(pairs))


PAIRS = ((0, 6), (1, 5), (2, 4))


def ordering_loss(net, frames):
  """Official L_h. frames: f32[B,7,3,H,W] normalised -> scalar.

  Both orders of all three pairs go through H in one batch.
  """
  b = frames.shape[0]
  fwd = [torch.cat([frames[:, i], frames[:, j]], 1) for i, j in PAIRS]
  rev = [torch.cat([frames[:, j], frames[:, i]], 1) for i, j in PAIRS]
  s = net.score(torch.cat(fwd + rev, 0)).view(2, len(PAIRS), b)
  u, v = s[0], s[1]
  sp = nn.functional.softplus
  diff = sp(u * v).mean(dim=1).mean()
  same = (sp(-u[0] * u[1]).mean() + sp(-u[1] * u[2]).mean() + sp(-u[0] * u[2]).mean()) / 3
  return 0.5 * diff + 0.5 * same


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_frames(frames_u8, channel_order='bgr', mean=IMAGENET_MEAN,
                     std=IMAGENET_STD):
  """uint8 [B,T,H,W,3] RGB -> f32 [B,T,3,H,W], the official H input.

  Scaled to [0,1]; with channel_order='bgr' the channels are reversed (the
  official loader reads BGR with OpenCV); then (x - mean) / std with the
  statistics applied to the channels in that order, as given.
  """
  x = frames_u8.to(torch.float32) / 255.0
  if channel_order == 'bgr':
    x = x.flip(-1)
  m = torch.tensor(mean, dtype=torch.float32, device=x.device)
  s = torch.tensor(std, dtype=torch.float32, device=x.device)
  return ((x - m) / s).permute(0, 1, 4, 2, 3).contiguous()


def load_flax_params(net, params, hyperplane=None):
  """Copies Flax `OrderingNet` params (HWIO kernels) into `net` (OIHW).

  params: the Flax params tree (numpy or jax arrays); hyperplane: f32[d+1]
  or None. Key mapping from `hypercut_jax.models.ordering
  .official_param_names`; raises KeyError naming a missing entry.
  """
  from hypercut_jax.models import ordering  # pylint: disable=g-import-not-at-top
  n_down = sum(1 for m in net.f_func.model if isinstance(m, nn.Conv2d)) - 1
  n_blocks = sum(1 for m in net.f_func.model if isinstance(m, _ResBlock))
  state = {}
  for prefix, path in ordering.official_param_names(n_down, n_blocks).items():
    leaf = params
    for name in path:
      leaf = leaf[name]
    kernel = torch.from_numpy(np.array(leaf['kernel'], np.float32))
    state[f'f_func.{prefix}.weight'] = kernel.permute(3, 2, 0, 1).contiguous()
    state[f'f_func.{prefix}.bias'] = torch.as_tensor(
        np.asarray(leaf['bias'], np.float32))
  if hyperplane is not None:
    state['hyperplane.hyperplane'] = torch.as_tensor(
        np.asarray(hyperplane, np.float32))
  else:
    state['hyperplane.hyperplane'] = net.hyperplane.hyperplane.detach()
  net.load_state_dict(state, strict=True)
  return net


def num_params(module):
  return sum(p.numel() for p in module.parameters() if p.requires_grad)

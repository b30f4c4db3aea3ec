"""Eager PyTorch references of the generators and their stage-2 loss.

Written from `hypercut_jax/models/jin2018.py` and `.../purohit2019.py` (read
those for the architecture): the same layers, widths, weight sharing and
padding, in torch's NCHW layout, so `benchmarks.run --parts=generators`
compares our jitted step with the same network and loss in eager PyTorch.

  TorchJin2018      `jin2018.Model`: centre net + side nets a, b, c, d
                    (c and d shared by both sides), colour channels folded
                    into the batch, pixel-unshuffle x4 / x5, pre-activation
                    InstanceNorm residual blocks with dilations.
  TorchPurohit2019  `purohit2019.Model`: blur-image encoder, flow encoder
                    (run once on a zero flow, `feed_back_flow=False`),
                    ConvLSTM, multi-scale flow decoder, backward warping of
                    the middle frame with `grid_sample` (bilinear, border
                    padding, align_corners=True, i.e. pixel positions 0..W-1
                    as in `layers.backward_warp`); the Jin centre net `centre`
                    exists (parameter count) but, as in training with the
                    ground-truth middle frame, is never called.
  generator_loss    the trainer's stage-2 loss: official order-invariant loss
                    (Jin) or Purohit's multiscale version + `flow_weight` *
                    mean|flow|, plus `alpha` * R_hyp (official softplus form)
                    of the predicted forward pairs through a frozen
                    `torch_reference.TorchHyperCUT`.

Every module's parameters carry the Flax path of the JAX model with '.' for
'/' (`centre.trunk.stage1_block0.conv2.weight` <- `centre/trunk/
stage1_block0/conv2/kernel`), so `load_flax_params` copies a JAX init in by
name (kernels HWIO -> OIHW, InstanceNorm `scale` -> `weight`) and both sides
can be checked to compute the same loss. Needs the `bench` extra (torch).
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

N_FRAMES = 7
PAIRS = ((0, 6), (1, 5), (2, 4))
PLAIN = (1, 1)

# ------------------------------------------------- Jin et al. 2018 (jin2018) --
JIN_CENTRE_STAGES = ((PLAIN,) * 3, ((1, 2), (2, 4), (4, 8)),
                     ((8, 4), (4, 2), (2, 1)), (PLAIN,) * 3)
JIN_SIDE_DILATED = ((1, 2), (4, 8), (8, 4), (2, 1))


def side_stages(n_plain, dilated=JIN_SIDE_DILATED):
  """n_plain plain blocks | dilated blocks | n_plain plain blocks."""
  return ((PLAIN,) * n_plain, tuple(dilated), (PLAIN,) * n_plain)


def _conv(cin, cout, k, dilation=1, stride=1, bias=False):
  """Conv with torch's symmetric zero padding (k-1)//2 * dilation."""
  return nn.Conv2d(cin, cout, k, stride=stride,
                   padding=(k - 1) // 2 * dilation, dilation=dilation,
                   bias=bias)


def _norm(c):
  """InstanceNorm with affine scale/bias, eps 1e-5 (flax nn.InstanceNorm)."""
  return nn.InstanceNorm2d(c, eps=1e-5, affine=True)


class PreActBlock(nn.Module):
  """x + conv1x1(relu(IN(x))) + conv3x3_d4(relu(IN(conv3x3_d2(relu(IN(x))))))

  (`jin2018.PreActBlock`; d2, d4 = dilation.)
  """

  def __init__(self, c, dilation=PLAIN):
    super().__init__()
    d2, d4 = dilation
    self.norm1, self.conv1 = _norm(c), _conv(c, c, 1)
    self.norm2, self.conv2 = _norm(c), _conv(c, c, 3, d2)
    self.norm4, self.conv4 = _norm(c), _conv(c, c, 3, d4)

  def forward(self, x):
    short = self.conv1(F.relu(self.norm1(x)))
    y = self.conv2(F.relu(self.norm2(x)))
    y = self.conv4(F.relu(self.norm4(y)))
    return x + short + y


class FuseBlock(nn.Module):
  """conv1x1(relu(IN(x))) + conv3x3(relu(IN(x))), no skip."""

  def __init__(self, cin, cout):
    super().__init__()
    self.norm1, self.conv1 = _norm(cin), _conv(cin, cout, 1)
    self.norm2, self.conv2 = _norm(cin), _conv(cin, cout, 3)

  def forward(self, x):
    return (self.conv1(F.relu(self.norm1(x)))
            + self.conv2(F.relu(self.norm2(x))))


class Trunk(nn.Module):
  """Stages of PreActBlocks; every stage fused to out_c channels and summed."""

  def __init__(self, c, out_c, stages):
    super().__init__()
    self.stages = [len(s) for s in stages]
    for i, stage in enumerate(stages):
      for j, dil in enumerate(stage):
        self.add_module(f'stage{i}_block{j}', PreActBlock(c, tuple(dil)))
      self.add_module(f'fuse{i}', FuseBlock(c, out_c))

  def forward(self, x, ref):
    total = ref
    for i, n in enumerate(self.stages):
      for j in range(n):
        x = getattr(self, f'stage{i}_block{j}')(x)
      total = total + getattr(self, f'fuse{i}')(x)
    return total


def fold_colours(x):
  """f32[B,C,H,W] -> f32[B*C,1,H,W]: each colour channel its own image."""
  b, c, h, w = x.shape
  return x.reshape(b * c, 1, h, w)


def unfold_colours(x, channels=3):
  """Inverse of `fold_colours`."""
  bc, _, h, w = x.shape
  return x.reshape(bc // channels, channels, h, w)


class JinCentre(nn.Module):
  """Centre-frame net y -> x3 (`jin2018.JinCentre`). blur: f32[B,3,H,W]."""

  def __init__(self, features=144, stages=JIN_CENTRE_STAGES, tail_features=64,
               scale=4):
    super().__init__()
    r = self.scale = scale
    self.head = _conv(r * r, features, 5)
    self.trunk = Trunk(features, r * r, stages)
    self.tail_in = _conv(3, tail_features, 3)
    self.tail_block = PreActBlock(tail_features)
    self.tail_norm = _norm(tail_features)
    self.tail_out = _conv(tail_features, 3, 3)

  def forward(self, blur):
    grey = F.pixel_unshuffle(fold_colours(blur), self.scale)
    x = self.trunk(self.head(grey), grey)
    x = unfold_colours(F.pixel_shuffle(x, self.scale))
    x = self.tail_block(self.tail_in(x))
    return self.tail_out(F.relu(self.tail_norm(x))) + blur


class SideNet(nn.Module):
  """N(y, a, r) -> residual w.r.t. r (`jin2018.SideNet`)."""

  def __init__(self, features=128, stages=side_stages(4), tail_features=32,
               scale=5):
    super().__init__()
    s = self.scale = scale
    q = features // 4
    self.head_blur = _conv(s * s, 2 * q, 5)
    self.head_a = _conv(s * s, q, 5)
    self.head_r = _conv(s * s, q, 5)
    self.trunk = Trunk(features, s * s, stages)
    self.tail_in = _conv(3, tail_features, 3)
    self.tail_block = FuseBlock(tail_features, tail_features)
    self.tail_norm = _norm(tail_features)
    self.tail_out = _conv(tail_features, 3, 3)

  def forward(self, blur, a, r):
    grey = lambda v: F.pixel_unshuffle(fold_colours(v), self.scale)
    gy, ga, gr = grey(blur), grey(a), grey(r)
    x = torch.cat([self.head_blur(gy), self.head_a(ga), self.head_r(gr)], 1)
    x = unfold_colours(F.pixel_shuffle(self.trunk(x, gr), self.scale))
    x = self.tail_block(self.tail_in(x))
    return self.tail_out(F.relu(self.tail_norm(x)))


class TorchJin2018(nn.Module):
  """The cascade of `jin2018.Model` (same fields, same defaults)."""
  size_multiple = 20

  def __init__(self, centre_features=144, centre_stages=JIN_CENTRE_STAGES,
               centre_tail=64, side_features=128, deep_plain=4,
               shallow_plain=2, side_dilated=JIN_SIDE_DILATED, side_tail=32):
    super().__init__()
    self.centre = JinCentre(centre_features, centre_stages, centre_tail)
    side = lambda n: SideNet(side_features, side_stages(n, side_dilated),
                             side_tail)
    self.net_a, self.net_b = side(deep_plain), side(deep_plain)
    self.net_c, self.net_d = side(shallow_plain), side(shallow_plain)

  def forward(self, blur, middle=None):
    """blur: f32[B,3,H,W] -> {'frames': f32[B,7,3,H,W]} (middle ignored)."""
    del middle
    x3 = self.centre(blur)
    x2 = self.net_a(blur, x3, x3) + x3
    x4 = self.net_b(blur, x2, x3) + x3
    two = lambda u, v: torch.cat([u, v], 0)
    yy = two(blur, blur)
    x15 = self.net_c(yy, two(x3, x3), two(x2, x4)) + two(x2, x4)
    x06 = self.net_d(yy, two(x2, x4), x15) + x15
    x1, x5 = x15.chunk(2, 0)
    x0, x6 = x06.chunk(2, 0)
    return {'frames': torch.stack([x0, x1, x2, x3, x4, x5, x6], 1)}


# ------------------------------------- Purohit et al. 2019 (purohit2019) --
BLUR_WIDTHS = (64, 64, 64, 128, 128, 128, 128)
BLUR_STRIDES = (1, 1, 2, 1, 1, 2, 2)
FLOW_CHANNELS = (16, 32, 164, 128)


def _lrelu(x):
  return F.leaky_relu(x, 0.1)


class ResBlock(nn.Module):
  """lrelu(x + conv3x3(lrelu(conv3x3(x)))), bias-free convs."""

  def __init__(self, c):
    super().__init__()
    self.conv1, self.conv2 = _conv(c, c, 3), _conv(c, c, 3)

  def forward(self, x):
    return _lrelu(x + self.conv2(_lrelu(self.conv1(x))))


class BlurEncoder(nn.Module):
  """concat(blur, middle) -> 7 conv5x5 + LeakyReLU(0.1) -> ConvLSTM state."""

  def __init__(self, widths=BLUR_WIDTHS, strides=BLUR_STRIDES):
    super().__init__()
    self.n = len(widths)
    cin = 6
    for i, (w, s) in enumerate(zip(widths, strides)):
      self.add_module(f'conv{i}', _conv(cin, w, 5, stride=s, bias=True))
      cin = w

  def forward(self, blur, middle):
    x = torch.cat([blur, middle], 1)
    for i in range(self.n):
      x = _lrelu(getattr(self, f'conv{i}')(x))
    return x


class FlowEncoder(nn.Module):
  """flow f32[B,2,H,W] -> features, coarsest first."""

  def __init__(self, channels=FLOW_CHANNELS):
    super().__init__()
    self.n = len(channels)
    cin = 2
    for i, c in enumerate(channels):
      self.add_module(f'down{i}', _conv(cin, c, 3, stride=1 if i == 0 else 2,
                                        bias=True))
      self.add_module(f'res{i}', ResBlock(c))
      cin = c

  def forward(self, flow):
    feats, x = [], flow
    for i in range(self.n):
      x = getattr(self, f'res{i}')(getattr(self, f'down{i}')(x))
      feats.append(x)
    return feats[::-1]


class ConvLSTMCell(nn.Module):
  """Gates (i, f, o, g) from one conv3x3 of concat(x, h)."""

  def __init__(self, cin, features):
    super().__init__()
    self.gates = _conv(cin + features, 4 * features, 3, bias=True)

  def forward(self, carry, x):
    c, h = carry
    i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (c, h), h


def upsample2x(x):
  """Bilinear x2, half-pixel centres (= jax.image.resize 'bilinear')."""
  return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)


class FlowDecoder(nn.Module):
  """Coarse-to-fine flows from the ConvLSTM output and the flow features."""

  def __init__(self, channels=FLOW_CHANNELS):
    super().__init__()
    rev = tuple(channels)[::-1]
    self.n = len(rev)
    self.flow0 = _conv(rev[0] + rev[0], 2, 3, bias=True)
    for i in range(1, self.n):
      self.add_module(f'up{i}', _conv(rev[i - 1], rev[i], 5, bias=True))
      self.add_module(f'flow{i}', _conv(rev[i] * 2 + 2, 2, 3, bias=True))

  def forward(self, h, feats):
    flows = [self.flow0(torch.cat([feats[0], h], 1))]
    for i in range(1, self.n):
      h = _lrelu(getattr(self, f'up{i}')(upsample2x(h)))
      x = torch.cat([feats[i], h, upsample2x(flows[-1])], 1)
      flows.append(getattr(self, f'flow{i}')(x))
    return flows


def backward_warp(image, flow):
  """out[y, x] = image[y + flow_y, x + flow_x], bilinear, border padding.

  image: f32[N,C,H,W]; flow: f32[N,2,H,W] in pixels, channel 0 = x.
  """
  n, _, h, w = image.shape
  ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
  xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
  gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
  gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
  grid = torch.stack([gx, gy], -1)
  return F.grid_sample(image, grid, mode='bilinear', padding_mode='border',
                       align_corners=True)


class RecurrentDecoder(nn.Module):
  """ConvLSTM state + middle pyramid -> 7 frames at every scale."""

  def __init__(self, channels=FLOW_CHANNELS):
    super().__init__()
    self.flow_encoder = FlowEncoder(channels)
    self.conv_lstm = ConvLSTMCell(channels[-1], channels[-1])
    self.flow_decoder = FlowDecoder(channels)

  def forward(self, state, middles):
    b, _, h, w = middles[0].shape
    feats = self.flow_encoder(middles[0].new_zeros(b, 2, h, w))
    carry = (torch.zeros_like(state), state)
    frames = [[] for _ in middles]
    flows = [[] for _ in middles]
    for _ in range(N_FRAMES):
      carry, hid = self.conv_lstm(carry, feats[0])
      fl = self.flow_decoder(hid, feats)[::-1]          # full res first
      for s, (m, f) in enumerate(zip(middles, fl)):
        frames[s].append(backward_warp(m, f))
        flows[s].append(f)
    stack = lambda xs: [torch.stack(x, 1) for x in xs]
    return stack(frames), stack(flows)


class TorchPurohit2019(nn.Module):
  """`purohit2019.Model` (feed_back_flow=False) with its Jin centre net.

  centre_kw: JinCentre arguments (None: the full-size default).
  """
  size_multiple = 8

  def __init__(self, blur_widths=BLUR_WIDTHS, blur_strides=BLUR_STRIDES,
               flow_channels=FLOW_CHANNELS, centre_kw=None):
    super().__init__()
    self.bie = BlurEncoder(blur_widths, blur_strides)
    self.rvd = RecurrentDecoder(flow_channels)
    self.centre = JinCentre(**(centre_kw or {}))
    self.n_scales = len(flow_channels)

  def forward(self, blur, middle=None):
    """blur, middle: f32[B,3,H,W] -> frames f32[B,7,3,H,W] + pyramid, flows."""
    if middle is None:
      middle = self.centre(blur)
    middles = [middle]
    for _ in range(self.n_scales - 1):
      middles.append(middles[-1][..., ::2, ::2])
    frames, flows = self.rvd(self.bie(blur, middle), middles)
    return {'frames': frames[0], 'pyramid': frames, 'flows': flows}


def tiny_jin():
  """The torch twin of `jin2018.Tiny` (80,264 parameters)."""
  return TorchJin2018(centre_features=8,
                      centre_stages=((PLAIN,), ((1, 2),), ((2, 1),), (PLAIN,)),
                      centre_tail=4, side_features=8, deep_plain=1,
                      shallow_plain=1, side_dilated=((1, 2), (2, 1)),
                      side_tail=4)


def tiny_purohit():
  """The torch twin of `purohit2019.Tiny` (20,336 parameters)."""
  return TorchPurohit2019(
      blur_widths=(4, 4, 4, 8, 8, 8, 8), flow_channels=(2, 4, 4, 8),
      centre_kw=dict(features=4, stages=((PLAIN,), ((1, 2),)),
                     tail_features=4))


MODELS = {'jin2018': TorchJin2018, 'purohit2019': TorchPurohit2019}
TINY = {'jin2018': tiny_jin, 'purohit2019': tiny_purohit}


def make(name, tiny=False):
  """Torch generator for a registry name (full size, or the Tiny twin)."""
  table = TINY if tiny else MODELS
  if name not in table:
    raise ValueError(f'no torch reference for generator {name!r}; known: '
                     f'{sorted(table)}')
  return table[name]()


# ------------------------------------------------------------------ loss --
def _pair_sums_diffs(x):
  """x: f32[B,7,C,H,W] -> (x_k + x_{6-k}, x_k - x_{6-k}), f32[B,3,C,H,W]."""
  a = x[:, [i for i, _ in PAIRS]]
  b = x[:, [j for _, j in PAIRS]]
  return a + b, a - b


def oi_bracket(pred, gt):
  """sum_k [MSE(|p_k+p_j|,|g_k+g_j|) + MSE(|p_k-p_j|,|g_k-g_j|)]."""
  ps, pd = _pair_sums_diffs(pred)
  gs, gd = _pair_sums_diffs(gt)
  dims = (0, 2, 3, 4)
  return ((ps.abs() - gs.abs()).square().mean(dims)
          + (pd.abs() - gd.abs()).square().mean(dims)).sum()


def normalize_pairs(pairs, channel_order='bgr', mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225)):
  """Official H input of f32[N,6,H,W] RGB pairs in [0,1] (per 3-ch frame)."""
  n, _, h, w = pairs.shape
  x = pairs.view(n, 2, 3, h, w)
  if channel_order == 'bgr':
    x = x.flip(2)
  m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
  s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
  return ((x - m) / s).reshape(n, 6, h, w)


def forward_scores(h_net, frames):
  """Frozen-H scores s([f_k, f_{6-k}]): frames f32[B,7,3,H,W] -> f32[B,3]."""
  b = frames.shape[0]
  pairs = torch.stack([torch.cat([frames[:, i], frames[:, j]], 1)
                       for i, j in PAIRS], 1)            # [B,3,6,H,W]
  s = h_net.score(normalize_pairs(pairs.flatten(0, 1)))
  return s.view(b, len(PAIRS))


# The official loss space on RGB frames: OpenCV BGR statistics applied as is,
# i.e. the ImageNet RGB-order statistics reversed (R, G, B).
_LOSS_MEAN = (0.406, 0.456, 0.485)
_LOSS_STD = (0.225, 0.224, 0.229)


def official_space(x):
  """f32[..., 3, H, W] RGB in [0,1] -> the official trainer's loss tensors."""
  mean = torch.tensor(_LOSS_MEAN, dtype=x.dtype).view(3, 1, 1)
  std = torch.tensor(_LOSS_STD, dtype=x.dtype).view(3, 1, 1)
  return (x - mean) / std


def generator_loss(out, sharp, h_net=None, alpha=0.0, flow_weight=0.0):
  """The stage-2 loss of `train.generator.make_train_step` (official forms,
  deblurring loss in the official normalised space, `loss.space='official'`).

  out: the model's dict; sharp: f32[B,7,3,H,W] in [0,1]. Returns f32[].
  """
  sharp = official_space(sharp)
  if out.get('pyramid') is not None:
    gt, total = sharp, 0.0
    for s, pred in enumerate(out['pyramid']):
      pred = official_space(pred)
      if s:
        gt = gt[..., ::2, ::2]
      total = total + oi_bracket(pred, gt)
    loss = total / len(out['pyramid'])
  else:
    loss = oi_bracket(official_space(out['frames']), sharp) / sharp.shape[1]
  if out.get('flows') is not None and flow_weight:
    smooth = sum(f.abs().mean() for f in out['flows']) / len(out['flows'])
    loss = loss + flow_weight * smooth
  if h_net is not None and alpha:
    scores = forward_scores(h_net, out['frames'])
    loss = loss + alpha * F.softplus(scores).sum(1).mean()
  return loss


def to_float_frames(u8):
  """uint8 [..., H, W, 3] (NHWC) -> f32 [..., 3, H, W] in [0,1]."""
  x = u8.to(torch.float32) / 255.0
  nd = x.dim()
  return x.permute(*range(nd - 3), nd - 1, nd - 3, nd - 2).contiguous()


# ---------------------------------------------------------------- weights --
def _flat(tree, prefix=()):
  if isinstance(tree, dict) or hasattr(tree, 'items'):
    for k, v in tree.items():
      yield from _flat(v, prefix + (str(k),))
  else:
    yield prefix, tree


def load_flax_params(net, params):
  """Copies a Flax generator params tree into `net` by name.

  params: `jin2018.Model` / `purohit2019.Model` params (or `{'params': ...}`),
  numpy or jax arrays. Kernels HWIO -> OIHW; InstanceNorm `scale` -> `weight`.
  Raises KeyError naming the entries that exist on one side only, ValueError
  on a shape mismatch.
  """
  if 'params' in params:
    params = params['params']
  state = {}
  for path, leaf in _flat(params):
    *mod, last = path
    arr = torch.from_numpy(np.array(leaf, np.float32))
    if last == 'kernel':
      arr = arr.permute(3, 2, 0, 1)
    name = '.'.join(mod + [{'kernel': 'weight', 'scale': 'weight'}.get(
        last, last)])
    state[name] = arr.contiguous()
  own = dict(net.state_dict())
  missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
  if missing or extra:
    raise KeyError(f'torch-only entries {missing[:5]}, flax-only entries '
                   f'{extra[:5]} ({len(missing)} / {len(extra)})')
  for k, v in state.items():
    if tuple(own[k].shape) != tuple(v.shape):
      raise ValueError(f'{k}: torch shape {tuple(own[k].shape)}, flax '
                       f'{tuple(v.shape)}')
  net.load_state_dict(state, strict=True)
  return net


def num_params(module):
  return sum(p.numel() for p in module.parameters())

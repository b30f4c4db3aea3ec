"""Purohit, Shah, Rajagopalan, "Bringing Alive Blurred Moments", CVPR 2019, as
reimplemented for HyperCUT (the authors of HyperCUT wrote their own version).

  middle = `middle` (ground truth in training, as in the reimplementation)
           or, when None, a deblurred estimate by `middle_net` (default: the
           centre network of `jin2018`, sub-tree `centre`);
  state  = BlurEncoder(concat(blur, middle))                      `bie`
           (7 conv5x5 + LeakyReLU(0.1), strides 1,1,2,1,1,2,2, widths
           64,64,64,128,128,128,128) -> f32[B,H/8,W/8,128]
  for t in 0..6 (recurrent video decoder):
    fs   = FlowEncoder(prev_flow)            `flow_encoder`, 4 levels
           (conv3x3 + residual block, strides 1,2,2,2, widths 16,32,164,128)
    c, h = ConvLSTMCell(128)((c, h), fs[coarsest])     `conv_lstm`; the first
           step starts from (c, h) = (0, state)
    flows = FlowDecoder(h, fs)               `flow_decoder`, coarse to fine
           (H/8, H/4, H/2, H), each scale refines the upsampled coarser flow
    frame_t at scale s = backward_warp(middle_s, flows_s)
  where middle_s is `middle` subsampled by taking every 2nd pixel s times.

The third flow-encoder width is 164 in the HyperCUT reimplementation where
the design says 64; 164 is the default so the parameter count (4,553,708 for
`bie` + `flow_encoder` + `conv_lstm` + `flow_decoder`) and converted weights
match, `flow_channels=(16, 32, 64, 128)` gives the intended network
(3,595,508 parameters).

Recorded divergences from the reimplementation:
- Warping uses `layers.backward_warp(..., padding='border')`: positions outside
  the image read the nearest border pixel. The reimplementation samples with
  zero padding and then zeroes every output pixel whose sample touched the
  outside, which leaves black borders on moving content and no gradient
  there.
- `feed_back_flow=False` (default) reproduces the reimplementation, whose flow
  encoder sees a zero flow at every step (the previous flow is never fed
  back), so the recurrence lives in the ConvLSTM state alone; True feeds the
  previous full-resolution flow back as in the paper. Both use the same
  parameters.
- The coarser flow is upsampled bilinearly (half-pixel centres, as torch's
  `Upsample(scale_factor=2, mode='bilinear')`) without scaling its values by
  2, exactly as the reimplementation does (the next conv learns the scale).

Start at the blur (`start_at_blur=True`, the default; ours): the kernels and
biases of the flow output convs (`flow0`..`flow3` of `flow_decoder`) are
initialised to zero, so every flow is 0 at step 0 and every frame is the
middle frame; with `middle=None` the middle estimate is the Jin centre,
which (with its own `start_at_blur`, set from this model's) returns the blur,
so all 7 frames equal the blur. The first gradient step moves only the flow
output convs (and, with `middle=None`, the centre's `tail_out`); from the
second on, gradients reach the whole network. `start_at_blur=False` is
Flax's default init everywhere, as in the HyperCUT reimplementation (torch's
default init there). Parameter names and shapes do not depend on it.

Middle-frame estimate (`middle_net`): its parameters are a sub-tree `centre`
of this model's params, created at `init` whether or not `middle` is given,
so the params tree never changes shape. The weights are loaded from a
`jin2018` checkpoint with `load_centre` (the sub-tree has the same structure
as `jin2018.Model`'s `centre`). Training with the ground-truth middle frame
(the reimplementation's protocol) never calls it, so it receives a zero
gradient: Adam leaves it unchanged (mask it out of any weight decay). Called
with `middle=None` during training, it is trained jointly through the frame
losses. `middle_net=None` drops it (then `middle` is required).

From a JSON-able config (`config.model.kwargs`), the middle net is named
rather than passed as a class: `config_kwargs` turns
`middle='jin_centre'|'none'` and `middle_kwargs={...}` (JinCentre fields,
e.g. `{'features': 16, 'tail_features': 8}`) into the `middle_net` field.
The model's `start_at_blur` is passed to a middle net that has such a field
(JinCentre) unless its partial sets it; other middle nets get nothing.
"""
import collections.abc
import dataclasses
import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hypercut_jax.models import jin2018
from hypercut_jax.models import layers

N_FRAMES = 7
BLUR_WIDTHS = (64, 64, 64, 128, 128, 128, 128)
BLUR_STRIDES = (1, 1, 2, 1, 1, 2, 2)
FLOW_CHANNELS = (16, 32, 164, 128)
# Middle-frame networks a config may name (`config_kwargs`); None = no net.
MIDDLE_NETS = {'jin_centre': jin2018.JinCentre, 'none': None}


def _lrelu(x):
  return layers.leaky_relu(0.1)(x)


def _conv(features: int, kernel: int, use_bias: bool = True, dtype=None,
          name: str | None = None, zero_init: bool = False) -> nn.Conv:
  """Stride-1 conv with torch's symmetric zero 'same' padding.

  zero_init: zero kernel (and bias) at init; else Flax's default inits.
  """
  p = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), padding=((p, p), (p, p)),
                 use_bias=use_bias, dtype=dtype, name=name, 
                 **layers.zero_init(zero_init))


def upsample2x(x):
  """Bilinear x2 upsampling, half-pixel centres (torch align_corners=False).

  x: f32[B,H,W,C] -> f32[B,2H,2W,C].
  """
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), 'bilinear')


def downsample2x(x):
  """Every 2nd pixel (torch `interpolate(scale_factor=0.5)`, 'nearest').

  x: f32[..., H, W, C] -> f32[..., ceil(H/2), ceil(W/2), C].
  """
  return x[..., ::2, ::2, :]


class ResBlock(nn.Module):
  """lrelu(x + conv3x3(lrelu(conv3x3(x)))), bias-free convs, slope 0.1.

  x: f32[B,H,W,features] -> same shape.
  """
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    y = _lrelu(_conv(self.features, 3, False, self.dtype, name='conv1')(x))
    y = _conv(self.features, 3, False, self.dtype, name='conv2')(y)
    return _lrelu(x + y)


class BlurEncoder(nn.Module):
  """Blur-image encoder: concat(blur, middle) -> ConvLSTM initial state.

  blur, middle: f32[B,H,W,3] -> f32[B,H/prod(strides),W/prod(strides),
  widths[-1]].
  """
  widths: Sequence[int] = BLUR_WIDTHS
  strides: Sequence[int] = BLUR_STRIDES
  dtype: Any = None

  @nn.compact
  def __call__(self, blur, middle):
    if len(self.widths) != len(self.strides):
      raise ValueError(f'BlurEncoder widths {self.widths} and strides '
                       f'{self.strides} differ in length')
    x = jnp.concatenate([blur, middle], axis=-1)
    for i, (w, s) in enumerate(zip(self.widths, self.strides)):
      x = _lrelu(layers.strided_conv(w, 5, s, dtype=self.dtype,
                                     name=f'conv{i}')(x))
    return x


class FlowEncoder(nn.Module):
  """flow: f32[B,H,W,2] -> features, coarsest first.

  Level i: conv3x3 (stride 1 for level 0, else 2, with bias) + ResBlock.
  Returns [f32[B,H/2^(L-1),W/2^(L-1),channels[-1]], ..., f32[B,H,W,
  channels[0]]].
  """
  channels: Sequence[int] = FLOW_CHANNELS
  dtype: Any = None

  @nn.compact
  def __call__(self, flow):
    feats = []
    x = flow
    for i, c in enumerate(self.channels):
      x = layers.strided_conv(c, 3, 1 if i == 0 else 2, dtype=self.dtype,
                              name=f'down{i}')(x)
      x = ResBlock(c, self.dtype, name=f'res{i}')(x)
      feats.append(x)
    return feats[::-1]


class FlowDecoder(nn.Module):
  """Multi-scale flow decoder.

  h: f32[B,h,w,C] ConvLSTM output at the coarsest scale; feats: the
  FlowEncoder's features, coarsest first. Returns flows coarsest first,
  f32[B,h*2^i,w*2^i,2] for i < len(channels). Scale 0: conv3x3 of
  concat(feats[0], h); scale i: h <- lrelu(conv5x5(upsample2x(h))) to
  channels[-1-i] ch, flow_i = conv3x3(concat(feats[i], h, upsample2x(flow_{i-1}))).
  `start_at_blur`: the `flow{i}` convs start at zero (kernel and bias), so
  every flow is 0 at init.
  """
  channels: Sequence[int] = FLOW_CHANNELS
  dtype: Any = None
  start_at_blur: bool = True

  @nn.compact
  def __call__(self, h, feats):
    rev = tuple(self.channels)[::-1]
    flow_conv = lambda i: _conv(2, 3, dtype=self.dtype, name=f'flow{i}',
                                zero_init=self.start_at_blur)
    flows = [flow_conv(0)(jnp.concatenate([feats[0], h], axis=-1))]
    for i in range(1, len(rev)):
      h = _lrelu(_conv(rev[i], 5, dtype=self.dtype, name=f'up{i}')(
          upsample2x(h)))
      x = jnp.concatenate([feats[i], h, upsample2x(flows[-1])], axis=-1)
      flows.append(flow_conv(i)(x))
    return flows


class RecurrentDecoder(nn.Module):
  """Recurrent video decoder: ConvLSTM state + middle pyramid -> 7 frames.

  state: f32[B,H/8,W/8,C] (BlurEncoder output, the initial ConvLSTM hidden
  state; the cell state starts at 0); middles: the middle frame at each
  scale, full resolution first (f32[B,H/2^s,W/2^s,3]). Runs `N_FRAMES` steps
  of one `nn.scan` (shared weights, fully unrolled). Returns (frames, flows):
  lists over scales, full resolution first, of f32[B,7,H/2^s,W/2^s,3] and
  f32[B,7,H/2^s,W/2^s,2]. `start_at_blur` goes to the FlowDecoder (zero
  flows at init).
  """
  channels: Sequence[int] = FLOW_CHANNELS
  feed_back_flow: bool = False
  dtype: Any = None
  start_at_blur: bool = True

  def setup(self):
    self.flow_encoder = FlowEncoder(self.channels, self.dtype)
    self.conv_lstm = layers.ConvLSTMCell(self.channels[-1], dtype=self.dtype)
    self.flow_decoder = FlowDecoder(self.channels, self.dtype,
                                    start_at_blur=self.start_at_blur)

  def step(self, carry, feats, middles):
    """One frame: carry = ((c, h), prev_flow f32[B,H,W,2]) -> (carry, out)."""
    lstm_carry, prev_flow = carry
    if self.feed_back_flow:
      feats = self.flow_encoder(prev_flow)
    lstm_carry, h = self.conv_lstm(lstm_carry, feats[0])
    flows = [f.astype(middles[0].dtype)
             for f in self.flow_decoder(h, feats)[::-1]]  # full res first
    frames = [layers.backward_warp(m, f, 'border')
              for m, f in zip(middles, flows)]
    return (lstm_carry, flows[0]), (frames, flows)

  def __call__(self, state, middles):
    b, h, w, _ = middles[0].shape
    zero_flow = jnp.zeros((b, h, w, 2), middles[0].dtype)
    feats = None if self.feed_back_flow else self.flow_encoder(zero_flow)
    # Fully unrolled: on XLA:CPU the backward pass of the rolled loop ran
    # about 13x slower than the unrolled one (B=2, 64x64: 9.9 s vs 0.73 s)
    # for a slightly longer compile; 7 steps unroll cheaply anywhere.
    scan = nn.scan(
        lambda mdl, carry, f, m: mdl.step(carry, f, m),
        variable_broadcast='params', split_rngs={'params': False},
        in_axes=(nn.broadcast, nn.broadcast), out_axes=1, length=N_FRAMES,
        unroll=N_FRAMES)
    carry = ((jnp.zeros_like(state), state), zero_flow)
    _, (frames, flows) = scan(self, carry, feats, list(middles))
    return frames, flows


class Model(nn.Module):
  """Purohit et al. 2019 (HyperCUT reimplementation): blur -> 7 frames.

  Fields: `blur_widths`, `blur_strides` (BlurEncoder), `flow_channels`
  (flow encoder/decoder widths, fine to coarse; the last is the ConvLSTM
  width and must equal blur_widths[-1]), `feed_back_flow`, `middle_net`
  (a module class/partial mapping f32[B,H,W,3] -> f32[B,H,W,3], or None),
  `start_at_blur` (zero flows at init, so frames = middle; also the middle
  net's, see `middle_net_kwargs`).
  H and W must be multiples of `size_multiple` = 8 (the downsampling of both
  encoders; a custom middle_net must accept multiples of 8).
  """
  blur_widths: Sequence[int] = BLUR_WIDTHS
  blur_strides: Sequence[int] = BLUR_STRIDES
  flow_channels: Sequence[int] = FLOW_CHANNELS
  feed_back_flow: bool = False
  middle_net: Callable[..., nn.Module] | None = jin2018.JinCentre
  dtype: Any = None
  start_at_blur: bool = True

  size_multiple: ClassVar[int] = 8
  # Takes a `middle` frame (the trainer feeds the ground truth in training).
  uses_middle: ClassVar[bool] = True

  def _check(self, blur, middle):
    if blur.ndim != 4 or blur.shape[-1] != 3:
      raise ValueError(f'blur must be f32[B,H,W,3]; got {blur.shape}')
    down = 1
    for s in self.blur_strides:
      down *= s
    levels = 2 ** (len(self.flow_channels) - 1)
    if down != levels:
      raise ValueError(
          f'blur encoder downsamples by {down} (strides {self.blur_strides}) '
          f'but the flow encoder by {levels} ({len(self.flow_channels)} levels)')
    if self.blur_widths[-1] != self.flow_channels[-1]:
      raise ValueError(
          f'blur_widths[-1]={self.blur_widths[-1]} must equal '
          f'flow_channels[-1]={self.flow_channels[-1]} (ConvLSTM width)')
    m = max(down, self.size_multiple)
    if blur.shape[1] % m or blur.shape[2] % m:
      raise ValueError(f'blur: H and W must be multiples of {m}; got '
                       f'{blur.shape} (use models.predict, which pads)')
    if middle is not None and middle.shape != blur.shape:
      raise ValueError(f'middle must have the shape of blur {blur.shape}; '
                       f'got {middle.shape}')

  @nn.compact
  def __call__(self, blur, *, train: bool, middle=None, guidance=None):
    """blur: f32[B,H,W,3] in [0,1]; middle: f32[B,H,W,3] in [0,1] or None.

    `train` is accepted for the generator protocol (no layer depends on it);
    `guidance` is ignored. Returns
      'frames':  f32[B,7,H,W,3] (= pyramid[0]),
      'pyramid': 4 x f32[B,7,H/2^s,W/2^s,3], full resolution first,
      'flows':   4 x f32[B,7,H/2^s,W/2^s,2], full resolution first (pixels at
                 that scale, channel 0 = x).
    Frames are warped copies of the middle frame, so they stay in its range.
    """
    del train, guidance
    self._check(blur, middle)
    if self.middle_net is not None and (middle is None
                                        or self.is_initializing()):
      estimate = self.middle_net(
          name='centre',
          **middle_net_kwargs(self.middle_net, self.start_at_blur))(blur)
      if middle is None:
        middle = estimate
    if middle is None:
      raise ValueError('purohit2019 with middle_net=None needs middle=f32[B,H,W,3]')

    n_scales = len(self.flow_channels)
    middles = [middle]
    for _ in range(n_scales - 1):
      middles.append(downsample2x(middles[-1]))

    state = BlurEncoder(self.blur_widths, self.blur_strides, self.dtype,
                        name='bie')(blur, middle)
    frames, flows = RecurrentDecoder(self.flow_channels, self.feed_back_flow,
                                     self.dtype,
                                     start_at_blur=self.start_at_blur,
                                     name='rvd')(state, middles)
    return {'frames': frames[0], 'pyramid': frames, 'flows': flows}


def middle_net_kwargs(middle_net, start_at_blur: bool) -> dict:
  """Extra fields for `middle_net(...)`: {'start_at_blur': start_at_blur}.

  middle_net: a module class or a (nested) `functools.partial` of one. Empty
  when the class has no `start_at_blur` field (a custom net) or a partial
  already sets it (an explicit choice wins).
  """
  fn, set_here = middle_net, set()
  while isinstance(fn, functools.partial):
    set_here |= set(fn.keywords)
    fn = fn.func
  fields = ({f.name for f in dataclasses.fields(fn)}
            if dataclasses.is_dataclass(fn) else set())
  if 'start_at_blur' not in fields or 'start_at_blur' in set_here:
    return {}
  return {'start_at_blur': start_at_blur}


def _shape_table(tree) -> dict:
  """{'path/to/leaf': shape} of a params tree (arrays or ShapeDtypeStructs)."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def check_centre(expected, given, what: str = 'jin2018 centre parameters'
                 ) -> None:
  """Raises ValueError unless `given` has the structure/shapes of `expected`.

  expected: this model's `centre` sub-tree (arrays or ShapeDtypeStructs);
  given: a JinCentre params tree. The message names the first differing
  leaves with both shapes (`model` vs `given`).
  """
  want, got = _shape_table(expected), _shape_table(given)
  if want == got:
    return
  lines = []
  for k in sorted(set(want) | set(got)):
    a, b = want.get(k, 'missing'), got.get(k, 'missing')
    if a != b:
      lines.append(f'{k}: model {a} vs given {b}')
  more = f' (and {len(lines) - 6} more)' if len(lines) > 6 else ''
  raise ValueError(
      f'{what} do not match this model\'s `centre` (different widths or '
      f'depths): {"; ".join(lines[:6])}{more}')


def load_centre(params, jin_params):
  """Copies a trained jin2018 centre network into Purohit's params.

  params: this model's params tree (or `{'params': ...}`) with a `centre`
  sub-tree; jin_params: a `jin2018.Model` params tree (or `{'params': ...}`),
  or a bare `JinCentre` tree. Returns a new tree (same form as `params`).
  Raises ValueError when the structures or shapes differ, naming both
  shapes (`check_centre`). Works on traced arrays (inside `init`).
  """
  wrapped = 'params' in params
  p = params['params'] if wrapped else params
  j = jin_params['params'] if 'params' in jin_params else jin_params
  j = j['centre'] if 'centre' in j else j
  if 'centre' not in p:
    raise ValueError('params has no `centre` sub-tree (middle_net=None?)')
  check_centre(p['centre'], j)
  p = {**p, 'centre': j}
  return {**params, 'params': p} if wrapped else p


def _frozen(x):
  """Config values -> hashable linen field values (lists -> tuples).

  Mappings (dicts, ml_collections ConfigDicts) become plain dicts.
  """
  if isinstance(x, collections.abc.Mapping) or hasattr(x, 'to_dict'):
    return {k: _frozen(x[k]) for k in x.keys()}
  if isinstance(x, (list, tuple)):
    return tuple(_frozen(v) for v in x)
  return x


def make_middle_net(middle: str = 'jin_centre', middle_kwargs=None):
  """The `middle_net` field from its config name and fields.

  middle: a key of `MIDDLE_NETS` ('jin_centre' | 'none'); middle_kwargs:
  fields of that net (JinCentre: features, stages, tail_features, scale,
  dtype, start_at_blur), None or {} for its defaults (start_at_blur unset:
  the Model's). Returns the class, a `functools.partial` of it, or None
  ('none'). ValueError names unknown nets or fields.
  """
  if middle not in MIDDLE_NETS:
    raise ValueError(f'purohit2019 middle={middle!r}; known: '
                     f'{sorted(MIDDLE_NETS)}')
  kw = _frozen(middle_kwargs or {})
  cls = MIDDLE_NETS[middle]
  if cls is None:
    if kw:
      raise ValueError(f'purohit2019 middle=\'none\' takes no middle_kwargs; '
                       f'got {sorted(kw)}')
    return None
  known = [f.name for f in dataclasses.fields(cls)
           if f.name not in ('parent', 'name')]
  unknown = sorted(set(kw) - set(known))
  if unknown:
    raise ValueError(f'purohit2019 middle_kwargs has unknown {cls.__name__} '
                     f'fields {unknown}; known: {known}')
  return functools.partial(cls, **kw) if kw else cls


def config_kwargs(kwargs) -> dict:
  """JSON-able `config.model.kwargs` -> `Model` fields.

  `middle` / `middle_kwargs` (see `make_middle_net`) become `middle_net`;
  neither given keeps the default (the full Jin centre). Lists become
  tuples. Giving `middle_net` as well raises ValueError.
  """
  kw = _frozen(kwargs or {})
  if 'middle' in kw or 'middle_kwargs' in kw:
    if 'middle_net' in kw:
      raise ValueError('purohit2019: give either middle_net or '
                       'middle/middle_kwargs, not both')
    kw['middle_net'] = make_middle_net(kw.pop('middle', 'jin_centre'),
                                       kw.pop('middle_kwargs', None))
  return kw


# Test-only variant: every component, tiny widths, tiny Jin centre.
Tiny = functools.partial(
    Model, blur_widths=(4, 4, 4, 8, 8, 8, 8), flow_channels=(2, 4, 4, 8),
    middle_net=functools.partial(
        jin2018.JinCentre, features=4, stages=(((1, 1),), ((1, 2),)),
        tail_features=4))

# CPU-sized variant: half widths, the design's 64-channel flow encoder.
Small = functools.partial(
    Model, blur_widths=(32, 32, 32, 64, 64, 64, 64), flow_channels=(8, 16, 32, 64),
    middle_net=functools.partial(jin2018.JinCentre, features=36,
                                 tail_features=16))

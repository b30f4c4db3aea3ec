"""Generator registry and size-agnostic prediction.

Every generator is a linen Module class with a class attribute
`size_multiple: int` and
  `__call__(blur: f32[B,H,W,3], *, train: bool, middle=None, guidance=None)
   -> {'frames': f32[B,7,H,W,3], ...}`
with H, W multiples of `size_multiple`; `predict` pads any other size.
Variables are `{'params': ...}` only. `zhong2022` (Animation-from-Blur's
decomposer) needs `guidance: i32[B,H,W]` (NEEDS_GUIDANCE): ground truth in
training, ground truth or a predictor's sample at evaluation.
"""
import jax.numpy as jnp

from hypercut_jax.models import jin2018
from hypercut_jax.models import purohit2019
from hypercut_jax.models import unet
from hypercut_jax.models import zhong2022

REGISTRY = {
    'jin2018': jin2018.Model,
    'purohit2019': purohit2019.Model,
    'zhong2022': zhong2022.Decomposer,
    'unet': unet.UNet,   # ours: the CPU quick-start generator
}
# Generators that need `guidance` (a motion class map) as an input.
NEEDS_GUIDANCE = ('zhong2022',)


def get(name: str):
  """Generator class registered under `name` (instantiate it with fields)."""
  if name not in REGISTRY:
    raise ValueError(f'unknown generator {name!r}; known: {sorted(REGISTRY)}')
  return REGISTRY[name]


def _pad_amount(size: int, multiple: int) -> int:
  return -size % multiple


def _reflect_pad_hw(x, ph: int, pw: int, hw_axis: int):
  """Reflect-pads axes (hw_axis, hw_axis+1) of x at the bottom/right."""
  widths = [(0, 0)] * x.ndim
  widths[hw_axis] = (0, ph)
  widths[hw_axis + 1] = (0, pw)
  return jnp.pad(x, widths, mode='reflect')


def predict(model, variables, blur, **kw):
  """Frames for any image size, clipped to [0, 1].

  model: a generator instance; variables: `{'params': ...}`;
  blur: f32[..., H, W, 3] in [0,1] (any leading batch dims, or none).
  Keyword inputs the model uses are given with the same leading dims:
  `middle` f32[..., H, W, 3], `guidance` i32[..., H, W]; they are padded like
  `blur`; other keywords pass through unchanged.
  The image is reflect-padded at the bottom/right to a multiple of
  `model.size_multiple` (repeated reflection when the pad exceeds the image),
  run with `train=False`, and cropped back.
  Returns f32[..., 7, H, W, 3] in [0, 1]. Wrap in `jax.jit(predict,
  static_argnums=0)` to compile it.
  """
  blur = jnp.asarray(blur)
  if blur.ndim < 3 or blur.shape[-1] != 3:
    raise ValueError(f'blur must be f32[..., H, W, 3]; got {blur.shape}')
  lead, (h, w) = blur.shape[:-3], blur.shape[-3:-1]
  multiple = int(getattr(model, 'size_multiple', 1))
  ph, pw = _pad_amount(h, multiple), _pad_amount(w, multiple)
  if (ph or pw) and (h < 2 or w < 2):
    raise ValueError(f'blur of size {h}x{w} is too small to reflect-pad')

  def prepare(name, x, trailing):
    x = jnp.asarray(x)
    want = (*lead, h, w)
    if x.shape[:len(want)] != want or x.ndim != len(want) + trailing:
      raise ValueError(f'{name} must have leading shape {want} (like blur); '
                       f'got {x.shape}')
    x = x.reshape(-1, *x.shape[len(lead):])
    return _reflect_pad_hw(x, ph, pw, 1) if ph or pw else x

  kw = dict(kw)
  for name, trailing in (('middle', 1), ('guidance', 0)):
    if kw.get(name) is not None:
      kw[name] = prepare(name, kw[name], trailing)
  x = prepare('blur', blur, 1)
  out = model.apply(variables, x, train=False, **kw)
  frames = out['frames'][:, :, :h, :w, :]
  return jnp.clip(frames, 0.0, 1.0).reshape(*lead, *frames.shape[1:])

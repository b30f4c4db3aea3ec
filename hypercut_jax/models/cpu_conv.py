"""Restructured convolutions for the ordering network H on the CPU.

What: drop-ins for the stem and the stride-2 downsampling convolutions of
`models.ordering.OrderingNet` that compute the same sums as
`lax.conv_general_dilated` in another order (float rounding apart, same
parameters, same tree):

  * the 7x7 stride-1 stem on 6 channels runs on 2x2 space-to-depth blocks
    (`conv_s2d`: a 4x4 conv, 24 -> 128 channels, in bands of output rows);
  * the stride-2 convs with few input channels run forward as im2col matmuls
    in bands of output rows (`strided_conv_im2col`);
  * the kernel gradients of the stem and of the stride-2 convs are im2col
    matmuls over bands of output rows (`s2d_wgrad`, `im2col_wgrad`, f32
    accumulation);
  * the input gradient of the 3x3 stride-2 convs is one matmul plus phase
    sums per band (`stride2_dgrad`).

`stem_conv` and `down_conv` tie these together with their own VJP
(`jax.custom_vjp`); `CpuConv` (a drop-in for `nn.Conv`) and `CpuStem` (for
`layers.ReflectConv`) are the Flax modules H builds from them.

When: `OrderingNet(conv_impl='cpu')`, which `conv_impl='auto'` (the default)
resolves to when jax's default backend is the CPU. Everywhere else H uses
plain `lax` convs (`layers`): GPU/TPU convolutions are the fast path there.
The residual blocks always use `layers`.

Why: XLA:CPU computes these convolutions slowly. Its kernel gradient of a
convolution is a transposed "batch-as-feature" convolution, it runs the
stride-2 convs with few input channels on one thread (its dots use all
cores), its input gradient of a strided conv is a dilated conv, and the stem
conv slows down ~2x once its output outgrows the cache. The bands keep
patches and outputs cache-sized (the *_BLOCK_ELEMS budgets below); the batch
axis is never split, so a batch-sharded input stays sharded. Numbers and the
profile are in docs/performance.md.

Limits: the custom VJPs support reverse mode (grad, vjp) only; forward mode
(jvp) through H needs `conv_impl='xla'`. This module does not import
`models.ordering`.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hypercut_jax.models import layers

# Patch elements per block of output rows in the im2col kernel gradients
# (2**21 f32 = 8 MiB: big matmuls, patches that stay in cache).
WGRAD_BLOCK_ELEMS = 2 ** 21
# Output values per band of rows of the blocked stem conv (1.5 Mi f32 = 6 MiB;
# 2x that runs ~2x slower on the 32 MiB-L3 CPU of docs/performance.md).
FWD_BLOCK_ELEMS = 3 * 2 ** 19
# Bands of the stem conv unrolled in the graph (more: a lax.map).
MAX_UNROLLED_BANDS = 64
# Values of the tap products z per band of the stride-2 input gradient.
DGRAD_BLOCK_ELEMS = 2 ** 26
# Stride-2 convs with at most this many input channels run forward as im2col
# matmuls (XLA:CPU runs those convs on one thread; its dots use all cores),
# in bands of about IM2COL_BLOCK_ELEMS patch values.
IM2COL_MAX_CIN = 64
IM2COL_BLOCK_ELEMS = 2 ** 20
_DN = ('NHWC', 'HWIO', 'NHWC')


def _conv(x, w, stride: int, padding):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                      dimension_numbers=_DN)


def space_to_depth(x, r: int):
  """x: [N, r*H, r*W, C] -> [N, H, W, r*r*C], channel index (p*r + q)*C + c."""
  n, h, w, c = x.shape
  if h % r or w % r:
    raise ValueError(f'space_to_depth by {r} needs H, W divisible by {r}; '
                     f'got {x.shape}')
  x = x.reshape(n, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // r, w // r, r * r * c)


def depth_to_space(x, r: int):
  """Inverse of `space_to_depth`: [N, H, W, r*r*C] -> [N, r*H, r*W, C]."""
  n, h, w, rrc = x.shape
  c = rrc // (r * r)
  x = x.reshape(n, h, w, r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * r, w * r, c)


def _s2d_geometry(k: int, r: int, out_h: int, out_w: int):
  """Taps kk of the blocked kernel and the blocked output size."""
  kk = -(-(k + r - 1) // r)
  return kk, -(-out_h // r), -(-out_w // r)


def s2d_kernel(w, r: int = 2):
  """Kernel of a stride-1 conv rewritten on r x r space-to-depth blocks.

  w: [k, k, C, O] (HWIO) -> [kk, kk, r*r*C, r*r*O], kk = ceil((k+r-1)/r):
  out block (a, b), phase (p, q) reads input block (a+A, b+B), phase (u, v)
  through w[r*A+u-p, r*B+v-q] (zero outside the kernel). r*r*k'^2/k^2 more
  multiply-adds (1.31x for k=7, r=2), on far better-shaped matrices.
  """
  k, _, c, o = w.shape
  kk = -(-(k + r - 1) // r)
  wpad = jnp.pad(w, ((r - 1, r * kk - k), (r - 1, r * kk - k), (0, 0), (0, 0)))
  idx = (r * np.arange(kk)[:, None, None] + np.arange(r)[None, :, None]
         - np.arange(r)[None, None, :] + r - 1)              # [A, u, p]
  big = wpad[idx[:, :, :, None, None, None], idx[None, None, None]]
  # [A, u, p, B, v, q, c, o] -> [A, B, (u, v, c), (p, q, o)]
  big = big.transpose(0, 3, 1, 4, 6, 2, 5, 7)
  return big.reshape(kk, kk, r * r * c, r * r * o)


def conv_s2d(xp, w, r: int = 2, block_elems: int = FWD_BLOCK_ELEMS):
  """VALID stride-1 conv on r x r space-to-depth blocks; = `lax` VALID conv.

  xp: [N, Hp, Wp, C] (already padded), w: [k, k, C, O] ->
  [N, Hp-k+1, Wp-k+1, O]. Any sizes: the input is zero-padded at the
  bottom/right to whole blocks and the output cropped. The blocked conv
  runs over bands of output rows holding about `block_elems` values each
  (XLA:CPU's conv slows down ~2x once its output outgrows the cache),
  unrolled up to MAX_UNROLLED_BANDS bands, else a `lax.map`; the batch
  axis is never split.
  """
  n, hp, wp, _ = xp.shape
  k, o = w.shape[0], w.shape[-1]
  h, wd = hp - k + 1, wp - k + 1
  kk, hr, wr = _s2d_geometry(k, r, h, wd)
  hb, nb = _band_rows(hr, n * wr * r * r * o, block_elems)
  th, tw = r * (nb * hb + kk - 1), r * (wr + kk - 1)
  xs = space_to_depth(
      jnp.pad(xp, ((0, 0), (0, th - hp), (0, tw - wp), (0, 0))), r)
  big = s2d_kernel(w, r).astype(xs.dtype)
  if nb <= MAX_UNROLLED_BANDS:   # no loop: no zero-filled output buffer
    ys = jnp.stack([_conv(xs[:, i * hb:i * hb + hb + kk - 1], big, 1, 'VALID')
                    for i in range(nb)])
  else:
    ys = jax.lax.map(
        lambda i: _conv(jax.lax.dynamic_slice_in_dim(xs, i * hb, hb + kk - 1,
                                                     axis=1), big, 1, 'VALID'),
        jnp.arange(nb))
  # [band, N, hb, wr, (p, q, o)] -> [N, (band, hb, p), (wr, q), o]: one copy.
  ys = ys.reshape(nb, n, hb, wr, r, r, o).transpose(1, 0, 2, 4, 3, 5, 6)
  return ys.reshape(n, nb * hb * r, wr * r, o)[:, :h, :wd]


def _patches(xb, k: int, stride: int, h: int, w: int):
  """im2col: xb [N, Hb, Wb, C] -> [N, h, w, k*k*C], order (i, j, c) = HWIO."""
  span_h, span_w = stride * (h - 1) + 1, stride * (w - 1) + 1
  return jnp.concatenate(
      [xb[:, i:i + span_h:stride, j:j + span_w:stride, :]
       for i in range(k) for j in range(k)], axis=-1)


def _band_rows(rows: int, per_row: int, budget: int) -> tuple[int, int]:
  """(rows per band, number of bands) for bands of about `budget` values."""
  hb = max(1, min(rows, budget // max(1, per_row)))
  return hb, -(-rows // hb)


def _band_loop(band, nb: int, hb: int, shape, dtype):
  """Concatenates band(i), i < nb, each [N, hb, ...], along axis 1.

  One band is returned as is; more are written into one buffer by a
  `fori_loop` (XLA:CPU keeps the update in place).
  """
  if nb == 1:
    return band(0)
  return jax.lax.fori_loop(
      0, nb, lambda i, acc: jax.lax.dynamic_update_slice_in_dim(
          acc, band(i), i * hb, axis=1), jnp.zeros(shape, dtype))


def _pad_for_im2col(x, k: int, block_elems: int):
  """Zero pad (k-1)//2 plus bottom rows for whole bands -> (xp, bands)."""
  n, h, wd, c = x.shape
  p = (k - 1) // 2
  oh, ow = (h + 2 * p - k) // 2 + 1, (wd + 2 * p - k) // 2 + 1
  hb, nb = _band_rows(oh, n * ow * k * k * c, block_elems)
  extra = max(0, 2 * (nb * hb - 1) + k - (h + 2 * p))
  xp = jnp.pad(x, ((0, 0), (p, p + extra), (p, p), (0, 0)))
  return xp, (oh, ow, hb, nb)


def _strided_im2col_padded(xp, w, bands):
  """VALID stride-2 conv of a `_pad_for_im2col` output, in row bands."""
  oh, ow, hb, nb = bands
  n, c = xp.shape[0], xp.shape[-1]
  k, o = w.shape[0], w.shape[-1]
  wm = w.reshape(k * k * c, o).astype(xp.dtype)

  def band(i):
    xb = jax.lax.dynamic_slice_in_dim(xp, 2 * i * hb, 2 * (hb - 1) + k, axis=1)
    return jnp.dot(_patches(xb, k, 2, hb, ow), wm)

  return _band_loop(band, nb, hb, (n, nb * hb, ow, o), xp.dtype)[:, :oh]


def strided_conv_im2col(x, w, block_elems: int = IM2COL_BLOCK_ELEMS):
  """Stride-2 conv with padding (k-1)//2 as im2col matmuls in row bands.

  x: [N, H, W, C], w: [k, k, C, O] -> [N, ceil(H/2), ceil(W/2), O], the
  same sums as `lax.conv_general_dilated` in another order. Bands hold about
  `block_elems` patch values (the batch axis is never split).
  """
  xp, bands = _pad_for_im2col(x, w.shape[0], block_elems)
  return _strided_im2col_padded(xp, w, bands)


def im2col_wgrad(xp, g, k: int, stride: int = 1,
                 block_elems: int = WGRAD_BLOCK_ELEMS):
  """Kernel gradient of a VALID conv as im2col matmuls, f32 accumulation.

  xp: [N, Hp, Wp, C] conv input (already padded); g: [N, H, W, O]
  cotangent of the output. Returns f32[k, k, C, O] =
  sum_{n,y,x} xp[n, s*y+i, s*x+j, c] * g[n, y, x, o].
  Output rows are taken in bands whose patches [N, hb, W, k*k*C] hold about
  `block_elems` values; one matmul per band, summed by a `fori_loop` when
  there is more than one. The batch axis is never split, so a batch-sharded
  input stays sharded (the contraction over it becomes a partial sum plus an
  all-reduce).
  """
  n, hp, _, c = xp.shape
  _, h, w, o = g.shape
  kkc = k * k * c
  hb, nb = _band_rows(h, n * w * kkc, block_elems)
  rows_in = stride * (hb - 1) + k
  need = stride * (nb * hb - 1) + k
  g = jnp.pad(g, ((0, 0), (0, nb * hb - h), (0, 0), (0, 0)))
  if need > hp:
    xp = jnp.pad(xp, ((0, 0), (0, need - hp), (0, 0), (0, 0)))
  dims = (((0, 1, 2), (0, 1, 2)), ((), ()))

  def block(i):
    xb = jax.lax.dynamic_slice_in_dim(xp, i * hb * stride, rows_in, axis=1)
    gb = jax.lax.dynamic_slice_in_dim(g, i * hb, hb, axis=1)
    return jax.lax.dot_general(_patches(xb, k, stride, hb, w), gb, dims,
                               preferred_element_type=jnp.float32)

  if nb == 1:
    acc = block(0)
  else:
    acc = jax.lax.fori_loop(0, nb, lambda i, a: a + block(i),
                            jnp.zeros((kkc, o), jnp.float32))
  return acc.reshape(k, k, c, o)


def s2d_wgrad(xp, g, k: int, r: int = 2):
  """Kernel gradient of `conv_s2d` (= of the plain VALID conv), f32[k,k,C,O].

  The im2col matmuls run on the blocked input / cotangent ((k'*k'*r*r*C) x
  (r*r*O) products: 3x fewer patch values than im2col on the plain input
  for k=7, r=2); the blocked gradient maps back through `s2d_kernel`'s VJP.
  """
  n, hp, wp, c = xp.shape
  _, h, wd, o = g.shape
  kk, hr, wr = _s2d_geometry(k, r, h, wd)
  th, tw = r * (hr + kk - 1), r * (wr + kk - 1)
  xs = space_to_depth(
      jnp.pad(xp, ((0, 0), (0, th - hp), (0, tw - wp), (0, 0))), r)
  gs = space_to_depth(
      jnp.pad(g, ((0, 0), (0, hr * r - h), (0, wr * r - wd), (0, 0))), r)
  big = im2col_wgrad(xs, gs, kk, 1)
  _, unblock = jax.vjp(lambda v: s2d_kernel(v, r),
                       jnp.zeros((k, k, c, o), jnp.float32))
  return unblock(big)[0]


@jax.custom_vjp
def stem_conv(xp, w):
  """CPU stem: VALID stride-1 conv, forward on 2x2 blocks (`conv_s2d`).

  xp: [N, Hp, Wp, C] (reflect-padded by the caller), w: [k, k, C, O] ->
  [N, Hp-k+1, Wp-k+1, O]. Backward: kernel gradient by `s2d_wgrad`, input
  gradient by XLA's conv VJP (dropped by XLA when unused, as in stage 1).
  """
  return conv_s2d(xp, w)


def _stem_fwd(xp, w):
  return conv_s2d(xp, w), (xp, w)


def _stem_bwd(res, g):
  xp, w = res
  _, vjp_x = jax.vjp(lambda v: _conv(v, w, 1, 'VALID'), xp)
  dw = s2d_wgrad(xp, g, w.shape[0])
  return vjp_x(g)[0], dw.astype(w.dtype)


stem_conv.defvjp(_stem_fwd, _stem_bwd)


def stride2_dgrad(g, w, in_h: int, in_w: int,
                  block_elems: int = DGRAD_BLOCK_ELEMS):
  """Input gradient of a 3x3 stride-2 conv with padding 1, as matmuls.

  g: [N, H, W, O] cotangent of the output, w: [3, 3, C, O] ->
  [N, in_h, in_w, C]. Per band of output rows one matmul
  z = g @ w^T ([.., O] x [O, 9C]) and the four output phases summed from
  shifted taps of z: dx[2t, 2s] = z11[t, s], dx[2t, 2s+1] = z10[t, s+1] +
  z12[t, s], dx[2t+1, 2s] = z01[t+1, s] + z21[t, s], dx[2t+1, 2s+1] =
  z00[t+1, s+1] + z02[t+1, s] + z20[t, s+1] + z22[t, s] (z_ij the tap
  (i, j) of z, g zero past its end). Bands hold about `block_elems` values
  of z (`fori_loop` writing into the output; the batch axis is never split).
  """
  n, h, wd, o = g.shape
  c = w.shape[2]
  if w.shape[:2] != (3, 3):
    raise ValueError(f'stride2_dgrad needs a 3x3 kernel; got {w.shape}')
  hb, nb = _band_rows(h, n * (wd + 1) * 9 * c, block_elems)
  gp = jnp.pad(g, ((0, 0), (0, nb * hb - h + 1), (0, 1), (0, 0)))
  wm = w.transpose(3, 0, 1, 2).reshape(o, 9 * c).astype(g.dtype)

  def band(i):
    gb = jax.lax.dynamic_slice_in_dim(gp, i * hb, hb + 1, axis=1)
    z = jnp.dot(gb, wm).reshape(n, hb + 1, wd + 1, 3, 3, c)
    ee = z[:, :hb, :wd, 1, 1]
    eo = z[:, :hb, 1:, 1, 0] + z[:, :hb, :wd, 1, 2]
    oe = z[:, 1:, :wd, 0, 1] + z[:, :hb, :wd, 2, 1]
    oo = (z[:, 1:, 1:, 0, 0] + z[:, 1:, :wd, 0, 2] + z[:, :hb, 1:, 2, 0]
          + z[:, :hb, :wd, 2, 2])
    even = jnp.stack([ee, eo], axis=3)      # [N, hb, W, 2 (col phase), C]
    odd = jnp.stack([oe, oo], axis=3)
    return jnp.stack([even, odd], axis=2).reshape(n, 2 * hb, 2 * wd, c)

  out = _band_loop(band, nb, 2 * hb, (n, 2 * nb * hb, 2 * wd, c), g.dtype)
  return out[:, :in_h, :in_w]


def _down_pad(w):
  p = (w.shape[0] - 1) // 2
  return ((p, p), (p, p))


def _down_forward(x, w):
  """(y, residual): im2col (residual: the padded x) or XLA's conv (x)."""
  if x.shape[-1] <= IM2COL_MAX_CIN:
    xp, bands = _pad_for_im2col(x, w.shape[0], IM2COL_BLOCK_ELEMS)
    return _strided_im2col_padded(xp, w, bands), xp
  return _conv(x, w, 2, _down_pad(w)), x


def down_conv(x, w):
  """CPU stride-2 conv with torch padding (k-1)//2.

  x: [N, H, W, C], w: [k, k, C, O] -> [N, ceil(H/2), ceil(W/2), O].
  Forward: `strided_conv_im2col` for C <= IM2COL_MAX_CIN (its padded input
  is kept for the backward), else XLA's conv. Backward: kernel gradient by
  `im2col_wgrad` (XLA:CPU's own kernel gradient of a strided conv is a slow
  transposed convolution), input gradient by `stride2_dgrad` for 3x3 kernels
  (XLA's conv VJP otherwise).
  """
  return _down_conv(x, w, tuple(x.shape[1:3]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _down_conv(x, w, hw):
  del hw
  return _down_forward(x, w)[0]


def _down_fwd(x, w, hw):
  del hw
  y, res = _down_forward(x, w)
  return y, (res, w)


def _down_bwd(hw, saved, g):
  res, w = saved
  pad = _down_pad(w)
  if res.shape[-1] <= IM2COL_MAX_CIN:   # im2col forward kept the padded x
    xp = res
    p = pad[0][0]
    x = xp[:, p:p + hw[0], p:p + hw[1]]
  else:                                 # XLA-conv forward kept x itself
    x = res
    xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
  if w.shape[:2] == (3, 3):
    dx = stride2_dgrad(g, w, hw[0], hw[1]).astype(res.dtype)
  else:
    _, vjp_x = jax.vjp(lambda v: _conv(v, w, 2, pad), x)
    dx = vjp_x(g)[0]
  dw = im2col_wgrad(xp, g, w.shape[0], 2)
  return dx, dw.astype(w.dtype)


_down_conv.defvjp(_down_fwd, _down_bwd)


class CpuConv(nn.Module):
  """Drop-in for `nn.Conv` (same params, init and dtype rules) on CPU paths.

  kind='stem': stride 1, the input is already padded (VALID), `stem_conv`;
  kind='down': stride 2, zero padding (k-1)//2 (`layers.strided_conv`),
  `down_conv`. x: [N, H, W, C] -> [N, H', W', features].
  """
  features: int
  kernel_size: int
  kind: str
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    if self.kind not in ('stem', 'down'):
      raise ValueError(f"CpuConv kind={self.kind!r}; known: 'stem', 'down'")
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,),
                      jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = stem_conv(x, kernel) if self.kind == 'stem' else down_conv(x, kernel)
    return y + bias


class CpuStem(nn.Module):
  """`layers.ReflectConv` (stride 1) with a `CpuConv` named 'conv' inside."""
  features: int
  kernel_size: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    x = layers.reflect_pad(x, (self.kernel_size - 1) // 2)
    return CpuConv(self.features, self.kernel_size, 'stem', self.dtype,
                   name='conv')(x)

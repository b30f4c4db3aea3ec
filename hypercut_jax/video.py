"""MP4 output of frame sequences, through PyAV (optional extra `video`).

PyAV (`pip install "hypercut_jax[video]"`) bundles FFmpeg in its wheel: no
system ffmpeg is needed. It is imported only when a video is written
(`import_av`); without it the rest of the package works, and writing raises
`VideoUnavailableError` (an ImportError) whose one-line message gives the
install command.

`write_mp4` encodes uint8[T,H,W,3] RGB frames as:
  - H.264 (`libx264`, CRF 18, preset medium) when PyAV's FFmpeg has that
    encoder (PyPI wheels do), else MPEG-4 Part 2 (`mpeg4`, qscale 3),
    which every FFmpeg build has; `CODECS` lists them in order of choice;
  - yuv420p (4:2:0 chroma, what players expect), tagged BT.709 limited
    range (the sRGB primaries), so players convert it back to the RGB
    values given. 4:2:0 needs an even width and height: an odd side gets
    one more row/column repeating the last one (edge-replicated), so the
    video may be 1 px taller/wider than the frames;
  - `fps` frames a second (rounded to a fraction with denominator at most
    1001: 29.97 and 30000/1001 are kept), in an `.mp4` container with its
    index at the front (`movflags=+faststart`, plays while loading).
`loop='forward'` plays f1 .. fT, `loop='pingpong'` f1 .. fT then
f(T-1) .. f2 (2T - 2 frames, no end frame shown twice: looping it in a
player is smooth); `repeats` writes that cycle this many times (an MP4 has
no loop flag of its own).

The file is written as `.<name>.tmp-<pid>` in its folder and renamed into
place when complete (`imageio.temp_path`), so a crash or a failed write
never leaves a partial MP4; an existing file is refused unless `overwrite`
(`FileExistsError`), and a failed write raises `imageio.ImageWriteError`
naming the file.
"""
import fractions
import math
import os

import numpy as np

from hypercut_jax import imageio

# Encoders tried in this order: H.264 when PyAV's FFmpeg has it, else MPEG-4
# Part 2 (built into FFmpeg itself, so always there).
CODECS = ('libx264', 'mpeg4')
LOOPS = ('forward', 'pingpong')
MIN_FPS = 0.001
MAX_FPS = 1000.0
INSTALL_HINT = 'pip install "hypercut_jax[video]"'
# Encoder options: quality-based rate control, visually near-lossless.
_OPTIONS = {
    'libx264': {'crf': '18', 'preset': 'medium'},
    # -q:v 3 (global_quality is in lambda units: FF_QP2LAMBDA = 118).
    'mpeg4': {'flags': '+qscale', 'global_quality': str(3 * 118)},
}
_BT709 = 1  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC value of ITU-R BT.709
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited (16-235) range


class VideoUnavailableError(ImportError):
  """PyAV (or a usable encoder in it) is missing; str() says what to do."""


def import_av():
  """The `av` module, or VideoUnavailableError with the install command."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = ' '.join(str(e).split()) or type(e).__name__
    raise VideoUnavailableError(
        f'writing MP4 needs PyAV, which is not installed ({reason}); '
        f'install it with: {INSTALL_HINT}') from None
  return av


def codec() -> str:
  """The encoder `write_mp4` uses here: the first of CODECS PyAV has.

  Raises VideoUnavailableError when PyAV is missing or has none of them.
  """
  av = import_av()
  for name in CODECS:
    try:
      av.codec.Codec(name, 'w')
    except (ValueError, av.FFmpegError):  # UnknownCodecError is a ValueError
      continue
    return name
  raise VideoUnavailableError(
      f'PyAV {av.__version__} has none of the encoders {", ".join(CODECS)}; '
      f'reinstall it with: {INSTALL_HINT}')


def check_options(*, fps: float, loop: str = 'forward',
                  repeats: int = 1) -> None:
  """ValueError naming the argument when fps, loop or repeats is invalid."""
  if (isinstance(fps, bool) or not isinstance(fps, (int, float, np.number))
      or not math.isfinite(fps) or not MIN_FPS <= fps <= MAX_FPS):
    raise ValueError(f'fps={fps!r}: must be a finite number in '
                     f'[{MIN_FPS:g}, {MAX_FPS:g}] (frames a second)')
  _check_loop(loop, repeats)


def _check_loop(loop: str, repeats: int) -> None:
  if loop not in LOOPS:
    raise ValueError(f'loop={loop!r}: must be one of {", ".join(LOOPS)}')
  if (isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer))
      or repeats < 1):
    raise ValueError(f'repeats={repeats!r}: must be an integer >= 1')


def _check_frames(frames_u8) -> np.ndarray:
  """frames_u8 as an array, or ValueError naming its dtype and shape."""
  x = np.asarray(frames_u8)
  if x.dtype != np.uint8:
    raise ValueError(f'frames_u8 must be uint8; got {x.dtype} of shape '
                     f'{x.shape} (convert with imageio.to_uint8)')
  if x.ndim != 4 or x.shape[-1] != 3 or 0 in x.shape:
    raise ValueError('frames_u8 must be [T,H,W,3] RGB with T, H, W >= 1; '
                     f'got shape {x.shape}')
  return x


def frame_order(n: int, loop: str = 'forward', repeats: int = 1) -> list[int]:
  """Indices of the n frames in playing order (module docstring).

  forward: 0 .. n-1; pingpong: 0 .. n-1 then n-2 .. 1. The cycle is
  repeated `repeats` times.
  """
  _check_loop(loop, repeats)
  cycle = list(range(n))
  if loop == 'pingpong':
    cycle += list(range(n - 2, 0, -1))
  return cycle * repeats


def pad_even(frame: np.ndarray) -> np.ndarray:
  """[H,W,C] (or [...,H,W,C]) edge-padded at the bottom/right to even H, W.

  The frame itself when both are even already.
  """
  h, w = frame.shape[-3:-1]
  if not (h % 2 or w % 2):
    return frame
  pad = [(0, 0)] * (frame.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)]
  return np.pad(frame, pad, mode='edge')


def _rate(fps: float) -> fractions.Fraction:
  return fractions.Fraction(fps).limit_denominator(1001)


def _encode(av, path: str, frames: np.ndarray, order: list[int],
            fps: float, name: str) -> None:
  """Writes frames[order] to `path` as an MP4 (see module docstring)."""
  h, w = pad_even(frames[0]).shape[:2]
  rate = _rate(fps)
  with av.open(path, mode='w', format='mp4',
               options={'movflags': '+faststart'}) as container:
    stream = container.add_stream(name, rate=rate, options=_OPTIONS.get(name))
    stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
    ctx = stream.codec_context
    ctx.time_base = 1 / rate
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
    ctx.color_range = _MPEG_RANGE
    for pts, i in enumerate(order):
      rgb = av.VideoFrame.from_ndarray(
          np.ascontiguousarray(pad_even(frames[i])), format='rgb24')
      frame = rgb.reformat(format='yuv420p', dst_colorspace='ITU709',
                           dst_color_range='MPEG')
      frame.pts = pts
      container.mux(stream.encode(frame))
    container.mux(stream.encode(None))  # flush the encoder


def write_mp4(path: str, frames_u8: np.ndarray, *, fps: float,
              loop: str = 'forward', repeats: int = 1,
              overwrite: bool = False) -> str:
  """Writes frames_u8 uint8[T,H,W,3] (RGB) as an MP4 video; returns path.

  Plays the frames at `fps` frames a second, `loop` 'forward' (f1 .. fT)
  or 'pingpong' (f1 .. fT .. f2), the cycle `repeats` times. H.264
  (libx264) if PyAV has it, else MPEG-4 Part 2 (`codec()`); yuv420p, so an
  odd height or width is edge-padded by 1 px to even. Written to
  `imageio.temp_path(path)` and renamed into place when complete.

  Raises ValueError naming the argument (frames_u8's dtype/shape, fps,
  loop, repeats), VideoUnavailableError (PyAV missing; the message gives
  the install command), FileExistsError (path exists, no `overwrite`) and
  imageio.ImageWriteError naming the file when writing fails; no partial
  or temporary file is left behind.
  """
  path = os.fspath(path)
  frames = _check_frames(frames_u8)
  check_options(fps=fps, loop=loop, repeats=repeats)
  order = frame_order(len(frames), loop, repeats)
  imageio.check_writable(path, overwrite)
  av = import_av()
  name = codec()
  tmp = imageio.temp_path(path)
  try:
    parent = os.path.dirname(path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    _encode(av, tmp, frames, order, fps, name)
    imageio.check_writable(path, overwrite)
    os.replace(tmp, path)
  except BaseException as e:
    try:
      os.remove(tmp)
    except FileNotFoundError:
      pass
    if isinstance(e, FileExistsError) or not isinstance(
        e, (OSError, av.FFmpegError)):
      raise
    reason = (getattr(e, 'strerror', None) or ' '.join(str(e).split())
              or type(e).__name__)
    error = imageio.ImageWriteError(f'{path}: cannot write ({reason})')
    error.errno = getattr(e, 'errno', None)
    raise error from None
  return path

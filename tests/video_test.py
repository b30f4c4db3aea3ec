"""Tests for `hypercut_jax.video` (MP4 through PyAV) and `predict --mp4`.

Videos are decoded back with PyAV and checked frame by frame. The predict
tests reuse `predict_test`'s generator checkpoint (the trainer's own save of
the smoke config).
"""
import errno
import fractions
import os
import subprocess
import sys

import av
import numpy as np
from PIL import Image
import pytest

from hypercut_jax import imageio
from hypercut_jax import predict
from hypercut_jax import video
from predict_test import jin_ckpt  # pylint: disable=unused-import

HINT = 'pip install "hypercut_jax[video]"'


def _frames(t=7, h=36, w=50):
  """uint8[t,h,w,3]: smooth colour ramps, frame i brighter than i-1.

  Smooth content survives compression closely; the per-frame brightness
  tells frames apart after decoding.
  """
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  base = np.stack([x / w, y / h, 0.5 * (x / w + y / h)], -1) * 100.0
  return np.stack([base + 20.0 * i for i in range(t)]).astype(np.uint8)


def _decode(path):
  """(uint8[n,H,W,3] RGB frames, the video stream's facts) of an MP4."""
  with av.open(path) as container:
    stream = container.streams.video[0]
    frames = np.stack([f.to_ndarray(format='rgb24')
                       for f in container.decode(stream)])
    info = {'codec': stream.codec_context.name, 'rate': stream.average_rate,
            'seconds': float(stream.duration * stream.time_base)}
  return frames, info


def _brightness_order(decoded, source):
  """For each decoded frame, the index of the source frame nearest to it."""
  d = decoded.reshape(len(decoded), 1, -1).astype(float)
  s = source.reshape(1, len(source), -1).astype(float)
  return np.abs(d - s).mean(-1).argmin(1).tolist()


@pytest.mark.parametrize('h,w', [(36, 50), (35, 49)])
def test_forward_mp4_decodes_to_the_frames(tmp_path, h, w):
  src = _frames(7, h, w)
  path = str(tmp_path / 'clip.mp4')
  assert video.write_mp4(path, src, fps=8) == path
  assert os.listdir(tmp_path) == ['clip.mp4']  # no temporary left
  out, info = _decode(path)
  # 7 frames, sides padded up to even; the codec chosen here.
  assert out.shape == (7, h + h % 2, w + w % 2, 3)
  assert info['codec'] == {'libx264': 'h264'}.get(video.codec(),
                                                  video.codec())
  assert info['rate'] == 8 and info['seconds'] == pytest.approx(7 / 8)
  # Colours come back (BT.709 tags honoured): 4:2:0 + CRF 18 on ramps.
  err = np.abs(out[:, :h, :w].astype(int) - src.astype(int))
  assert err.mean() < 2.0 and np.percentile(err, 99) <= 8
  # The padding repeats the last row / column.
  if h % 2:
    assert np.abs(out[:, h].astype(int) - out[:, h - 1]).max() <= 8
  if w % 2:
    assert np.abs(out[:, :, w].astype(int) - out[:, :, w - 1]).max() <= 8


def test_pingpong_and_repeats_frame_order(tmp_path):
  src = _frames(7, 16, 18)
  assert video.frame_order(7, 'pingpong') == [0, 1, 2, 3, 4, 5, 6,
                                              5, 4, 3, 2, 1]
  assert video.frame_order(1, 'pingpong') == [0]
  assert video.frame_order(2, 'pingpong', 2) == [0, 1, 0, 1]
  for loop, repeats, n in (('pingpong', 1, 12), ('pingpong', 2, 24),
                           ('forward', 3, 21)):
    path = str(tmp_path / f'{loop}{repeats}.mp4')
    video.write_mp4(path, src, fps=29.97, loop=loop, repeats=repeats)
    out, info = _decode(path)
    assert len(out) == n
    assert _brightness_order(out, src) == video.frame_order(7, loop, repeats)
    assert info['rate'] == fractions.Fraction(2997, 100)


@pytest.mark.parametrize('kwargs,match', [
    ({'frames_u8': _frames().astype(np.float32)},
     r'frames_u8 must be uint8; got float32 of shape \(7, 36, 50, 3\)'),
    ({'frames_u8': _frames()[0]},
     r'frames_u8 must be \[T,H,W,3\].*got shape \(36, 50, 3\)'),
    ({'frames_u8': np.zeros((7, 8, 8, 4), np.uint8)},
     r'frames_u8 must be \[T,H,W,3\].*got shape \(7, 8, 8, 4\)'),
    ({'frames_u8': np.zeros((0, 8, 8, 3), np.uint8)},
     r'got shape \(0, 8, 8, 3\)'),
    ({'fps': 0}, r'fps=0: must be a finite number'),
    ({'fps': -8.0}, r'fps=-8.0'),
    ({'fps': float('nan')}, r'fps=nan'),
    ({'fps': float('inf')}, r'fps=inf'),
    ({'fps': '8'}, r"fps='8'"),
    ({'loop': 'backward'}, r"loop='backward': must be one of forward, "
     'pingpong'),
    ({'repeats': 0}, r'repeats=0: must be an integer >= 1'),
    ({'repeats': 1.5}, r'repeats=1.5'),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
  args = {'frames_u8': _frames(), 'fps': 8, 'loop': 'forward', 'repeats': 1}
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    video.write_mp4(str(tmp_path / 'a.mp4'), args.pop('frames_u8'), **args)
  assert os.listdir(tmp_path) == []


def test_without_pyav_one_line_install_hint(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, 'av', None)  # `import av` fails
  with pytest.raises(video.VideoUnavailableError) as info:
    video.write_mp4(str(tmp_path / 'a.mp4'), _frames(), fps=8)
  msg = str(info.value)
  assert HINT in msg and '\n' not in msg and 'PyAV' in msg
  assert isinstance(info.value, ImportError)
  assert os.listdir(tmp_path) == []
  # predict: one `error:` line, before the checkpoint or input is looked at.
  rc = predict.main([f'--checkpoint={tmp_path / "no_ckpt"}',
                     f'--input={tmp_path / "no_input.png"}',
                     f'--output={tmp_path / "out"}', '--mp4', '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and err.startswith('error: ') and '\n' not in err
  assert HINT in err and 'no_ckpt' not in err and 'no_input' not in err
  assert not (tmp_path / 'out').exists()


def test_package_imports_and_predicts_without_pyav():
  """`av` unimportable: the package, predict's parser and GIFs still work."""
  code = (
      'import sys; sys.modules["av"] = None\n'
      'import numpy as np, tempfile, os\n'
      'import hypercut_jax, hypercut_jax.predict as p, hypercut_jax.video\n'
      'from hypercut_jax import imageio\n'
      'p._parser().parse_args(["--checkpoint=c", "--input=i", "--output=o",'
      ' "--mp4", "--pingpong", "--fps=4"])\n'
      'd = tempfile.mkdtemp()\n'
      'imageio.write_gif(os.path.join(d, "a.gif"), np.zeros((7, 4, 4, 3)))\n'
      'print("ok")\n')
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
      os.path.abspath(video.__file__))))
  done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, env=env, timeout=120, check=False)
  assert done.returncode == 0 and done.stdout.strip() == 'ok', done.stderr


def test_codec_fallback_and_none(tmp_path, monkeypatch):
  monkeypatch.setattr(video, 'CODECS', ('no_such_encoder', 'mpeg4'))
  assert video.codec() == 'mpeg4'
  path = str(tmp_path / 'a.mp4')
  video.write_mp4(path, _frames(7, 35, 49), fps=8)
  out, info = _decode(path)
  assert info['codec'] == 'mpeg4' and out.shape == (7, 36, 50, 3)
  monkeypatch.setattr(video, 'CODECS', ('no_such_encoder',))
  with pytest.raises(video.VideoUnavailableError, match='no_such_encoder'):
    video.write_mp4(str(tmp_path / 'b.mp4'), _frames(), fps=8)
  assert os.listdir(tmp_path) == ['a.mp4']


def _fail_on_frame(monkeypatch, n):
  """The n-th frame sent to the encoder fails with ENOSPC."""
  real, calls = video.pad_even, []

  def pad_even(frame):
    calls.append(1)
    if len(calls) == n:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real(frame)
  monkeypatch.setattr(video, 'pad_even', pad_even)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path, monkeypatch):
  path = str(tmp_path / 'a.mp4')
  video.write_mp4(path, _frames(), fps=8)
  before = open(path, 'rb').read()
  with pytest.raises(FileExistsError, match='a.mp4: exists'):
    video.write_mp4(path, _frames(3), fps=8)
  _fail_on_frame(monkeypatch, 4)
  with pytest.raises(imageio.ImageWriteError) as info:
    video.write_mp4(path, _frames(3), fps=8, loop='pingpong', overwrite=True)
  assert str(info.value) == f'{path}: cannot write (No space left on device)'
  assert info.value.errno == errno.ENOSPC
  assert os.listdir(tmp_path) == ['a.mp4']
  assert open(path, 'rb').read() == before


def _paths(out, mp4=True):
  return predict.output_paths(str(out), 'x', gif=True, mp4=mp4)


def test_write_outputs_all_or_nothing_with_the_mp4(tmp_path, monkeypatch):
  blur = np.zeros((16, 18, 3), np.float32)
  frames = _frames(7, 16, 18)
  # The encoder fails: the images' temporaries are discarded too.
  _fail_on_frame(monkeypatch, 5)
  with pytest.raises(imageio.ImageWriteError, match='x.mp4: cannot write'):
    predict.write_outputs(_paths(tmp_path), blur, frames, overwrite=False)
  assert os.listdir(tmp_path) == []
  monkeypatch.undo()
  # Renaming the images fails after the MP4 is in place: it goes too.
  real = imageio.FileGroup.commit

  def commit(self):
    assert os.path.exists(tmp_path / 'x.mp4')
    self.discard()
    raise OSError(errno.EACCES, 'Permission denied')
  monkeypatch.setattr(imageio.FileGroup, 'commit', commit)
  with pytest.raises(OSError):
    predict.write_outputs(_paths(tmp_path), blur, frames, overwrite=False)
  assert os.listdir(tmp_path) == []
  monkeypatch.setattr(imageio.FileGroup, 'commit', real)
  written = predict.write_outputs(_paths(tmp_path), blur, frames,
                                  overwrite=False, fps=4, loop='pingpong')
  assert sorted(map(os.path.basename, written)) == sorted(os.listdir(tmp_path))
  assert len(written) == 10 and len(_decode(tmp_path / 'x.mp4')[0]) == 12


def test_predict_flag_errors(tmp_path, capsys):
  base = [f'--checkpoint={tmp_path}', f'--input={tmp_path}',
          f'--output={tmp_path / "out"}']
  for flags, expect in ((['--pingpong'], '--mp4'),
                        (['--fps=4'], '--mp4'),
                        (['--mp4', '--fps=0'], '--fps=0.0: must be'),
                        (['--mp4', '--fps=nan'], '--fps=nan')):
    assert predict.main(base + flags) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and expect in err and '\n' not in err
  assert not (tmp_path / 'out').exists()


def test_predict_writes_the_mp4(jin_ckpt, tmp_path, capsys):
  h, w = 30, 35  # odd width: the MP4 is 36 wide
  img = tmp_path / 'blur.png'
  rng = np.random.RandomState(0)
  Image.fromarray(rng.randint(0, 256, (h, w, 3), np.uint8)).save(img)
  out = tmp_path / 'out'
  argv = [f'--checkpoint={jin_ckpt}', f'--input={img}', f'--output={out}',
          '--mp4', '--no_progress']
  assert predict.main(argv) == 0
  assert 'wrote 1 image(s), 9 file(s)' in capsys.readouterr().out
  assert sorted(os.listdir(out)) == sorted(
      ['blur.mp4', 'blur_strip.png'] + [f'blur_f{i}.png' for i in range(1, 8)])
  decoded, info = _decode(str(out / 'blur.mp4'))
  assert decoded.shape == (7, h, w + 1, 3) and info['rate'] == predict.FPS
  # The MP4 shows f1 .. f7. Random weights give pixel noise, which 4:2:0
  # chroma cannot hold: compare 5x5 block means (measured: 4.4 at most).
  pngs = np.stack([np.asarray(Image.open(out / f'blur_f{i}.png'))
                   for i in range(1, 8)]).astype(float)
  blocks = lambda x: x.reshape(7, h // 5, 5, w // 5, 5, 3).mean((2, 4))
  err = np.abs(blocks(decoded[:, :, :w].astype(float)) - blocks(pngs))
  assert err.mean(axis=(1, 2, 3)).max() < 8
  # The MP4 counts for the skip logic: alone, it still stops a rerun.
  for i in range(1, 8):
    os.remove(out / f'blur_f{i}.png')
  os.remove(out / 'blur_strip.png')
  assert predict.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert 'blur.mp4: exists' in err and '--overwrite' in err
  assert '\n' not in err and os.listdir(out) == ['blur.mp4']
  # --overwrite with --pingpong and --fps.
  assert predict.main(argv + ['--overwrite', '--pingpong', '--fps=12']) == 0
  decoded, info = _decode(str(out / 'blur.mp4'))
  assert len(decoded) == 12 and info['rate'] == 12
  assert len(os.listdir(out)) == 9

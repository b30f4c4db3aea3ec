"""Tests for hypercut_jax.imageio: reading every input kind, writers, inputs."""
import errno
import os
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from hypercut_jax import imageio


def _png16(path, arr):
  """Writes uint16[H,W,C] (C in 1, 3, 4) as a 16-bit PNG, byte by byte."""
  h, w, c = arr.shape
  colour_type = {1: 0, 3: 2, 4: 6}[c]
  raw = b''.join(b'\x00' + arr[y].astype('>u2').tobytes() for y in range(h))

  def chunk(tag, data):
    crc = zlib.crc32(tag + data) & 0xffffffff
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', crc)
  header = struct.pack('>IIBBBBB', w, h, 16, colour_type, 0, 0, 0)
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture
def rgb8():
  return np.random.RandomState(0).randint(0, 256, (9, 11, 3), np.uint8)


def test_read_8bit_png_exact(tmp_path, rgb8):
  path = str(tmp_path / 'a.png')
  Image.fromarray(rgb8).save(path)
  x = imageio.read_image(path)
  assert x.dtype == np.float32 and x.shape == (9, 11, 3)
  np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), rgb8)


def test_read_16bit_gray_png_full_precision(tmp_path):
  g = (np.arange(9 * 11).reshape(9, 11, 1) * 601 + 3).astype(np.uint16)
  path = str(tmp_path / 'g16.png')
  _png16(path, g)
  x = imageio.read_image(path)
  assert x.shape == (9, 11, 3)
  np.testing.assert_allclose(x[..., 0], g[..., 0] / 65535.0, atol=1e-7)
  np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_read_16bit_rgb_png_to_8bit_precision(tmp_path):
  a = np.random.RandomState(1).randint(0, 65536, (6, 7, 3)).astype(np.uint16)
  path = str(tmp_path / 'c16.png')
  _png16(path, a)
  x = imageio.read_image(path)
  assert x.shape == (6, 7, 3)
  np.testing.assert_allclose(x, a / 65535.0, atol=1.0 / 255 + 1e-6)


def test_read_jpeg(tmp_path, rgb8):
  smooth = np.full((16, 16, 3), (200, 40, 90), np.uint8)
  path = str(tmp_path / 'a.jpg')
  Image.fromarray(smooth).save(path, quality=95)
  x = imageio.read_image(path)
  assert x.shape == (16, 16, 3)
  np.testing.assert_allclose(x, smooth / 255.0, atol=6 / 255)


def test_read_grayscale_expanded(tmp_path):
  g = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
  path = str(tmp_path / 'g.png')
  Image.fromarray(g, 'L').save(path)
  x = imageio.read_image(path)
  assert x.shape == (5, 6, 3)
  for c in range(3):
    np.testing.assert_allclose(x[..., c], g / 255.0, atol=1e-7)


def test_read_rgba_drops_alpha(tmp_path, rgb8):
  alpha = np.zeros(rgb8.shape[:2] + (1,), np.uint8)  # fully transparent
  path = str(tmp_path / 'a.png')
  Image.fromarray(np.concatenate([rgb8, alpha], -1), 'RGBA').save(path)
  x = imageio.read_image(path)
  np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), rgb8)


def test_read_palette_and_la(tmp_path, rgb8):
  p = str(tmp_path / 'p.png')
  Image.fromarray(rgb8).convert('P').save(p)
  assert imageio.read_image(p).shape == (9, 11, 3)
  la = str(tmp_path / 'la.png')
  Image.fromarray(rgb8).convert('LA').save(la)
  x = imageio.read_image(la)
  np.testing.assert_array_equal(x[..., 0], x[..., 1])


@pytest.mark.parametrize('kind', ['truncated', 'empty', 'text', 'zero_size',
                                  'directory'])
def test_bad_files_raise_naming_the_file(tmp_path, rgb8, kind):
  path = str(tmp_path / f'{kind}.png')
  if kind == 'truncated':
    good = str(tmp_path / 'good.png')
    Image.fromarray(np.random.RandomState(0).randint(
        0, 256, (64, 64, 3), np.uint8)).save(good)
    data = open(good, 'rb').read()
    with open(path, 'wb') as f:
      f.write(data[:len(data) // 2])
  elif kind == 'empty':
    open(path, 'wb').close()
  elif kind == 'text':
    with open(path, 'w') as f:
      f.write('not an image\n')
  elif kind == 'zero_size':
    header = struct.pack('>IIBBBBB', 0, 5, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b'IHDR' + header) & 0xffffffff
    with open(path, 'wb') as f:
      f.write(b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + header
              + struct.pack('>I', crc))
  else:
    os.mkdir(path)
  with pytest.raises(imageio.ImageReadError) as e:
    imageio.read_image(path)
  assert str(e.value).startswith(path)
  assert '\n' not in str(e.value)


def test_missing_file():
  with pytest.raises(FileNotFoundError, match='nope.png'):
    imageio.read_image('/nonexistent/nope.png')


def test_write_png_roundtrip_and_no_overwrite(tmp_path, rgb8):
  path = str(tmp_path / 'sub' / 'o.png')
  imageio.write_png(path, rgb8 / 255.0)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb8)
  with pytest.raises(FileExistsError, match='o.png'):
    imageio.write_png(path, np.zeros_like(rgb8))
  np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb8)
  imageio.write_png(path, np.zeros_like(rgb8), overwrite=True)
  assert np.asarray(Image.open(path)).max() == 0
  assert sorted(os.listdir(tmp_path / 'sub')) == ['o.png']  # no temp files


@pytest.mark.parametrize('identical', [False, True])
def test_gif_keeps_all_frames_looping(tmp_path, identical):
  rng = np.random.RandomState(0)
  frames = np.repeat(rng.rand(1, 16, 20, 3), 7, 0) if identical else rng.rand(
      7, 16, 20, 3)
  path = imageio.write_gif(str(tmp_path / 'a.gif'), frames)
  with Image.open(path) as im:
    assert im.n_frames == 7
    assert im.info.get('loop') == 0
    assert im.size == (20, 16 + 2)  # timeline bar below
  with pytest.raises(FileExistsError):
    imageio.write_gif(path, frames)


def test_strip_layout():
  a = np.zeros((4, 5, 3), np.uint8)
  b = np.full((4, 5, 3), 9, np.uint8)
  s = imageio.make_strip([a, b, a], pad=2)
  assert s.shape == (4, 3 * 5 + 2 * 2, 3)
  assert (s[:, 5:7] == 255).all() and (s[:, 7:12] == 9).all()
  with pytest.raises(ValueError, match='one shape'):
    imageio.make_strip([a, np.zeros((4, 6, 3), np.uint8)])


def test_expand_inputs(tmp_path):
  for name in ('b.png', 'a.jpg', '.hidden.png'):
    (tmp_path / name).write_bytes(b'x')
  (tmp_path / 'sub').mkdir()
  files, multi = imageio.expand_inputs(str(tmp_path))
  assert multi and [os.path.basename(f) for f in files] == ['a.jpg', 'b.png']
  files, multi = imageio.expand_inputs(str(tmp_path / 'b.png'))
  assert not multi and files == [str(tmp_path / 'b.png')]
  files, multi = imageio.expand_inputs(str(tmp_path / '*.png'))
  assert multi and [os.path.basename(f) for f in files] == ['b.png']
  with pytest.raises(FileNotFoundError, match='matches no files'):
    imageio.expand_inputs(str(tmp_path / '*.tif'))
  with pytest.raises(FileNotFoundError, match='missing.png'):
    imageio.expand_inputs(str(tmp_path / 'missing.png'))
  with pytest.raises(FileNotFoundError, match='no files'):
    imageio.expand_inputs(str(tmp_path / 'sub'))


def test_to_uint8_refuses_nan_and_inf():
  for bad in (np.nan, np.inf):
    with pytest.raises(ValueError, match='NaN/inf'):
      imageio.to_uint8(np.array([[0.5, bad]], np.float32))
  np.testing.assert_array_equal(
      imageio.to_uint8(np.array([-1.0, 0.5, 2.0], np.float32)), [0, 128, 255])


def test_file_group_is_all_or_nothing(tmp_path, rgb8):
  a, b = str(tmp_path / 'a.png'), str(tmp_path / 'b.gif')
  with pytest.raises(RuntimeError, match='stop'):
    with imageio.FileGroup() as group:
      group.png(a, rgb8)
      assert os.listdir(tmp_path) == [f'.a.png.tmp-{os.getpid()}']
      raise RuntimeError('stop')
  assert os.listdir(tmp_path) == []
  with imageio.FileGroup() as group:
    group.png(a, rgb8)
    group.gif(b, np.stack([rgb8] * 3))
    assert not os.path.exists(a)  # renamed only when the block ends
  assert group.paths == [a, b] and sorted(os.listdir(tmp_path)) == [
      'a.png', 'b.gif']
  np.testing.assert_array_equal(np.asarray(Image.open(a)), rgb8)
  with pytest.raises(FileExistsError, match='a.png'):
    with imageio.FileGroup() as group:
      group.png(a, rgb8)
  assert sorted(os.listdir(tmp_path)) == ['a.png', 'b.gif']


def test_failed_write_names_the_file_and_keeps_errno(tmp_path, rgb8,
                                                     monkeypatch):
  def full_disk(self, fp, *args, **kw):
    del self, args, kw
    with open(fp, 'wb') as f:
      f.write(b'partial')
    raise OSError(errno.ENOSPC, 'No space left on device')
  path = str(tmp_path / 'o.png')
  monkeypatch.setattr(Image.Image, 'save', full_disk)
  with pytest.raises(imageio.ImageWriteError) as e:
    imageio.write_png(path, rgb8)
  assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
  assert str(e.value) == f'{path}: cannot write (No space left on device)'
  assert os.listdir(tmp_path) == []


def test_fit_size():
  assert imageio.fit_size(30, 40, 100, 100) == (30, 40)  # never up
  assert imageio.fit_size(3000, 4000, None, 510) == (382, 510)
  assert imageio.fit_size(3000, 4000, 600, None) == (600, 800)
  assert imageio.fit_size(2, 10000, 640, 640) == (1, 640)


def test_strip_and_gif_size_limits(tmp_path):
  rng = np.random.RandomState(0)
  wide = rng.randint(0, 256, (40, 1000, 3), np.uint8)
  s = imageio.make_strip([wide] * 8, pad=2, max_width=4096)
  assert s.shape == (20, 8 * 510 + 7 * 2, 3)
  tall = rng.randint(0, 256, (1000, 40, 3), np.uint8)
  assert imageio.make_strip([tall] * 8, max_height=500).shape[0] == 500
  with pytest.raises(ValueError, match='no room'):
    imageio.make_strip([wide] * 8, pad=2, max_width=20)
  path = imageio.write_gif(str(tmp_path / 'a.gif'), np.stack([tall] * 7),
                           max_side=640)
  with Image.open(path) as im:
    assert im.n_frames == 7 and max(im.size) <= 640
    assert im.size == (25, 620 + 19)  # frame 620 px high + its bar

"""`predict` never writes silent garbage: tiling, NaN/inf, failed writes, caps.

Tiling is checked against the untiled result: exactly (to float rounding,
1e-6) for a small convolutional net without image-wide statistics whose
receptive field is within the blend margin (overlap / 4), and within a
stated bound for the smoke-sized jin2018 (InstanceNorm: statistics over the
whole input, so tiles cannot match exactly). The generator checkpoint is
`predict_test`'s (the trainer's own save of the smoke config).
"""
import dataclasses
import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from hypercut_jax import imageio
from hypercut_jax import inference
from hypercut_jax import predict
from predict_test import jin_ckpt  # pylint: disable=unused-import


def _rgb(path, h, w, seed=0):
  rng = np.random.RandomState(seed)
  Image.fromarray(rng.randint(0, 256, (h, w, 3), np.uint8)).save(path)
  return str(path)


def _conv(x, k):
  return jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _norm_free_net(seed=0):
  """jitted f32[B,H,W,3] -> f32[B,7,H,W,3], H, W even; no normalisation.

  3x3 conv, 2x2 space-to-depth, 3x3 conv, depth-to-space, 3x3 conv: a
  receptive field of at most 5 px a side, translation-equivariant for even
  shifts (so its size multiple is 2).
  """
  rng = np.random.RandomState(seed)
  k1 = jnp.asarray(rng.normal(0, 0.5, (3, 3, 3, 8)), jnp.float32)
  k2 = jnp.asarray(rng.normal(0, 0.2, (3, 3, 32, 16)), jnp.float32)
  k3 = jnp.asarray(rng.normal(0, 0.3, (3, 3, 4, 21)), jnp.float32)

  @jax.jit
  def net(x):
    b, h, w, _ = x.shape
    y = jnp.tanh(_conv(x, k1))
    y = y.reshape(b, h // 2, 2, w // 2, 2, 8).transpose(0, 1, 3, 2, 4, 5)
    y = jnp.tanh(_conv(y.reshape(b, h // 2, w // 2, 32), k2))
    y = y.reshape(b, h // 2, w // 2, 2, 2, 4).transpose(0, 1, 3, 2, 4, 5)
    y = jax.nn.sigmoid(_conv(y.reshape(b, h, w, 4), k3))
    return y.reshape(b, h, w, 7, 3).transpose(0, 3, 1, 2, 4)
  return net


def test_tile_starts_and_weights_partition():
  assert predict.tile_starts(40, 48, 24) == [0]
  starts = predict.tile_starts(100, 48, 24)
  # Steps of tile - overlap; the last tile ends at the border.
  assert starts == [0, 24, 48, 52]
  weights = predict.axis_weights(100, starts, 48, 24)
  total = np.zeros(100)
  for s, wt in zip(starts, weights):
    total[s:s + 48] += wt
  np.testing.assert_allclose(total, 1.0, atol=1e-6)
  # No weight within overlap // 4 = 6 px of an inner edge; full weight on
  # the image border and away from neighbours.
  assert (weights[1][:6] == 0).all() and (weights[1][-6:] == 0).all()
  assert (weights[0][-6:] == 0).all() and weights[0][0] == 1.0
  assert weights[3][-1] == 1.0
  # Rounded up to the size multiple; the tile kept >= 2 x the overlap.
  assert predict.Tiling().rounded(20) == (520, 80)
  assert predict.Tiling(tile=50, overlap=25).rounded(20) == (80, 40)
  with pytest.raises(ValueError, match='tile_overlap'):
    predict.Tiling(tile=64, overlap=40).check()


def test_tiled_equals_untiled_for_a_norm_free_net():
  """Overlap/4 >= the receptive field: the untiled frames to 1e-6."""
  net = _norm_free_net()
  h, w = 99, 131  # odd: reflect-padded to 100 x 132 like models.predict
  blur = np.random.RandomState(1).uniform(size=(h, w, 3)).astype(np.float32)
  untiled = np.asarray(net(predict.pad_to_multiple(blur, 2)[None]))[0]
  untiled = untiled[:, :h, :w]
  calls = []

  def fn(x):
    calls.append(x.shape)
    return np.asarray(net(x))

  out = np.zeros((7, h, w, 3), np.float32)
  predict.predict_tiled(fn, blur, tile=48, overlap=24, multiple=2, out=out)
  assert set(calls) == {(1, 48, 48, 3)} and len(calls) == 4 * 5
  np.testing.assert_allclose(out, untiled, rtol=0, atol=1e-6)
  # The 8-bit canvas: the untiled frames rounded (rounding ties aside).
  out8 = predict.predict_tiled(fn, blur, tile=48, overlap=24, multiple=2)
  assert out8.dtype == np.uint8
  diff = np.abs(out8.astype(int) - imageio.to_uint8(untiled))
  assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
  # Control: a margin (16 // 4 = 4 px) inside the receptive field is seen.
  predict.predict_tiled(fn, blur, tile=48, overlap=16, multiple=2, out=out)
  assert np.abs(out - untiled).max() > 1e-3


def test_jin2018_tiled_within_bound(jin_ckpt, tmp_path):
  """InstanceNorm: tiled frames near, not equal to, untiled ones.

  Measured (random smoke weights, 40 px tiles, 20 px overlap, 60x100):
  mean |diff| 0.003, max 0.035 in [0,1] units; asserted: 0.01 and 0.1.
  """
  img = _rgb(tmp_path / 'a.png', 60, 100)
  for name, flags in (('u', ['--tile=0']),
                      ('t', ['--tile=40', '--tile_overlap=20',
                             '--tile_above=0'])):
    assert predict.main([f'--checkpoint={jin_ckpt}', f'--input={img}',
                         f'--output={tmp_path / name}', '--no_progress',
                         *flags]) == 0
  diff = np.stack([
      np.abs(np.asarray(Image.open(tmp_path / 'u' / f'a_f{i}.png'), float)
             - np.asarray(Image.open(tmp_path / 't' / f'a_f{i}.png'), float))
      for i in range(1, 8)]) / 255.0
  assert diff.mean() < 0.01 and diff.max() < 0.1
  assert diff.max() > 0  # the tiled path really ran


@pytest.fixture
def nan_weights(monkeypatch):
  """load_generator (the public loading path) returning NaN params."""
  real = inference.load_generator

  def load(path, **kw):
    loaded = real(path, **kw)
    params = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), loaded.params)
    return dataclasses.replace(loaded, params=params)
  monkeypatch.setattr(inference, 'load_generator', load)


@pytest.mark.parametrize('tiled', [False, True])
def test_nan_weights_write_nothing(jin_ckpt, nan_weights, tmp_path, capsys,
                                   tiled):
  del nan_weights
  img = _rgb(tmp_path / 'blur.png', 30, 36)
  out = tmp_path / 'out'
  flags = ['--tile=20', '--tile_overlap=0', '--tile_above=0'] if tiled else []
  rc = predict.main([f'--checkpoint={jin_ckpt}', f'--input={img}',
                     f'--output={out}', '--gif', '--no_progress', *flags])
  captured = capsys.readouterr()
  err = captured.err.strip()
  assert rc == 1 and '\n' not in err and err.startswith('error: ')
  assert img in err and jin_ckpt in err and 'NaN' in err
  assert 'wrote' not in captured.out
  assert not out.exists() or os.listdir(out) == []  # no temporaries either


def test_nan_in_a_batch_writes_none_of_it(jin_ckpt, nan_weights, tmp_path,
                                          capsys):
  del nan_weights
  inputs = tmp_path / 'in'
  inputs.mkdir()
  for i in range(3):
    _rgb(inputs / f'{i}.png', 30, 36, seed=i)
  out = tmp_path / 'out'
  rc = predict.main([f'--checkpoint={jin_ckpt}', f'--input={inputs}',
                     f'--output={out}', '--batch_size=3', '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and '\n' not in err and jin_ckpt in err
  assert str(inputs / '0.png') in err and '2 other input(s)' in err
  assert os.listdir(out) == []


def test_inf_before_clipping_is_caught():
  """models.predict clips inf to 1; the raw frames are checked."""

  class InfModel:
    size_multiple = 1

    def apply(self, variables, x, **kw):
      del variables, kw
      frames = jnp.zeros((x.shape[0], 7) + x.shape[1:])
      return {'frames': frames.at[1, 3, 0, 0, 0].set(jnp.inf)}

  fn = predict.make_predict_fn(type('Loaded', (), {'model': InfModel()})())
  frames, finite = fn({}, np.zeros((2, 4, 5, 3), np.float32))
  assert np.asarray(finite).tolist() == [True, False]
  assert float(frames[1, 3, 0, 0, 0]) == 1.0  # clipped: invisible after


def _fail_on_save(monkeypatch, n):
  """Image.save writes a partial file and raises ENOSPC on its n-th call."""
  real = Image.Image.save
  calls = []

  def save(self, fp, format=None, **kw):  # pylint: disable=redefined-builtin
    calls.append(os.fspath(fp))
    if len(calls) == n:
      with open(fp, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n partial')
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real(self, fp, format, **kw)
  monkeypatch.setattr(Image.Image, 'save', save)
  return calls


def test_failed_write_leaves_nothing_and_rerun_succeeds(jin_ckpt, tmp_path,
                                                        capsys, monkeypatch):
  img = _rgb(tmp_path / 'blur.png', 30, 36)
  out = tmp_path / 'out'
  argv = [f'--checkpoint={jin_ckpt}', f'--input={img}', f'--output={out}',
          '--gif', '--no_progress']
  calls = _fail_on_save(monkeypatch, 3)
  assert predict.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and err.startswith('error: ')
  assert str(out / 'blur_f3.png') in err and 'No space left' in err
  assert os.path.basename(calls[2]) == f'.blur_f3.png.tmp-{os.getpid()}'
  assert os.listdir(out) == []  # neither frames 1-2 nor temporaries
  monkeypatch.undo()
  assert predict.main(argv) == 0
  assert len(os.listdir(out)) == 9


def test_strip_and_gif_capped_on_a_wide_input(jin_ckpt, tmp_path):
  h, w = 20, 1300  # strip uncapped: 8 * 1300 + 14 = 10414 px wide
  img = _rgb(tmp_path / 'wide.png', h, w)
  out = tmp_path / 'out'
  assert predict.main([f'--checkpoint={jin_ckpt}', f'--input={img}',
                       f'--output={out}', '--gif', '--no_progress']) == 0
  for i in range(1, 8):  # frames stay full resolution
    assert Image.open(out / f'wide_f{i}.png').size == (w, h)
  sw, sh = Image.open(out / 'wide_strip.png').size
  assert sw <= predict.STRIP_MAX_WIDTH and sh <= predict.STRIP_MAX_HEIGHT
  assert sw > predict.STRIP_MAX_WIDTH - 16  # shrunk to fit, not further
  with Image.open(out / 'wide.gif') as gif:
    assert max(gif.size) <= predict.GIF_MAX_SIDE and gif.n_frames == 7
    assert gif.size[0] == predict.GIF_MAX_SIDE


def test_predict_and_order_refuse_a_corrupt_checkpoint(jin_ckpt, tmp_path,
                                                       capsys):
  import shutil  # pylint: disable=g-import-not-at-top
  from checkpoint_integrity_test import flip_bytes  # pylint: disable=g-import-not-at-top
  from predict_test import h_ckpt as _  # pylint: disable=g-import-not-at-top,unused-import
  from hypercut_jax import order  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  gen = str(tmp_path / 'gen')
  shutil.copytree(jin_ckpt, gen)
  step = checkpoint.latest_step(gen)
  flip_bytes(os.path.join(checkpoint.checkpoints_dir(gen), str(step)))
  _rgb(str(tmp_path / 'in.png'), 40, 40)
  out = tmp_path / 'out'
  code = predict.main([f'--checkpoint={gen}', f'--input={tmp_path}/in.png',
                       f'--output={out}', '--no_progress'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code != 0 and len(err) == 1, err
  assert f'checkpoint step {step} in ' in err[0] and 'corrupt' in err[0]
  assert not out.exists() or not os.listdir(out)

  # order: an H checkpoint with the same damage.
  h_dir = str(tmp_path / 'h')
  mngr = checkpoint.make_manager(os.path.join(h_dir, 'checkpoints'),
                                 async_save=False)
  from checkpoint_integrity_test import KW, _h_state  # pylint: disable=g-import-not-at-top
  checkpoint.save(mngr, 1, _h_state(1), config={
      'stage': 'ordering', 'precision': 'float32',
      'model': {'name': 'hypercut', 'kwargs': dict(KW)},
      'optim': {'name': 'sgd', 'lr': 1e-3}, 'input': {'crop': 33}})
  mngr.wait_until_finished()
  mngr.close()
  flip_bytes(os.path.join(h_dir, 'checkpoints', '1'))
  clip = tmp_path / 'clip'
  clip.mkdir()
  for t in range(7):
    _rgb(str(clip / f'{t}.png'), 40, 40, seed=t)
  code = order.main([f'--checkpoint={h_dir}', f'--frames={clip}'])
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  assert code != 0 and len(err) == 1, err
  assert 'checkpoint step 1 in ' in err[0] and 'corrupt' in err[0]
  assert not captured.out.strip()

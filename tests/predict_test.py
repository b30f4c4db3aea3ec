"""Tests for `python -m hypercut_jax.predict` (tiny generators, small images).

The generator checkpoint is written with the trainer's own functions
(`train.generator.make_init`, `train.checkpoint.save`) from the config of
`configs/synthetic.py:smoke,stage=generator`, exactly as a training run
saves it.
"""
import io
import os
import struct
import zlib

import jax
import ml_collections
import numpy as np
import optax
from PIL import Image
import pytest

from hypercut_jax import predict
from hypercut_jax.configs import synthetic as synthetic_configs
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import ordering as ordering_lib

H, W = 30, 36  # not a multiple of jin2018's 20: exercises the padding


def _smoke_config(stage):
  return synthetic_configs.get_config(f'smoke,stage={stage}')


def _save(workdir, state, config, step=1):
  mngr = ckpt_lib.make_manager(os.path.join(workdir, 'checkpoints'),
                               async_save=False)
  ckpt_lib.save(mngr, step, state, config=config)
  mngr.wait_until_finished()
  mngr.close()
  return workdir


def _random_state(init, tx=None, seed=0):
  """The trainer's state layout (shapes from `init`) with random params.

  Avoids compiling or eagerly running a model's init on the shared CPU.
  """
  abstract = jax.eval_shape(init, jax.random.key(0))
  rng = np.random.RandomState(seed)
  params = jax.tree.map(
      lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
      abstract.params)
  fields = {f: rng.uniform(-1, 1, getattr(abstract, f).shape).astype(np.float32)
            for f in ('hyperplane',) if hasattr(abstract, f)}
  tx = tx or optax.adam(1e-3)
  return abstract.replace(step=np.zeros([], np.int32), params=params,
                          opt_state=tx.init(params), **fields)


@pytest.fixture(scope='module')
def jin_ckpt(tmp_path_factory):
  cfg = _smoke_config('generator')
  model = generator_lib.make_model(cfg.model.name, cfg.model.kwargs)
  state = _random_state(generator_lib.make_init(model, optax.adam(1e-3),
                                                cfg.input.crop))
  return _save(str(tmp_path_factory.mktemp('jin')), state, cfg)


@pytest.fixture(scope='module')
def h_ckpt(tmp_path_factory):
  cfg = _smoke_config('ordering')
  model = ordering_lib.make_model(cfg.model.kwargs)
  state = _random_state(ordering_lib.make_init(model, optax.adam(1e-3),
                                               cfg.input.crop))
  return _save(str(tmp_path_factory.mktemp('h')), state, cfg)


def _png16_rgb(path, arr):
  h, w, _ = arr.shape
  raw = b''.join(b'\x00' + arr[y].astype('>u2').tobytes() for y in range(h))

  def chunk(tag, data):
    crc = zlib.crc32(tag + data) & 0xffffffff
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', crc)
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n'
            + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def _write_inputs(directory):
  """One image of each kind, all H x W, plus three bad files."""
  rng = np.random.RandomState(0)
  rgb = rng.randint(0, 256, (H, W, 3), np.uint8)
  Image.fromarray(rgb).save(os.path.join(directory, 'rgb8.png'))
  Image.fromarray(rgb).save(os.path.join(directory, 'photo.jpg'))
  Image.fromarray(rgb[..., 0], 'L').save(os.path.join(directory, 'gray.png'))
  Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(
      os.path.join(directory, 'gray16.png'))
  _png16_rgb(os.path.join(directory, 'rgb16.png'),
             rgb.astype(np.uint16) * 257)
  alpha = rng.randint(0, 256, (H, W, 1), np.uint8)
  Image.fromarray(np.concatenate([rgb, alpha], -1), 'RGBA').save(
      os.path.join(directory, 'rgba.png'))
  good = ['rgb8', 'photo', 'gray', 'gray16', 'rgb16', 'rgba']
  data = open(os.path.join(directory, 'rgb8.png'), 'rb').read()
  with open(os.path.join(directory, 'truncated.png'), 'wb') as f:
    f.write(data[:len(data) // 2])
  open(os.path.join(directory, 'empty.png'), 'wb').close()
  with open(os.path.join(directory, 'notes.txt'), 'w') as f:
    f.write('not an image\n')
  return good, ['truncated.png', 'empty.png', 'notes.txt']


def test_directory_of_every_kind_with_bad_files(jin_ckpt, tmp_path, capsys):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  good, bad = _write_inputs(str(inputs))
  out = tmp_path / 'out'
  rc = predict.main([f'--checkpoint={jin_ckpt}', f'--input={inputs}',
                     f'--output={out}', '--gif', '--batch_size=8',
                     '--no_progress'])
  captured = capsys.readouterr()
  assert rc == 1  # the run finished but some inputs failed
  for name in bad:  # each bad file reported on its own line, by name
    lines = [l for l in captured.err.splitlines() if name in l]
    assert len(lines) == 1, captured.err
  expected = set()
  for stem in good:
    expected |= {f'{stem}_f{i}.png' for i in range(1, 8)}
    expected |= {f'{stem}_strip.png', f'{stem}.gif'}
  assert set(os.listdir(out)) == expected
  for stem in good:
    for i in range(1, 8):
      frame = np.asarray(Image.open(out / f'{stem}_f{i}.png'))
      assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    strip = np.asarray(Image.open(out / f'{stem}_strip.png'))
    assert strip.shape == (H, 8 * W + 7 * 2, 3)
    with Image.open(out / f'{stem}.gif') as gif:
      assert gif.n_frames == 7 and gif.info.get('loop') == 0
  # The grayscale inputs went in as 3 equal channels: outputs of gray.png
  # and gray16.png (same values) agree.
  a = np.asarray(Image.open(out / 'gray_f1.png')).astype(int)
  b = np.asarray(Image.open(out / 'gray16_f1.png')).astype(int)
  assert np.abs(a - b).max() <= 1


def test_no_overwrite_without_flag_and_batching_is_exact(jin_ckpt, tmp_path,
                                                         capsys):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  rng = np.random.RandomState(1)
  for name in ('a', 'b', 'c'):
    Image.fromarray(rng.randint(0, 256, (H, W, 3), np.uint8)).save(
        inputs / f'{name}.png')
  out = tmp_path / 'out'
  assert predict.main([f'--checkpoint={jin_ckpt}', f'--input={inputs}',
                       f'--output={out}', '--batch_size=2',
                       '--no_progress']) == 0
  before = {n: (out / n).read_bytes() for n in os.listdir(out)}
  assert len(before) == 3 * 8
  # Same single input again: refused, one line naming the file, untouched.
  capsys.readouterr()
  rc = predict.main([f'--checkpoint={jin_ckpt}',
                     f'--input={inputs / "c.png"}', f'--output={out}',
                     '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and '\n' not in err
  assert 'c_f1.png' in err and '--overwrite' in err
  assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
  # With --overwrite, alone in a batch of 1: the same frames as in the
  # batch of 2 (padded, since c.png came last) of the first run.
  assert predict.main([f'--checkpoint={jin_ckpt}',
                       f'--input={inputs / "c.png"}',
                       f'--output={out}', '--overwrite', '--batch_size=1',
                       '--no_progress']) == 0
  for i in range(1, 8):
    new = np.asarray(Image.open(out / f'c_f{i}.png')).astype(int)
    old = np.asarray(Image.open(io.BytesIO(before[f'c_f{i}.png']))).astype(int)
    assert np.abs(new - old).max() <= 1


def test_single_bad_input_exits_nonzero_naming_it(jin_ckpt, tmp_path, capsys):
  bad = tmp_path / 'broken.png'
  bad.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
  rc = predict.main([f'--checkpoint={jin_ckpt}', f'--input={bad}',
                     f'--output={tmp_path / "out"}', '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and err.startswith('error: ') and str(bad) in err
  assert '\n' not in err
  assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')


def test_wrong_checkpoint_kind_and_missing(h_ckpt, tmp_path, capsys):
  img = tmp_path / 'a.png'
  Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img)
  rc = predict.main([f'--checkpoint={h_ckpt}', f'--input={img}',
                     f'--output={tmp_path / "out"}', '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and 'ordering network H' in err and 'generator' in err
  assert h_ckpt in err and '\n' not in err
  rc = predict.main([f'--checkpoint={tmp_path / "nope"}', f'--input={img}',
                     f'--output={tmp_path / "out"}', '--no_progress'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and 'nope' in err and '\n' not in err


def test_purohit_without_middle_frame(tmp_path):
  """Purohit gets no middle frame: its `centre` net estimates one."""
  kwargs = {'blur_widths': [4, 4, 4, 8, 8, 8, 8], 'flow_channels': [2, 4, 4, 8]}
  cfg = ml_collections.ConfigDict({
      'stage': 'generator', 'precision': 'float32',
      'model': {'name': 'purohit2019', 'kwargs': kwargs},
      'input': {'crop': 16}, 'data': {'name': 'synthetic'}})
  model = generator_lib.make_model('purohit2019', kwargs)
  # Random params of the right shapes without compiling the (large) init.
  init = generator_lib.make_init(model, optax.identity(), 16)
  state = _random_state(init, optax.identity())
  rng = np.random.RandomState(0)
  ckpt = _save(str(tmp_path / 'purohit'), state, cfg)
  img = tmp_path / 'blur.png'
  Image.fromarray(rng.randint(0, 256, (13, 21, 3), np.uint8)).save(img)
  out = tmp_path / 'out'
  assert predict.main([f'--checkpoint={ckpt}', f'--input={img}',
                       f'--output={out}', '--gif', '--no_progress']) == 0
  for i in range(1, 8):
    assert np.asarray(Image.open(out / f'blur_f{i}.png')).shape == (13, 21, 3)
  with Image.open(out / 'blur.gif') as gif:
    assert gif.n_frames == 7

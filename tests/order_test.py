"""Tests for `python -m hypercut_jax.order`.

A tiny H is trained here (the trainer's own step, 60 steps) on clips of a
bright square moving left or right over noise, saved with the trainer's
checkpoint functions, then asked about a held-out clip and its reverse.
"""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image
import pytest

from hypercut_jax import inference
from hypercut_jax import order
from hypercut_jax.train import checkpoint as ckpt_lib
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import ordering as ordering_lib

S = 36
H_KWARGS = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1, negative_slope=1.0,
                channel_order='bgr')


def _clip(rng, direction):
  """f32[7,S,S,3]: an 8x8 white square moving 3 px/frame right (or left)."""
  bg = rng.uniform(0.2, 0.5, (S, S, 3)).astype(np.float32)
  y, x = rng.randint(2, S - 10), rng.randint(2, S - 26)
  frames = []
  for t in range(7):
    f = bg.copy()
    f[y:y + 8, x + 3 * t:x + 3 * t + 8] = 1.0
    frames.append(f)
  frames = np.stack(frames)
  return frames if direction > 0 else frames[::-1]


def _config(kind, model):
  return {'stage': kind, 'precision': 'float32', 'seed': 0,
          'model': model, 'optim': {'name': 'adam', 'lr': 3e-3},
          'input': {'crop': S}, 'data': {'name': 'synthetic'}}


def _save(workdir, state, config):
  mngr = ckpt_lib.make_manager(os.path.join(workdir, 'checkpoints'),
                               async_save=False)
  ckpt_lib.save(mngr, int(state.step), state, config=config)
  mngr.wait_until_finished()
  mngr.close()
  return workdir


@pytest.fixture(scope='module')
def trained_h(tmp_path_factory):
  model = ordering_lib.make_model(H_KWARGS)
  tx = optax.adam(3e-3)
  state = jax.jit(ordering_lib.make_init(model, tx, S))(jax.random.key(0))
  step = jax.jit(ordering_lib.make_train_step(model, tx))
  rng = np.random.RandomState(0)
  for _ in range(60):
    batch = np.stack([_clip(rng, rng.choice([-1, 1])) for _ in range(8)])
    state, _ = step(state, {'sharp': batch}, jax.random.key(0))
  workdir = str(tmp_path_factory.mktemp('h'))
  return _save(workdir, state, _config(
      'ordering', {'name': 'hypercut', 'kwargs': H_KWARGS}))


def _write_clip(directory, frames, names=None):
  os.makedirs(directory, exist_ok=True)
  names = names or [f'frame_{i:02d}.png' for i in range(len(frames))]
  for name, f in zip(names, frames):
    Image.fromarray(np.round(f * 255).astype(np.uint8)).save(
        os.path.join(directory, name))
  return directory


def test_clip_and_reverse_get_opposite_directions(trained_h, tmp_path,
                                                  capsys):
  frames = _clip(np.random.RandomState(123), +1)  # held out
  fwd = _write_clip(str(tmp_path / 'clips' / 'a_forward'), frames)
  rev = _write_clip(str(tmp_path / 'clips' / 'b_reversed'), frames[::-1])
  directions = {}
  for name, clip in (('fwd', fwd), ('rev', rev)):
    assert order.main([f'--checkpoint={trained_h}', f'--frames={clip}']) == 0
    text = capsys.readouterr().out
    lines = [l for l in text.splitlines() if l.strip().startswith('direction')]
    assert len(lines) == 1, text
    directions[name] = lines[0].split()[1]
    assert 'reversed clip' in text and 'opposite: yes' in text, text
    assert text.count('(0,6)') == 1 and '(1,5)' in text and '(2,4)' in text
  assert {directions['fwd'], directions['rev']} == {'+', '-'}, directions
  # Both clips at once (a directory of clip dirs), as JSON: the reversed
  # clip's u are the forward clip's v (pairs swapped), and vice versa.
  assert order.main([f'--checkpoint={trained_h}',
                     f'--frames={tmp_path / "clips"}', '--format=json']) == 0
  rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert [os.path.basename(r['clip']) for r in rows] == ['a_forward',
                                                         'b_reversed']
  a, b = rows
  np.testing.assert_allclose(a['u'], b['v'], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(a['v'], b['u'], rtol=1e-4, atol=1e-5)
  assert a['direction'] == directions['fwd'] and a['opposite']
  assert a['u'][0] * a['v'][0] < 0


def test_sorted_filename_order_and_glob(trained_h, tmp_path, capsys):
  frames = _clip(np.random.RandomState(7), -1)
  # Names whose sorted order is the time order, written in a shuffled order.
  names = [f'{i}.png' for i in range(7)]
  perm = np.random.RandomState(0).permutation(7)
  clip = str(tmp_path / 'clip')
  os.makedirs(clip)
  for i in perm:
    Image.fromarray(np.round(frames[i] * 255).astype(np.uint8)).save(
        os.path.join(clip, names[i]))
  results, failed = order.run(trained_h, clip)
  assert not failed and results[0].frames == names
  by_glob, _ = order.run(trained_h, os.path.join(clip, '*.png'))
  np.testing.assert_allclose(by_glob[0].u, results[0].u, rtol=1e-6)
  majority, _ = order.run(trained_h, clip, rule='majority')
  assert majority[0].direction == order.side(results[0].u, 'majority')


def test_side_rules():
  assert order.side([-1.0, 2.0, 3.0], 'first') == '-'
  assert order.side([-1.0, 2.0, 3.0], 'majority') == '+'
  assert order.side([0.0, 1.0, -1.0], 'first') == '0'
  with pytest.raises(ValueError, match='rule'):
    order.side([1.0, 1.0, 1.0], 'mean')


def test_bad_clips(trained_h, tmp_path, capsys):
  rng = np.random.RandomState(1)
  good = _write_clip(str(tmp_path / 'clips' / 'good'), _clip(rng, 1))
  _write_clip(str(tmp_path / 'clips' / 'six'), _clip(rng, 1)[:6])
  small = rng.uniform(size=(7, 20, 40, 3))
  _write_clip(str(tmp_path / 'clips' / 'small'), small)
  broken = _write_clip(str(tmp_path / 'clips' / 'broken'), _clip(rng, 1))
  with open(os.path.join(broken, 'frame_03.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n broken')
  # Several clips: the good one is scored, each bad one gets one line.
  rc = order.main([f'--checkpoint={trained_h}',
                   f'--frames={tmp_path / "clips"}'])
  out = capsys.readouterr()
  assert rc == 1
  assert f'clip {good}' in out.out
  err = out.err.splitlines()
  assert any('six' in l and 'expected 7 frames, found 6' in l for l in err)
  assert any('small' in l and '20x40' in l and '33' in l for l in err)
  assert any('frame_03.png' in l for l in err)
  # A single bad clip: exit 1 and one line naming it.
  rc = order.main([f'--checkpoint={trained_h}',
                   f'--frames={tmp_path / "clips" / "six"}'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and '\n' not in err and 'six' in err


def test_wrong_checkpoint_kind(tmp_path, capsys):
  cfg = _config('generator', {'name': 'jin2018', 'kwargs': dict(
      centre_features=4, centre_tail=4, side_features=4, deep_plain=1,
      shallow_plain=1, side_tail=4)})
  cfg['input']['crop'] = 40
  model = generator_lib.make_model('jin2018', cfg['model']['kwargs'])
  abstract = jax.eval_shape(generator_lib.make_init(model, optax.identity(),
                                                    40), jax.random.key(0))
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract.params)
  state = abstract.replace(step=np.zeros([], np.int32), params=params,
                           opt_state=optax.identity().init(params))
  ckpt = _save(str(tmp_path / 'gen'), state, cfg)
  clip = _write_clip(str(tmp_path / 'clip'), _clip(np.random.RandomState(0),
                                                    1))
  rc = order.main([f'--checkpoint={ckpt}', f'--frames={clip}'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and '\n' not in err
  assert 'generator' in err and 'ordering network H' in err and ckpt in err
  torch_file = tmp_path / 'h.pth'
  torch_file.write_bytes(b'not really')
  rc = order.main([f'--checkpoint={torch_file}', f'--frames={clip}'])
  err = capsys.readouterr().err.strip()
  assert rc == 1 and 'hypercut_jax.convert' in err


def test_nan_scores_exit_nonzero_with_one_line(trained_h, tmp_path, capsys,
                                               monkeypatch):
  """A NaN hyperplane (via the public loader) gives no direction at all."""
  real = inference.load_ordering

  def load(path, **kw):
    loaded = real(path, **kw)
    return dataclasses.replace(
        loaded, hyperplane=jnp.full_like(loaded.hyperplane, jnp.nan))
  monkeypatch.setattr(inference, 'load_ordering', load)
  clip = _write_clip(str(tmp_path / 'clip'),
                     _clip(np.random.RandomState(3), 1))
  for fmt in ('text', 'json'):
    rc = order.main([f'--checkpoint={trained_h}', f'--frames={clip}',
                     f'--format={fmt}'])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 1 and '\n' not in err and err.startswith('error: ')
    assert clip in err and trained_h in err and 'not finite' in err
    assert captured.out == ''  # no scores, no direction printed
  with pytest.raises(ValueError, match='finite'):
    order.side([float('nan'), 1.0, 1.0])

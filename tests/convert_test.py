"""Tests for `python -m hypercut_jax.convert` against an eager PyTorch H.

`benchmarks.torch_reference.TorchHyperCUT` has the official key names; its
random weights are saved with `torch.save(state_dict)` as the authors'
trainer does, converted, and the JAX embeddings and scores compared with
PyTorch's on the same frames: torch gets what the official loader makes
(BGR, /255, ImageNet mean/std, NCHW), JAX gets RGB in [0,1] (NHWC) and
normalises inside `OrderingNet`.
"""
import os
import sys

import jax
import numpy as np
import pytest
import torch  # the `test` / `convert` extra

from hypercut_jax import convert
from hypercut_jax import inference
from hypercut_jax import losses
from hypercut_jax import order
from hypercut_jax.models import ordering
from hypercut_jax.train import generator as generator_lib
from hypercut_jax.train import sharding as sharding_lib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.torch_reference import TorchHyperCUT  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = dict(nf=4, embed_dim=8, n_blocks=1)


def _torch_input(pairs_rgb):
  """f32[N,H,W,6] RGB in [0,1] -> the official H input, f32[N,6,H,W]."""
  x = pairs_rgb.reshape(*pairs_rgb.shape[:-1], 2, 3)[..., ::-1]  # BGR
  x = (x - np.asarray(ordering.IMAGENET_MEAN)) / np.asarray(
      ordering.IMAGENET_STD)
  x = x.reshape(pairs_rgb.shape).transpose(0, 3, 1, 2)
  return torch.tensor(np.ascontiguousarray(x), dtype=torch.float32)


def _save_torch(tmp_path, sizes, name='h.pth', seed=0, wrap=None):
  torch.manual_seed(seed)
  net = TorchHyperCUT(**sizes).eval()
  state = net.state_dict()
  obj = state if wrap is None else wrap(state)
  path = str(tmp_path / name)
  torch.save(obj, path)
  return net, path


@pytest.mark.parametrize('sizes', [TINY, {}], ids=['tiny', 'full'])
def test_parity_with_pytorch(tmp_path, sizes):
  net, path = _save_torch(tmp_path, sizes)
  out = str(tmp_path / 'converted')
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}']) == 0
  h = inference.load_ordering(out)
  assert h.step == 0 and h.model.negative_slope == 1.0
  assert h.model.channel_order == 'bgr'
  if not sizes:
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(h.params))
    assert n == 2_315_552  # the official ResnetIm2Vec
  pairs = np.random.RandomState(0).rand(3, 35, 41, 6).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    e = np.asarray(h.model.apply({'params': h.params}, pairs))
    s = np.asarray(losses.hyperplane_score(e, h.hyperplane))
  with torch.no_grad():
    e_t = net.embed(_torch_input(pairs)).numpy()
    s_t = net.score(_torch_input(pairs)).numpy()
  np.testing.assert_allclose(e, e_t, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s, s_t, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(
      np.asarray(h.hyperplane), net.hyperplane.hyperplane.detach().numpy())


def test_stage2_and_order_accept_the_converted_checkpoint(tmp_path, capsys):
  net, path = _save_torch(tmp_path, TINY)
  out = str(tmp_path / 'converted')
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}']) == 0
  # The trainer's stage-2 loader (config.hypercut.checkpoint=out).
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  model, params, hyperplane, step = generator_lib.load_hypercut(out, mesh)
  assert step == 0 and model.embed_dim == 8
  np.testing.assert_array_equal(
      np.asarray(hyperplane), net.hyperplane.hyperplane.detach().numpy())
  # `order` on one clip prints u_k, v_k equal to PyTorch's scores.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  frames = rng.randint(0, 256, (7, 34, 38, 3), np.uint8)
  clip = tmp_path / 'clip'
  clip.mkdir()
  for i, f in enumerate(frames):
    Image.fromarray(f).save(clip / f'{i}.png')
  results, failed = order.run(out, str(clip))
  assert not failed
  x = frames.astype(np.float32) / 255.0
  fwd = np.stack([np.concatenate([x[a], x[b]], -1) for a, b in order.PAIRS])
  rev = np.stack([np.concatenate([x[b], x[a]], -1) for a, b in order.PAIRS])
  with torch.no_grad():
    u_t = net.score(_torch_input(fwd)).numpy()
    v_t = net.score(_torch_input(rev)).numpy()
  np.testing.assert_allclose(results[0].u, u_t, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(results[0].v, v_t, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('wrap', [
    lambda sd: {'state_dict': sd, 'epoch': 3},
    lambda sd: {f'module.{k}': v for k, v in sd.items()},
], ids=['wrapped', 'dataparallel'])
def test_wrapped_state_dicts(tmp_path, wrap):
  net, path = _save_torch(tmp_path, TINY, wrap=wrap)
  state = convert.read_state_dict(path)
  assert set(state) == set(net.state_dict())


def _mutated(tmp_path, mutate):
  torch.manual_seed(0)
  state = TorchHyperCUT(**TINY).state_dict()
  mutate(state)
  path = str(tmp_path / 'bad.pth')
  torch.save(state, path)
  return path


@pytest.mark.parametrize('mutate, expected', [
    (lambda s: s.pop('f_func.model.5.bias'),
     ['missing keys', 'f_func.model.5.bias']),
    (lambda s: s.update({'f_func.model.13.conv_block.9.weight':
                         torch.zeros(3), 'extra.thing': torch.zeros(1)}),
     ['unknown keys', 'extra.thing', 'f_func.model.13.conv_block.9.weight']),
    (lambda s: s.update({'f_func.model.7.weight': torch.zeros(8, 8, 5, 5)}),
     ['shape mismatches', 'f_func.model.7.weight (8, 8, 5, 5)']),
    (lambda s: s.pop('hyperplane.hyperplane'),
     ['missing', 'hyperplane.hyperplane']),
])
def test_bad_keys_are_listed(tmp_path, capsys, mutate, expected):
  path = _mutated(tmp_path, mutate)
  out = tmp_path / 'out'
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}']) == 1
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and path in err
  for text in expected:
    assert text in err, err
  assert not (out / 'checkpoints').exists()


def test_missing_and_unknown_together(tmp_path):
  def mutate(s):
    s['f_func.model.3.weight_renamed'] = s.pop('f_func.model.3.weight')
  with pytest.raises(convert.ConversionError) as e:
    convert.convert(_mutated(tmp_path, mutate), str(tmp_path / 'o'))
  msg = str(e.value)
  assert 'missing keys: f_func.model.3.weight' in msg
  assert 'unknown keys: f_func.model.3.weight_renamed' in msg


@pytest.mark.parametrize('content', ['text', 'list', 'dict_no_tensors'])
def test_not_a_state_dict(tmp_path, capsys, content):
  path = str(tmp_path / f'{content}.pth')
  if content == 'text':
    with open(path, 'w') as f:
      f.write('hello\n')
  elif content == 'list':
    torch.save([torch.zeros(2)], path)
  else:
    torch.save({'epoch': 3, 'note': 'x'}, path)
  assert convert.main([f'--torch_checkpoint={path}',
                       f'--output={tmp_path / "o"}']) == 1
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and path in err
  assert ('not a readable PyTorch checkpoint' in err
          or 'not a state_dict' in err), err


def test_flags_must_agree_and_no_overwrite(tmp_path, capsys):
  _, path = _save_torch(tmp_path, TINY)
  out = str(tmp_path / 'o')
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}',
                       '--embed_dim=16']) == 1
  assert '--embed_dim=16 but the tensors say 8' in capsys.readouterr().err
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}',
                       '--nf=4', '--n_blocks=1', '--negative_slope=0.2']) == 0
  assert inference.load_ordering(out).model.negative_slope == 0.2
  capsys.readouterr()
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}']) == 1
  assert '--overwrite' in capsys.readouterr().err
  assert inference.load_ordering(out).model.negative_slope == 0.2
  assert convert.main([f'--torch_checkpoint={path}', f'--output={out}',
                       '--overwrite']) == 0
  assert inference.load_ordering(out).model.negative_slope == 1.0


def test_missing_torch_says_how_to_install(tmp_path, monkeypatch, capsys):
  _, path = _save_torch(tmp_path, TINY)
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` fails
  assert convert.main([f'--torch_checkpoint={path}',
                       f'--output={tmp_path / "o"}']) == 1
  err = capsys.readouterr().err.strip()
  assert 'pip install -e .[convert]' in err and '\n' not in err


class _RunsCode:
  """Pickles as a call to os.getpid: code the safe loader must refuse."""

  def __reduce__(self):
    return (os.getpid, ())


def test_code_in_a_checkpoint_is_refused_with_the_full_reason(tmp_path,
                                                              capsys):
  path = str(tmp_path / 'hostile.pth')
  torch.save({'f_func.model.0.weight': _RunsCode()}, path)
  assert convert.main([f'--torch_checkpoint={path}',
                       f'--output={tmp_path / "o"}']) == 1
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and path in err
  assert 'refused by the safe loader' in err
  assert 'GLOBAL' in err and 'getpid' in err     # the reason, not cut short
  assert 'weights_only` set to `False`' not in err   # no advice to run it
  assert not (tmp_path / 'o').exists()

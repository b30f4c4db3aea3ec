"""Tests for `convert.load_official` and the hashable `OrderingNet` fields.

The reference is the on-disk path: `convert.convert` to an orbax directory,
read back with `inference.load_ordering`. `load_official` must give the same
module, params and hyperplane, from a .pth path or from a state_dict in
memory. The torch H (`benchmarks.torch_reference.TorchHyperCUT`) and the
helper that saves its weights come from `convert_test`.
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the `test` / `convert` extra

import convert_test  # TorchHyperCUT, TINY and the .pth writer
from hypercut_jax import convert
from hypercut_jax import inference
from hypercut_jax.models import ordering

TINY = convert_test.TINY
SMALL = dict(nf=4, embed_dim=16, n_down=2, n_blocks=2)
# (net, path) of a random torch H saved as the authors' trainer saves it.
_save_torch = convert_test._save_torch  # pylint: disable=protected-access


def _flat(tree) -> dict:
  return {jax.tree_util.keystr(k): v
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_same(loaded, reference):
  """(model, params, hyperplane) equal to an `inference.Loaded`, to 1e-6."""
  model, params, hyperplane = loaded
  assert model == reference.model and hash(model) == hash(reference.model)
  got, want = _flat(params), _flat(reference.params)
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    assert isinstance(got[key], jax.Array), key
    assert got[key].dtype == value.dtype == jnp.float32, key
    np.testing.assert_allclose(np.asarray(got[key]), np.asarray(value),
                               rtol=0, atol=1e-6, err_msg=key)
  assert isinstance(hyperplane, jax.Array)
  assert hyperplane.dtype == reference.hyperplane.dtype == jnp.float32
  assert hyperplane.shape == (model.embed_dim + 1,)
  np.testing.assert_allclose(np.asarray(hyperplane),
                             np.asarray(reference.hyperplane), rtol=0,
                             atol=1e-6)


def _reference(tmp_path, path, **kw):
  out = str(tmp_path / 'converted')
  convert.convert(path, out, **kw)
  return inference.load_ordering(out)


@pytest.mark.parametrize('sizes, slope', [(TINY, 1.0), (SMALL, 0.2)],
                         ids=['tiny', 'small_slope'])
def test_path_equals_the_orbax_round_trip(tmp_path, sizes, slope):
  _, path = _save_torch(tmp_path, sizes)
  reference = _reference(tmp_path, path, negative_slope=slope)
  loaded = convert.load_official(path, negative_slope=slope)
  _assert_same(loaded, reference)
  assert loaded[0].negative_slope == slope
  # A pathlib path and agreeing sizes are accepted too.
  _assert_same(convert.load_official(tmp_path / 'h.pth', negative_slope=slope,
                                     **sizes), reference)


def test_in_memory_state_dicts(tmp_path, monkeypatch):
  net, path = _save_torch(tmp_path, TINY)
  reference = _reference(tmp_path, path)
  sd = net.state_dict()
  before = {k: v.clone() for k, v in sd.items()}
  numpy_sd = {k: v.numpy() for k, v in sd.items()}
  forms = {
      'torch': sd,
      'numpy': numpy_sd,
      'numpy_float64': {k: v.astype(np.float64) for k, v in numpy_sd.items()},
      'wrapped': {'state_dict': sd, 'epoch': 3},
      'dataparallel': {f'module.{k}': v for k, v in sd.items()},
  }
  for name, form in forms.items():
    try:
      _assert_same(convert.load_official(form), reference)
    except AssertionError as e:
      raise AssertionError(f'{name}: {e}') from None
  for k, v in sd.items():  # the input is left as it was
    assert torch.equal(v, before[k]), k
  # numpy arrays need no torch at all.
  monkeypatch.setitem(sys.modules, 'torch', None)
  _assert_same(convert.load_official(numpy_sd), reference)


def test_module_is_hashable_and_jits(tmp_path):
  net, _ = _save_torch(tmp_path, TINY)
  model, params, _ = convert.load_official(net.state_dict())
  assert isinstance(model.mean, tuple) and isinstance(model.std, tuple)
  hash(model)
  x = np.random.RandomState(0).rand(2, 33, 35, 6).astype(np.float32)
  eager = np.asarray(model.apply({'params': params}, x))
  closed = jax.jit(lambda p, x: model.apply({'params': p}, x))
  np.testing.assert_allclose(np.asarray(closed(params, x)), eager, rtol=1e-5,
                             atol=1e-5)

  static = jax.jit(lambda m, p, x: m.apply({'params': p}, x),
                   static_argnums=0)
  np.testing.assert_allclose(np.asarray(static(model, params, x)), eager,
                             rtol=1e-5, atol=1e-5)
  # The same fields given as lists (as a JSON config gives them back).
  kwargs = convert.model_kwargs(convert.infer_sizes(
      convert.state_dict_arrays(net.state_dict())))
  hash(tuple(kwargs.items()))  # hashable at the source
  from_json = ordering.OrderingNet(**json.loads(json.dumps(kwargs)))
  assert isinstance(from_json.mean, tuple)
  assert from_json == model and hash(from_json) == hash(model)
  np.testing.assert_allclose(np.asarray(static(from_json, params, x)), eager,
                             rtol=1e-5, atol=1e-5)


def test_list_and_array_fields_become_tuples():
  listed = ordering.OrderingNet(mean=list(ordering.IMAGENET_MEAN),
                                std=np.asarray(ordering.IMAGENET_STD))
  assert listed.mean == ordering.IMAGENET_MEAN
  assert listed.std == ordering.IMAGENET_STD
  assert listed == ordering.OrderingNet()
  assert hash(listed) == hash(ordering.OrderingNet())
  assert hash(listed.clone(nf=8)) == hash(ordering.OrderingNet(nf=8))
  assert ordering.OrderingNetTiny(mean=[0.5, 0.5, 0.5]).mean == (0.5,) * 3


def _tiny_state():
  torch.manual_seed(0)
  return convert_test.TorchHyperCUT(**TINY).state_dict()


def _popped(key):
  def mutate(s):
    s.pop(key)
  return mutate


@pytest.mark.parametrize('mutate, expected', [
    (_popped('f_func.model.5.bias'),
     ['missing keys: f_func.model.5.bias']),
    (_popped('hyperplane.hyperplane'), ['missing', 'hyperplane.hyperplane']),
    (lambda s: s.update({'f_func.model.7.weight': torch.zeros(8, 8, 5, 5)}),
     ['shape mismatches', 'f_func.model.7.weight (8, 8, 5, 5)',
      '(expected (8, 8, 3, 3))']),
    (lambda s: s.update({'extra.thing': torch.zeros(1)}),
     ['unknown keys: extra.thing']),
    (lambda s: s.update({'hyperplane.hyperplane': [1.0] * 9}),
     ['not a state_dict', 'hyperplane.hyperplane (list)']),
], ids=['missing', 'no_hyperplane', 'shape', 'unknown', 'not_a_tensor'])
def test_bad_state_dicts_name_the_key(mutate, expected):
  state = _tiny_state()
  mutate(state)
  with pytest.raises(convert.ConversionError) as e:
    convert.load_official(state)
  msg = str(e.value)
  assert '\n' not in msg and msg.startswith('<state_dict>: '), msg
  for text in expected:
    assert text in msg, msg


@pytest.mark.parametrize('obj, expected', [
    ([torch.zeros(2)], 'got an object of type list'),
    (None, 'got an object of type NoneType'),
    (3, 'got an object of type int'),
    ({}, 'not a state_dict'),
    ({'epoch': 3, 'note': 'x'}, 'not a state_dict'),
])
def test_not_a_state_dict(obj, expected):
  with pytest.raises(convert.ConversionError) as e:
    convert.load_official(obj)
  assert expected in str(e.value) and '\n' not in str(e.value)


def test_sizes_must_agree_and_missing_file(tmp_path):
  with pytest.raises(convert.ConversionError,
                     match='embed_dim=16 but the tensors say 8'):
    convert.load_official(_tiny_state(), embed_dim=16)
  with pytest.raises(FileNotFoundError, match='no such file'):
    convert.load_official(str(tmp_path / 'absent.pth'))

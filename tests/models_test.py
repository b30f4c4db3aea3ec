"""Tests for hypercut_jax.models (registry, generator protocol, predict)."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax import models
from hypercut_jax.models import jin2018
from hypercut_jax.models import purohit2019
from hypercut_jax.models import zhong2022

KEY = jax.random.key(0, impl='rbg')  # fast to compile on CPU
TINY = {'jin2018': jin2018.Tiny, 'purohit2019': purohit2019.Tiny,
        'zhong2022': zhong2022.TinyDecomposer}
predict = jax.jit(models.predict, static_argnums=0)


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


@functools.lru_cache(maxsize=None)
def _tiny(name):
  model = TINY[name]()
  m = model.size_multiple
  x = jnp.zeros((1, m, m, 3))
  variables = jax.jit(lambda k: model.init(k, x, train=False, middle=x))(KEY)
  return model, variables


def test_every_generator_takes_the_protocol_keywords():
  # Shapes only (no compile): every registered class accepts middle and
  # guidance, returns 7 frames, and keeps its variables to 'params'.
  for name, cls in models.REGISTRY.items():
    model = TINY.get(name, cls)()
    m = model.size_multiple
    x = jax.ShapeDtypeStruct((2, 2 * m, 3 * m, 3), jnp.float32)
    g = jax.ShapeDtypeStruct((2, 2 * m, 3 * m), jnp.int32)
    rngs = {'params': KEY, 'dropout': KEY, 'noise': KEY}
    variables, out = jax.eval_shape(
        lambda x, g, model=model: model.init_with_output(
            rngs, x, train=True, middle=x, guidance=g)[::-1], x, g)
    assert set(variables) == {'params'}, name
    assert out['frames'].shape == (2, 7, 2 * m, 3 * m, 3), name


def test_registry_is_a_literal_name_to_class_map():
  assert models.REGISTRY['jin2018'] is jin2018.Model
  assert models.REGISTRY['purohit2019'] is purohit2019.Model
  assert models.REGISTRY['zhong2022'] is zhong2022.Decomposer
  assert set(models.NEEDS_GUIDANCE) <= set(models.REGISTRY)
  for name, cls in models.REGISTRY.items():
    assert models.get(name) is cls


def test_get_unknown_name_lists_known_names():
  with pytest.raises(ValueError, match=r"'nope'.*jin2018.*purohit2019"):
    models.get('nope')


@pytest.mark.parametrize('name,multiple', [('jin2018', 20),
                                           ('purohit2019', 8),
                                           ('zhong2022', 4)])
def test_size_multiple_is_a_class_attribute_not_a_field(name, multiple):
  cls = models.get(name)
  assert cls.size_multiple == multiple
  assert 'size_multiple' not in {f.name for f in dataclasses.fields(cls)}
  assert TINY[name]().size_multiple == multiple


def test_predict_single_tiny_image_with_middle_purohit():
  # H=3, W=5 padded to 8x8 needs repeated reflection; no batch axis.
  model, variables = _tiny('purohit2019')
  assert set(variables) == {'params'}
  blur = _uniform((3, 5, 3), seed=1)
  middle = _uniform((3, 5, 3), seed=2)
  frames = predict(model, variables, blur, middle=middle)
  assert frames.shape == (7, 3, 5, 3)
  assert float(frames.min()) >= 0 and float(frames.max()) <= 1
  padded = lambda x: jnp.asarray(np.pad(np.asarray(x)[None],
                                        ((0, 0), (0, 5), (0, 3), (0, 0)),
                                        'reflect'))
  raw = jax.jit(lambda v, x, m: model.apply(v, x, train=False, middle=m))(
      variables, padded(blur), padded(middle))['frames']
  np.testing.assert_allclose(frames, jnp.clip(raw[0, :, :3, :5], 0, 1),
                             atol=1e-5)


@pytest.mark.parametrize('blur_shape,kw,match', [
    ((4, 4), {}, 'blur'),
    ((1, 9, 9, 4), {}, 'blur'),
    ((2, 9, 9, 3), {'middle': (1, 9, 9, 3)}, 'middle'),
    ((2, 9, 9, 3), {'guidance': (2, 9, 9, 1)}, 'guidance'),
])
def test_predict_bad_inputs_raise(blur_shape, kw, match):
  model = purohit2019.Tiny()
  kw = {k: jnp.zeros(v) for k, v in kw.items()}
  with pytest.raises(ValueError, match=match):
    models.predict(model, {'params': {}}, jnp.zeros(blur_shape), **kw)


def test_zhong2022_size_multiple_follows_n_down_and_predict_pads():
  # 2**n_down on an instance (the class reads the default's); predict pads
  # blur and guidance alike and crops back (shapes only, no compile).
  model = zhong2022.TinyDecomposer(n_down=3)
  assert model.size_multiple == 8 and zhong2022.Decomposer.size_multiple == 4
  x = jnp.zeros((1, 8, 8, 3))
  g = jnp.zeros((1, 8, 8), jnp.int32)
  variables = jax.eval_shape(
      lambda k: model.init(k, x, train=False, guidance=g), KEY)
  out = jax.eval_shape(
      lambda v, b, gd: models.predict(model, v, b, guidance=gd),
      variables, jax.ShapeDtypeStruct((2, 13, 11, 3), jnp.float32),
      jax.ShapeDtypeStruct((2, 13, 11), jnp.int32))
  assert out.shape == (2, 7, 13, 11, 3)
  with pytest.raises(ValueError, match='needs guidance'):
    jax.eval_shape(lambda v, b: models.predict(model, v, b), variables,
                   jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32))

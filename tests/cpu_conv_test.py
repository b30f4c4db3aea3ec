"""Tests for hypercut_jax.models.cpu_conv (H's CPU convolutions).

The kernels against plain `lax` convs, forward and backward, are in
tests/benchmarks_test.py; here: the module's place in the package and the
pieces that file does not reach directly.
"""
import ast
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hypercut_jax.models import cpu_conv
from hypercut_jax.models import layers


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=shape),
                     jnp.float32)


def test_cpu_conv_does_not_import_ordering():
  tree = ast.parse(inspect.getsource(cpu_conv))
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      imported.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      imported.update(f'{node.module}.{a.name}' for a in node.names)
  assert 'hypercut_jax.models.ordering' not in imported
  assert 'hypercut_jax.models.layers' in imported


@pytest.mark.parametrize('k,shape,block', [
    (3, (2, 9, 7, 5), 10 ** 9),    # one band
    (3, (1, 11, 6, 4), 1),         # one output row per band
    (5, (2, 12, 9, 3), 600),       # a few bands, odd kernel > 3
])
def test_strided_conv_im2col_equals_lax_conv(k, shape, block):
  x = _uniform(shape)
  w = _uniform((k, k, shape[-1], 6), seed=1)
  p = (k - 1) // 2
  want = jax.lax.conv_general_dilated(
      x, w, (2, 2), ((p, p), (p, p)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got = cpu_conv.strided_conv_im2col(x, w, block)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cpu_stem_same_tree_and_outputs_as_reflect_conv():
  x = _uniform((2, 12, 10, 6))
  plain = layers.ReflectConv(8, 7)
  params = plain.init(jax.random.key(0), x)
  fast = cpu_conv.CpuStem(8, 7)
  assert (jax.tree.map(jnp.shape, fast.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, params))
  np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-5)

"""Mesh, shardings and host-to-device batch hand-over.

One mesh axis, `data`. Batches are sharded on their leading axis over it;
params (and the optimiser state that mirrors them) are replicated, or, with
`config.sharding.fsdp`, big kernels are split along their largest axis that
the device count divides (ZeRO-3 style; XLA inserts the all-gathers).
The same code runs on 1 CPU, 8 fake CPU devices, a GPU node or a pod slice.
"""
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = 'data'
# Leaves smaller than this stay replicated under FSDP (biases, small convs).
FSDP_MIN_SIZE = 2 ** 16


def make_mesh(devices: Sequence[Any] | None = None) -> jax.sharding.Mesh:
  """1-D mesh ('data',) over `devices` (default: all devices of all hosts)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError('make_mesh needs at least one device')
  return jax.make_mesh((len(devices),), (DATA,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def batch_sharding(mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh, field: str = 'batch_size') -> None:
  """The global batch must split evenly over devices and processes."""
  n = mesh.shape[DATA]
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'config.{field}={batch_size!r}; must be a positive int')
  if batch_size % n:
    raise ValueError(
        f'config.{field}={batch_size} is not divisible by the {n} '
        f'data-parallel devices; use a multiple of {n}')
  if batch_size % jax.process_count():
    raise ValueError(
        f'config.{field}={batch_size} is not divisible by the '
        f'{jax.process_count()} processes')


def _leaf_spec(shape, n: int, fsdp: bool, min_size: int) -> P:
  if not fsdp or n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  # Largest axis divisible by the device count (first one on ties).
  order = sorted(range(len(shape)), key=lambda i: (-shape[i], i))
  for axis in order:
    if shape[axis] % n == 0:
      spec = [None] * len(shape)
      spec[axis] = DATA
      return P(*spec)
  return P()


def tree_shardings(abstract_tree, mesh, *, fsdp: bool = False,
                   min_size: int = FSDP_MIN_SIZE):
  """NamedSharding per leaf: replicated, or FSDP-split where it pays.

  abstract_tree: pytree of arrays or ShapeDtypeStructs (e.g. a whole train
  state from `jax.eval_shape`; optimiser moments follow their params
  because the rule depends only on the leaf shape).
  """
  n = mesh.shape[DATA]
  return jax.tree.map(
      lambda x: NamedSharding(mesh, _leaf_spec(x.shape, n, fsdp, min_size)),
      abstract_tree)


def with_shardings(abstract_tree, shardings):
  """ShapeDtypeStructs that carry their target sharding (orbax restore)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract_tree, shardings)


def put_batch(host_batch: dict, sharding: NamedSharding) -> dict:
  """Numpy batch of this process -> global jax.Arrays laid out by `sharding`.

  host_batch: {'blur': uint8[b,H,W,3], 'sharp': uint8[b,7,H,W,3], ...} with
  b = global batch / process count. Non-numeric entries ('id' strings) and
  the eval 'mask' stay on the host and are dropped here.
  """
  out = {}
  for key, value in host_batch.items():
    if key in ('id', 'mask'):
      continue
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      continue
    try:
      # The step's one explicit host-to-device copy. Across processes jax
      # routes it through make_array_from_callback, which the caller's
      # transfer_guard('disallow') would count as implicit.
      with jax.transfer_guard('allow'):
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    except ValueError as e:
      raise ValueError(
          f'batch[{key!r}] of shape {value.shape} cannot be laid out over '
          f'{sharding.mesh.shape[DATA]} devices: {e}') from e
  return out

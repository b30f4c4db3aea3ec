r"""Official HyperCUT PyTorch checkpoints of H -> orbax stage-1 checkpoints.

  pip install -e .[convert]          # torch, only needed here
  python -m hypercut_jax.convert --torch_checkpoint=hypercut_street.pth \
      --output=/tmp/h_street
  python -m hypercut_jax.order --checkpoint=/tmp/h_street --frames=clip/
  python -m hypercut_jax.main --config=configs/rb2v.py \
      --workdir=/tmp/jin_street --config.stage=generator \
      --config.hypercut.checkpoint=/tmp/h_street

The authors' trainer saves `model.state_dict()` of their `HyperCUT` module
(`torch.save` to `checkpoints/<exp>/models/<epoch>.pth`): the ordering
network under `f_func.model.*` and the fixed hyperplane as
`hyperplane.hyperplane` (d+1 values). This reads such a file with
`torch.load(map_location='cpu', weights_only=True)`; a dict wrapping the
state_dict (under 'state_dict', 'model_state_dict', 'model', 'net',
'params', 'hypercut') and DataParallel's `module.` prefix are accepted too.

Sizes come from the tensors: nf from the stem, n_down from the strided
convs, n_blocks from the residual blocks, embed_dim from the hyperplane.
`--nf/--embed_dim/--n_down/--n_blocks`, when given, must agree. The
activation has no tensors: `--negative_slope` (default 1.0, the official
`LeakyReLU(True)`). The input convention is the official one (BGR channel
order, ImageNet mean/std applied as is), kept in the model config.

Every tensor is mapped (`models.ordering.official_param_names`; conv
kernels OIHW -> HWIO, biases as is); missing, unknown or mis-shaped keys
fail with the list of them. The output is a stage-1 checkpoint at step 0 in
`DIR/checkpoints/0/` with the trainer's items: `state` (params, a fresh
optimiser state for the official AdaMax, step 0 and the hyperplane) and
`config` (a stage-1 config whose model section reproduces the official H),
so `config.hypercut.checkpoint=DIR` (stage 2) and `order` accept it.

In Python, `load_official(path_or_state_dict)` does the same reading,
checking and mapping fully in memory (no directory written) and returns
`(model, params, hyperplane)`, equal to what `inference.load_ordering`
gives on the converted directory. A state_dict already in memory (torch
tensors or numpy arrays, in any of the forms above) is accepted too.
"""
import argparse
from collections.abc import Mapping
import hashlib
import os
import re
import shutil
import sys

import numpy as np

from hypercut_jax.models import ordering

HYPERPLANE_KEY = 'hyperplane.hyperplane'
PREFIX = 'f_func.'
WRAPPER_KEYS = ('state_dict', 'model_state_dict', 'model', 'net', 'params',
                'hypercut')
# The official stage-1 optimiser (recorded in the converted config so the
# trainer's abstract state matches what is written).
OFFICIAL_OPTIM = {
    'name': 'adamax_torch', 'lr': 5e-4, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,
    'weight_decay': 0.0, 'grad_clip_norm': None, 'schedule': 'step',
    'decay_rate': 0.9, 'decay_every_steps': None, 'decay_every_epochs': 3.0,
    'milestones_steps': None, 'milestones_epochs': None,
    'final_lr_fraction': 0.0}
OFFICIAL_CROP = 256


class ConversionError(ValueError):
  """The torch file is not a state_dict of the official H (names the file)."""


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError('reading PyTorch checkpoints needs torch: '
                      'pip install -e .[convert]') from None
  return torch


def _load_failure(e: BaseException) -> str:
  """torch.load's refusal, reduced to its reason (one line, not shortened).

  The safe loader's message opens with advice to rerun with
  `weights_only=False`, which would execute code from the file: that advice
  is dropped, and so are the documentation pointers. What is left is the
  reason, e.g. "Trying to load unsupported GLOBAL posix.system whose module
  posix is blocked.".
  """
  text = str(e)
  if 'weights_only' in text or 'Weights only load failed' in text:
    kept = [p for p in re.split(r'\n\s*\n', text)
            if p.strip() and 'weights_only' not in p
            and not p.strip().startswith('Check the documentation')]
    reason = ' '.join(' '.join(kept).split()) or 'refused'
    return (f'refused by the safe loader, torch.load(weights_only=True): '
            f'{reason} convert never runs code from a checkpoint file')
  return f"{type(e).__name__}: {' '.join(text.split())}"


def _is_tensor(v) -> bool:
  """A torch tensor, numpy array or jax array (torch is not imported here)."""
  torch = sys.modules.get('torch')
  if torch is not None and isinstance(v, torch.Tensor):
    return True
  jax = sys.modules.get('jax')
  return isinstance(v, np.ndarray) or (jax is not None
                                       and isinstance(v, jax.Array))


def _is_tensor_dict(d) -> bool:
  return (isinstance(d, Mapping) and len(d) > 0
          and all(isinstance(k, str) for k in d)
          and all(_is_tensor(v) for v in d.values()))


def _describe(obj) -> str:
  """What `obj` is, for the error saying it is not a state_dict."""
  if not isinstance(obj, Mapping):
    return f'a {type(obj).__name__}'
  text = f'a dict with keys {sorted(map(str, obj))[:10]}'
  if any(_is_tensor(v) for v in obj.values()):
    odd = sorted(f'{k} ({type(v).__name__})' for k, v in obj.items()
                 if not isinstance(k, str) or not _is_tensor(v))
    text += f' whose values under {_limited(odd, 6)} are not tensors'
  return text


def _float32(key: str, value, where: str) -> np.ndarray:
  torch = sys.modules.get('torch')
  try:
    if torch is not None and isinstance(value, torch.Tensor):
      return value.detach().to(torch.float32).cpu().numpy()
    return np.asarray(value, np.float32)
  except (TypeError, ValueError, RuntimeError) as e:
    raise ConversionError(f'{where}: {key} (dtype {value.dtype}) is not a '
                          f'real-valued tensor ({" ".join(str(e).split())})'
                          ) from None


def state_dict_arrays(obj, where: str = '<state_dict>'
                      ) -> dict[str, np.ndarray]:
  """{official key: float32 array} from what torch.load returns, in memory.

  obj: a mapping of names to tensors (torch tensors, numpy or jax arrays),
  or a mapping wrapping one under one of WRAPPER_KEYS; DataParallel's
  `module.` prefix is dropped. `where` names the source in errors.
  Raises ConversionError when `obj` holds no state_dict.
  """
  state = None
  if _is_tensor_dict(obj):
    state = obj
  elif isinstance(obj, Mapping):
    for key in WRAPPER_KEYS:
      if _is_tensor_dict(obj.get(key)):
        state = obj[key]
        break
  if state is None:
    raise ConversionError(
        f'{where}: holds {_describe(obj)}, not a state_dict (a dict of '
        f'tensors, or a dict wrapping one under one of {list(WRAPPER_KEYS)})')
  if all(k.startswith('module.') for k in state):
    state = {k[len('module.'):]: v for k, v in state.items()}
  return {k: _float32(k, v, where) for k, v in state.items()}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{official key: float32 array} from a torch file (see module docstring).

  Raises FileNotFoundError, or ConversionError naming `path` when the file
  is not a torch checkpoint or holds no state_dict.
  """
  torch = _torch()
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # torch raises UnpicklingError, RuntimeError, EOFError, ... here.
    raise ConversionError(f'{path}: not a readable PyTorch checkpoint '
                          f'({_load_failure(e)})') from None
  return state_dict_arrays(obj, path)


def infer_sizes(state: dict, path: str = '<state_dict>') -> dict:
  """{nf, embed_dim, n_down, n_blocks} read off the official key shapes."""
  stem = state.get(PREFIX + 'model.1.weight')
  plane = state.get(HYPERPLANE_KEY)
  missing = [k for k, v in ((PREFIX + 'model.1.weight', stem),
                            (HYPERPLANE_KEY, plane)) if v is None]
  if missing:
    raise ConversionError(
        f'{path}: not the official H: missing {missing} (found keys: '
        f'{sorted(state)[:6]}{" ..." if len(state) > 6 else ""})')
  if stem.ndim != 4 or plane.ndim != 1:
    raise ConversionError(f'{path}: {PREFIX}model.1.weight has shape '
                          f'{stem.shape} and {HYPERPLANE_KEY} {plane.shape}; '
                          'expected a 4-d conv kernel and a vector')
  # Sequential indices: 1 stem conv, 3 + 2i strided convs, then blocks.
  block_re = re.compile(re.escape(PREFIX) + r'model\.(\d+)\.conv_block\.')
  plain_re = re.compile(re.escape(PREFIX) + r'model\.(\d+)\.(weight|bias)$')
  blocks = {int(m.group(1)) for m in map(block_re.match, state) if m}
  plain = {int(m.group(1)) for m in map(plain_re.match, state)
           if m and int(m.group(1)) >= 3}
  if blocks:
    n_down = max(0, (min(blocks) - 3) // 2)
  else:
    n_down = (max(plain) - 3) // 2 + 1 if plain else 0
  return {'nf': int(stem.shape[0]), 'embed_dim': int(plane.shape[0]) - 1,
          'n_down': n_down, 'n_blocks': len(blocks)}


def model_kwargs(sizes: dict, negative_slope: float = 1.0) -> dict:
  """OrderingNet fields of the official H with these sizes.

  Hashable values only (mean/std as tuples), so `OrderingNet(**kwargs)` can
  be a static argument of `jax.jit`; a JSON round trip of the saved config
  gives lists back, which `OrderingNet` turns into tuples again.
  """
  return {'nf': sizes['nf'], 'embed_dim': sizes['embed_dim'],
          'n_down': sizes['n_down'], 'n_blocks': sizes['n_blocks'],
          'negative_slope': float(negative_slope), 'channel_order': 'bgr',
          'mean': tuple(ordering.IMAGENET_MEAN),
          'std': tuple(ordering.IMAGENET_STD)}


def _limited(items, n=12) -> str:
  items = list(items)
  more = f' and {len(items) - n} more' if len(items) > n else ''
  return ', '.join(items[:n]) + more


def to_flax(state: dict, kwargs: dict, path: str = '<state_dict>'):
  """(params, hyperplane f32[D+1]) for OrderingNet(**kwargs).

  Every official key must map to a parameter of the expected shape; the
  error lists missing, unknown and mis-shaped keys together.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  model = ordering.OrderingNet(**kwargs)
  side = ordering.min_side(model.n_down)
  try:
    abstract = jax.eval_shape(model.init, jax.random.key(0),
                              jnp.zeros((1, side, side, 6), jnp.float32))
  except ValueError as e:
    raise ConversionError(f'{path}: the sizes read off the tensors '
                          f'({kwargs}) do not make an OrderingNet: {e}'
                          ) from None
  expected_params = abstract['params']
  # Official key -> (flax path, transform, expected torch shape).
  table = {}
  for prefix, flax_path in ordering.official_param_names(
      model.n_down, model.n_blocks).items():
    node = expected_params
    for part in flax_path:
      node = node[part]
    kh, kw, cin, cout = node['kernel'].shape
    table[f'{PREFIX}{prefix}.weight'] = (flax_path + ('kernel',),
                                         (cout, cin, kh, kw))
    table[f'{PREFIX}{prefix}.bias'] = (flax_path + ('bias',), (cout,))
  table[HYPERPLANE_KEY] = (None, (model.embed_dim + 1,))
  missing = sorted(set(table) - set(state))
  unknown = sorted(set(state) - set(table))
  bad = sorted(f'{k} {tuple(state[k].shape)} (expected {table[k][1]})'
               for k in set(table) & set(state)
               if tuple(state[k].shape) != table[k][1])
  if missing or unknown or bad:
    parts = []
    if missing:
      parts.append(f'missing keys: {_limited(missing)}')
    if unknown:
      parts.append(f'unknown keys: {_limited(unknown)}')
    if bad:
      parts.append(f'shape mismatches: {_limited(bad)}')
    raise ConversionError(f'{path}: does not match the official H with '
                          f'{_sizes_text(kwargs)}; {"; ".join(parts)}')
  params = {}
  for key, (flax_path, _) in table.items():
    if flax_path is None:
      continue
    value = state[key]
    if flax_path[-1] == 'kernel':
      value = np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
    node = params
    for part in flax_path[:-1]:
      node = node.setdefault(part, {})
    node[flax_path[-1]] = jnp.asarray(value, jnp.float32)
  hyperplane = jnp.asarray(state[HYPERPLANE_KEY], jnp.float32)
  return params, hyperplane


def _sizes_text(kwargs: dict) -> str:
  return ', '.join(f'{k}={kwargs[k]}' for k in ('nf', 'embed_dim', 'n_down',
                                                  'n_blocks'))


def stage1_config(kwargs: dict, source: str, sha256: str) -> dict:
  """The config saved with a converted H (what stage 2 and `order` read)."""
  return {
      'stage': 'ordering', 'seed': 0, 'precision': 'float32',
      'model': {'name': 'hypercut', 'kwargs': dict(kwargs)},
      'optim': dict(OFFICIAL_OPTIM),
      'loss': {'form': 'official'},
      'input': {'crop': OFFICIAL_CROP},
      'converted_from': {'file': os.path.abspath(source), 'sha256': sha256,
                         'format': 'official HyperCUT torch state_dict'},
  }


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def write_checkpoint(output: str, params, hyperplane, config: dict, *,
                     overwrite: bool = False) -> str:
  """Writes `output/checkpoints/0/` with the trainer's checkpoint functions.

  Returns the checkpoints directory. An existing `output/checkpoints` is an
  error unless `overwrite` (then it is replaced).
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import checkpoint as ckpt_lib
  from hypercut_jax.train import optim as optim_lib
  from hypercut_jax.train import state as state_lib
  # pylint: enable=g-import-not-at-top
  output = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(output) and not os.path.isdir(output):
    raise FileExistsError(f'--output={output}: exists and is not a directory')
  ckpt_dir = os.path.join(output, 'checkpoints')
  if os.path.lexists(ckpt_dir):
    if not overwrite:
      raise FileExistsError(f'{ckpt_dir}: exists; pass --overwrite to '
                            'replace it')
    if not os.path.isdir(ckpt_dir) or any(
        not (n.isdigit() or '.orbax-checkpoint-tmp' in n)
        for n in os.listdir(ckpt_dir)):
      raise FileExistsError(f'{ckpt_dir}: holds files that are not orbax '
                            'steps; not replacing it')
    shutil.rmtree(ckpt_dir)
  optim = ml_collections.ConfigDict(config['optim'])
  tx = optim_lib.make_optimizer(optim, optax.constant_schedule(optim.lr))
  state = state_lib.create(params, tx, hyperplane=hyperplane)
  mngr = ckpt_lib.make_manager(ckpt_dir, keep=1, async_save=False)
  try:
    ckpt_lib.save(mngr, 0, state, config=config)
    mngr.wait_until_finished()
  finally:
    mngr.close()
  return ckpt_dir


def from_state_dict(state: dict, where: str = '<state_dict>', *,
                    nf: int | None = None, embed_dim: int | None = None,
                    n_down: int | None = None, n_blocks: int | None = None,
                    negative_slope: float = 1.0, flag: str = ''):
  """(sizes, kwargs, params, hyperplane) of the official H in `state`.

  The one path from {official key: array} (`read_state_dict`,
  `state_dict_arrays`) to Flax: sizes read off the tensors (nf, embed_dim,
  n_down, n_blocks given here must agree), `model_kwargs`, `to_flax`.
  `flag` prefixes the size names in a disagreement ('--' for the CLI).
  """
  sizes = infer_sizes(state, where)
  given = {'nf': nf, 'embed_dim': embed_dim, 'n_down': n_down,
           'n_blocks': n_blocks}
  clash = [f'{flag}{k}={v} but the tensors say {sizes[k]}'
           for k, v in given.items() if v is not None and v != sizes[k]]
  if clash:
    raise ConversionError(f'{where}: {"; ".join(clash)}')
  kwargs = model_kwargs(sizes, negative_slope)
  params, hyperplane = to_flax(state, kwargs, where)
  return sizes, kwargs, params, hyperplane


def load_official(state_dict_or_path, *, nf: int | None = None,
                  embed_dim: int | None = None, n_down: int | None = None,
                  n_blocks: int | None = None, negative_slope: float = 1.0,
                  precision: str = 'float32'):
  """(model, params, hyperplane) of an official H, in memory (no orbax).

  state_dict_or_path: a path to the authors' .pth (read with the safe
  loader, `torch.load(weights_only=True)`), or what torch.load returns: a
  mapping of official key -> tensor (torch tensors, numpy or jax arrays),
  possibly wrapped (WRAPPER_KEYS) or with DataParallel's `module.` prefix.
  nf/embed_dim/n_down/n_blocks: checks against the sizes the tensors say;
  negative_slope: the stem/downsampling activation (default 1.0, the
  official `LeakyReLU(True)`); precision: compute dtype of the model, as in
  `inference.load`.

  Returns what `convert` followed by `inference.load_ordering` gives: the
  `OrderingNet` (the same fields, hashable), its params (a tree of float32
  jax arrays) and the hyperplane (f32[embed_dim + 1]). Raises
  FileNotFoundError for a missing file and ConversionError (a ValueError)
  naming the missing, unknown or mis-shaped keys, or saying why the input
  is not a state_dict.
  """
  # pylint: disable=g-import-not-at-top
  from hypercut_jax.train import ordering as ordering_lib
  # pylint: enable=g-import-not-at-top
  if isinstance(state_dict_or_path, (str, os.PathLike)):
    where = os.fspath(state_dict_or_path)
    state = read_state_dict(where)
  elif isinstance(state_dict_or_path, Mapping):
    where = '<state_dict>'
    state = state_dict_arrays(state_dict_or_path, where)
  else:
    raise ConversionError(
        'load_official: expected a path or a state_dict (a mapping of '
        'official key -> tensor); got an object of type '
        f'{type(state_dict_or_path).__name__}')
  _, kwargs, params, hyperplane = from_state_dict(
      state, where, nf=nf, embed_dim=embed_dim, n_down=n_down,
      n_blocks=n_blocks, negative_slope=negative_slope)
  model = ordering_lib.make_model(kwargs, precision)
  return model, params, hyperplane


def convert(torch_checkpoint: str, output: str, *, nf: int | None = None,
            embed_dim: int | None = None, n_down: int | None = None,
            n_blocks: int | None = None, negative_slope: float = 1.0,
            overwrite: bool = False) -> dict:
  """Reads, checks, maps and writes; returns a summary dict."""
  import jax  # pylint: disable=g-import-not-at-top
  state = read_state_dict(torch_checkpoint)
  sizes, kwargs, params, hyperplane = from_state_dict(
      state, torch_checkpoint, nf=nf, embed_dim=embed_dim, n_down=n_down,
      n_blocks=n_blocks, negative_slope=negative_slope, flag='--')
  config = stage1_config(kwargs, torch_checkpoint, _sha256(torch_checkpoint))
  ckpt_dir = write_checkpoint(output, params, hyperplane, config,
                              overwrite=overwrite)
  n_params = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))
  return {'checkpoints': ckpt_dir, 'sizes': sizes, 'n_params': n_params,
          'negative_slope': float(negative_slope)}


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m hypercut_jax.convert',
      description='Official HyperCUT PyTorch H checkpoint -> orbax stage-1 '
      'checkpoint.')
  p.add_argument('--torch_checkpoint', required=True,
                 help='the .pth file (state_dict of the official HyperCUT)')
  p.add_argument('--output', required=True,
                 help='output directory (gets checkpoints/0/)')
  for name in ('nf', 'embed_dim', 'n_down', 'n_blocks'):
    p.add_argument(f'--{name}', type=int, default=None,
                   help='check against the size read off the tensors')
  p.add_argument('--negative_slope', type=float, default=1.0,
                 help='slope of the stem/downsampling activations (default '
                 '1.0 = official LeakyReLU(True), the identity)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace an existing output/checkpoints')
  return p


def main(argv=None) -> int:
  """CLI entry point; 0 on success, 1 with a one-line error otherwise."""
  args = _parser().parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  try:
    out = convert(args.torch_checkpoint, args.output, nf=args.nf,
                  embed_dim=args.embed_dim, n_down=args.n_down,
                  n_blocks=args.n_blocks, negative_slope=args.negative_slope,
                  overwrite=args.overwrite)
  except (ValueError, OSError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  s = out['sizes']
  print(f'converted {args.torch_checkpoint} (nf={s["nf"]}, embed_dim='
        f'{s["embed_dim"]}, n_down={s["n_down"]}, n_blocks={s["n_blocks"]}, '
        f'negative_slope={out["negative_slope"]:g}; {out["n_params"]:,} '
        f'params) -> {out["checkpoints"]}/0')
  return 0


if __name__ == '__main__':
  sys.exit(main())

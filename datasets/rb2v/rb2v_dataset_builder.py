"""RB2V (HyperCUT, CVPR 2023): real blurry images with 7 sharp frames each.

Three configs, one per domain: `street`, `face`, `hand`. Build with

  tfds build datasets/rb2v --config=street --manual_dir=DIR --data_dir=OUT

(TensorFlow is not needed). See README.md beside this file for the layout of
`manual_dir` and how `metadata.json` is read.
"""
import dataclasses
import json
import os
import re

from etils import epath
import tensorflow_datasets as tfds

from hypercut_datasets import builder_utils

N_FRAMES = builder_utils.N_FRAMES

# `order` values. The official loader keeps the stored order for 'keep' and
# 'ignore' and reverses it for 'reverse'; 'forward'/'backward' are our aliases.
FORWARD_ORDERS = ('keep', 'ignore', 'forward')
REVERSE_ORDERS = ('reverse', 'backward')

# metadata `partition` -> TFDS split name.
PARTITIONS = {'train': 'train', 'test': 'test', 'val': 'validation'}

# config name -> the folder name inside manual_dir (matched case-insensitively).
ROOTS = {'street': 'Street', 'face': 'Face', 'hand': 'Hand'}

_FRAME_KEY = re.compile(r'^frame(\d+)_path$')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One metadata entry, resolved: absolute paths, sharp frames in time order."""
  id: str
  split: str
  blur_path: str
  sharp_paths: tuple[str, ...]


def find_root(manual_dir, config_name):
  """Returns `<manual_dir>/<Street|Face|Hand>` (any letter case) holding metadata.json."""
  manual_dir = builder_utils.require_dir(manual_dir, 'RB2V manual_dir')
  want = ROOTS[config_name]
  for name in sorted(os.listdir(manual_dir)):
    path = os.path.join(manual_dir, name)
    if name.lower() == want.lower() and os.path.isdir(path):
      return path
  raise FileNotFoundError(
      f'{os.path.join(manual_dir, want)}: RB2V-{want} folder not found in manual_dir '
      f'(found: {sorted(os.listdir(manual_dir))}). Expected '
      f'<manual_dir>/{want}/metadata.json and the sequence folders next to it.')


def _order_is_reversed(order, where):
  if not isinstance(order, str):
    raise ValueError(f'{where}: order={order!r} is not a string.')
  value = order.strip().lower()
  if value in FORWARD_ORDERS:
    return False
  if value in REVERSE_ORDERS:
    return True
  if value == 'random':
    raise ValueError(
        f'{where}: order={order!r}. "random" is a training-time augmentation of the '
        'official loader, not a stored order; a prepared dataset must be '
        f'deterministic. Use one of {FORWARD_ORDERS + REVERSE_ORDERS}.')
  raise ValueError(f'{where}: unknown order={order!r}; expected one of '
                   f'{FORWARD_ORDERS} (stored in time order) or {REVERSE_ORDERS} '
                   '(stored reversed).')


def _resolve(root, entry, key, where):
  rel = entry[key]
  if not isinstance(rel, str) or not rel:
    raise ValueError(f'{where}: {key}={rel!r} is not a path.')
  path = os.path.normpath(os.path.join(root, rel))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{where}: {key}={rel!r} points to {path}, which does not exist.')
  return path


def read_metadata(root):
  """Parses and checks `<root>/metadata.json`.

  Accepts the official form `{"name": ..., "frame_per_seq": 7, "data": [...]}`
  and a bare list of entries. Every entry needs `id`, `order`, `partition`,
  `blur_path` and exactly `frame001_path`..`frame007_path` (paths relative to
  `root`); every path must exist.

  Returns:
    list of `Entry`, in file order.
  """
  path = os.path.join(root, 'metadata.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: RB2V metadata.json not found.')
  try:
    with open(path, encoding='utf-8') as f:
      meta = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not valid JSON ({e}).') from e
  if isinstance(meta, dict):
    if 'data' not in meta:
      raise ValueError(f'{path}: top-level object has no "data" list of entries.')
    fps = meta.get('frame_per_seq', N_FRAMES)
    if fps != N_FRAMES:
      raise ValueError(f'{path}: frame_per_seq={fps!r}; expected {N_FRAMES}.')
    items = meta['data']
  else:
    items = meta
  if not isinstance(items, list) or not items:
    raise ValueError(f'{path}: expected a non-empty list of entries.')

  entries, seen = [], set()
  for i, item in enumerate(items):
    where = f'{path}: entry {i}'
    if not isinstance(item, dict):
      raise ValueError(f'{where} is a {type(item).__name__}; expected an object.')
    where += f' (id={item.get("id")!r})'
    frames = sorted(int(m.group(1)) for k in item if (m := _FRAME_KEY.match(k)))
    if frames != list(range(1, N_FRAMES + 1)):
      raise ValueError(f'{where}: sharp frame fields {frames} (frameNNN_path); expected '
                       f'exactly frame001_path..frame{N_FRAMES:03d}_path ({N_FRAMES} frames).')
    for key in ('id', 'order', 'partition', 'blur_path'):
      if key not in item:
        raise ValueError(f'{where}: missing field {key!r}.')
    ex_id = item['id']
    if not isinstance(ex_id, str) or not ex_id:
      raise ValueError(f'{where}: id must be a non-empty string.')
    if ex_id in seen:
      raise ValueError(f'{where}: duplicate id {ex_id!r}.')
    seen.add(ex_id)
    if item['partition'] not in PARTITIONS:
      raise ValueError(f'{where}: partition={item["partition"]!r}; '
                       f'expected one of {sorted(PARTITIONS)}.')
    reverse = _order_is_reversed(item['order'], where)
    blur = _resolve(root, item, 'blur_path', where)
    sharp = [_resolve(root, item, f'frame{t:03d}_path', where) for t in range(1, N_FRAMES + 1)]
    if reverse:
      sharp.reverse()
    entries.append(Entry(ex_id, PARTITIONS[item['partition']], blur, tuple(sharp)))
  return entries


class Builder(builder_utils.PngBuilder):
  """RB2V street / face / hand: blurry image + 7 sharp frames in time order."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  code_path = epath.Path(__file__)  # see builder_utils.PngBuilder.
  HOMEPAGE = 'https://github.com/VinAIResearch/HyperCUT'
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='street', description='RB2V-Street (9000 train / 2053 test).'),
      tfds.core.BuilderConfig(name='face', description='RB2V-Face (8000 train / 2157 test).'),
      tfds.core.BuilderConfig(name='hand', description='RB2V-Hand (12000 train / 4722 test).'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download RB2V with the official script (github.com/VinAIResearch/HyperCUT,
  dataset/download_RB2V.sh), unzip it, and place the three domain folders in
  `manual_dir`:
    <manual_dir>/Street/metadata.json, <manual_dir>/Street/<seq>/blur/0000.png,
    <manual_dir>/Street/<seq>/sharp/0000_{1..7}.png, and the same for Face/ and Hand/.
  Paths inside metadata.json are relative to the folder holding it.
  """

  def _split_generators(self, dl_manager):
    root = find_root(builder_utils.manual_dir(dl_manager), self.builder_config.name)
    by_split = {}
    for entry in read_metadata(root):
      by_split.setdefault(entry.split, []).append(entry)
    return {split: self._generate_examples(entries) for split, entries in by_split.items()}

  def _generate_examples(self, entries):
    for e in entries:
      blur, sharp, _ = builder_utils.load_example_images(e.blur_path, e.sharp_paths)
      yield e.id, {'blur': blur, 'sharp': sharp, 'id': e.id}

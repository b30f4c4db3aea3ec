"""REDS 120 fps -> Blur2Vid examples: 7 consecutive sharp frames and their average.

Configs: `linear` (default; blur = mean of the 7 frames in linear RGB) and
`srgb` (mean of the stored sRGB values). Both take every 7th window
(stride 7, no overlap); `RedsConfig(name=..., stride=..., blur_space=...)`
makes other variants. Build with

  tfds build datasets/reds --config=linear --manual_dir=DIR --data_dir=OUT

(TensorFlow is not needed). See README.md beside this file.
"""
import dataclasses
import os

import numpy as np
from etils import epath
import tensorflow_datasets as tfds

from hypercut_datasets import builder_utils
from hypercut_jax.data import synthetic

N_FRAMES = builder_utils.N_FRAMES
BLUR_SPACES = ('linear', 'srgb')
# TFDS split -> the REDS 120 fps folder holding its sequences.
SPLIT_FOLDERS = {'train': 'train_orig', 'test': 'val_orig'}


@dataclasses.dataclass(eq=False)
class RedsConfig(tfds.core.BuilderConfig):
  """REDS variant.

  Attributes:
    stride: frames between the first frames of consecutive windows (>= 1; 7 =
      non-overlapping windows).
    blur_space: 'linear' averages in linear RGB (sRGB decoded, averaged,
      re-encoded); 'srgb' averages the stored 8-bit values.
  """
  stride: int = N_FRAMES
  blur_space: str = 'linear'


def average_frames(frames, blur_space='linear'):
  """Synthesises the blurry image of a window.

  Args:
    frames: uint8[T,H,W,3] sRGB frames.
    blur_space: 'linear' (decode sRGB, average, re-encode) or 'srgb'.

  Returns:
    uint8[H,W,3], rounded to nearest.
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4:
    raise ValueError(f'frames must be uint8[T,H,W,3], got {frames.dtype}{list(frames.shape)}.')
  if blur_space == 'srgb':
    mean = frames.mean(axis=0, dtype=np.float64) / 255.0
  elif blur_space == 'linear':
    lut = synthetic.srgb_to_linear(np.arange(256) / 255.0)
    acc = np.zeros(frames.shape[1:], np.float64)
    for f in frames:  # one frame at a time keeps memory at 2 float copies.
      acc += lut[f]
    mean = synthetic.linear_to_srgb(acc / len(frames))
  else:
    raise ValueError(f'blur_space={blur_space!r}; expected one of {BLUR_SPACES}.')
  return np.clip(np.floor(mean * 255.0 + 0.5), 0, 255).astype(np.uint8)


def find_split_dir(manual_dir, folder):
  """`<manual_dir>/<folder>` or, as the zips unpack, `<manual_dir>/<train|val>/<folder>`."""
  manual_dir = builder_utils.require_dir(manual_dir, 'REDS manual_dir')
  candidates = [os.path.join(manual_dir, folder),
                os.path.join(manual_dir, folder.split('_')[0], folder)]
  for path in candidates:
    if os.path.isdir(path):
      return path
  raise FileNotFoundError(f'{candidates[0]}: REDS 120 fps folder not found (also looked for '
                          f'{candidates[1]}). Unzip {folder}_part*.zip into manual_dir.')


def list_frames(seq_dir):
  """Returns the frame paths of one sequence, in time order.

  Frames must be named `%08d.png` with consecutive numbers; a gap or any other
  `.png` name is an error naming the file.
  """
  indices = sorted(builder_utils.frame_numbers(
      seq_dir, 'REDS 120 fps frames are named %08d.png (e.g. 00000000.png).'))
  if len(indices) < N_FRAMES:
    raise ValueError(f'{seq_dir}: {len(indices)} frames; a sequence needs at least {N_FRAMES}.')
  for want, have in zip(range(indices[0], indices[0] + len(indices)), indices):
    if want != have:
      raise FileNotFoundError(f'{os.path.join(seq_dir, f"{want:08d}.png")}: frame missing '
                              f'(the sequence has frames {indices[0]}..{indices[-1]} with a gap).')
  return [(i, os.path.join(seq_dir, f'{i:08d}.png')) for i in indices]


def list_windows(split_dir, stride):
  """[(id, [7 frame paths])] for every window of every sequence folder in `split_dir`."""
  folder = os.path.basename(os.path.normpath(split_dir))
  seqs = sorted(n for n in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, n)))
  if not seqs:
    raise FileNotFoundError(f'{split_dir}: no sequence folders (expected {folder}/<seq>/%08d.png).')
  windows = []
  for seq in seqs:
    frames = list_frames(os.path.join(split_dir, seq))
    for s in range(0, len(frames) - N_FRAMES + 1, stride):
      window = frames[s:s + N_FRAMES]
      windows.append((f'{folder}/{seq}/{window[0][0]:08d}', [p for _, p in window]))
  return windows


class Builder(builder_utils.PngBuilder):
  """REDS 120 fps: blur = mean of 7 consecutive frames; test = official validation."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  code_path = epath.Path(__file__)  # see builder_utils.PngBuilder.
  HOMEPAGE = 'https://seungjunnah.github.io/Datasets/reds.html'
  BUILDER_CONFIG_CLASS = RedsConfig
  BUILDER_CONFIGS = [
      RedsConfig(name='linear', description='stride 7; blur averaged in linear RGB.'),
      RedsConfig(name='srgb', blur_space='srgb', description='stride 7; blur averaged in sRGB.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the REDS 120 fps frames from https://seungjunnah.github.io/Datasets/reds.html
  (train_orig_part0..15.zip and val_orig_part0..1.zip) and unzip them so that
  `manual_dir` holds
    train_orig/<seq>/%08d.png   (240 sequences, 500 frames each, 720x1280)
    val_orig/<seq>/%08d.png     (30 sequences; the test split)
  The zips' own layout, train/train_orig/... and val/val_orig/..., works too.
  """

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    if not isinstance(cfg.stride, int) or cfg.stride < 1:
      raise ValueError(f'RedsConfig.stride={cfg.stride!r}; expected an int >= 1.')
    if cfg.blur_space not in BLUR_SPACES:
      raise ValueError(f'RedsConfig.blur_space={cfg.blur_space!r}; expected one of {BLUR_SPACES}.')
    manual_dir = builder_utils.manual_dir(dl_manager)
    # List (and check the names of) every split before writing anything.
    windows = {split: list_windows(find_split_dir(manual_dir, folder), cfg.stride)
               for split, folder in SPLIT_FOLDERS.items()}
    return {split: self._generate_examples(w) for split, w in windows.items()}

  def _generate_examples(self, windows):
    blur_space = self.builder_config.blur_space
    for ex_id, paths in windows:
      sharp, images = [], []
      for k, path in enumerate(paths):
        data, image = builder_utils.read_png(path, what=f'sharp frame {k}')
        if images:
          builder_utils.check_same_size(paths[0], images[0].shape, path, image.shape)
        sharp.append(data)
        images.append(image)
      blur = builder_utils.encode_png(average_frames(np.stack(images), blur_space))
      yield ex_id, {'blur': blur, 'sharp': sharp, 'id': ex_id}

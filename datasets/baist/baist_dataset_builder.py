"""B-Aist++ (Animation-from-Blur, Zhong et al. ECCV 2022) for Blur2Vid.

One example per blurry frame i in 40..N-41 of each video (N = number of
blurry frames), as in the official loader: the blurry image, its 7 sharp
frames, the motion guidance (as per-pixel class labels) and the dancer's
bounding box. Train / test = the dancer-disjoint video lists of
Animation-from-Blur (`train_videos.txt`, `test_videos.txt` beside this file).
Build with

  tfds build datasets/baist --manual_dir=DIR --data_dir=OUT

(TensorFlow is not needed). See README.md beside this file.
"""
import dataclasses
import logging
import os
import pickle

import numpy as np
from etils import epath
import tensorflow_datasets as tfds

from hypercut_datasets import builder_utils

N_FRAMES = builder_utils.N_FRAMES
MARGIN = 40  # frames skipped at both ends of every video (official loader).
SPLITS = ('train', 'test')

# Trend pair (channel 0, channel 1) -> class label, as Animation-from-Blur's
# `guidance2label`: 0 static, 1 (1,-1), 2 (-1,-1), 3 (-1,1), 4 (1,1).
GUIDANCE_CLASSES = {(0, 0): 0, (1, -1): 1, (-1, -1): 2, (-1, 1): 3, (1, 1): 4}


@dataclasses.dataclass(frozen=True)
class Frame:
  """Files of one example (absolute paths)."""
  id: str
  blur: str
  sharp: tuple[str, ...]
  anno: str
  trend: str


def read_video_list(split):
  """Video folder names of `split` ('train' or 'test'), from the text file beside this module."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f'{split}_videos.txt')
  with open(path, encoding='utf-8') as f:
    names = [line.strip() for line in f]
  return [n for n in names if n and not n.startswith('#')]


def find_root(manual_dir):
  """`<manual_dir>/b-aist++` if present (the archive's folder), else `manual_dir` itself."""
  manual_dir = builder_utils.require_dir(manual_dir, 'B-Aist++ manual_dir')
  nested = os.path.join(manual_dir, 'b-aist++')
  return nested if os.path.isdir(nested) else manual_dir


def count_blur_frames(video_dir):
  """N for one video; `blur/` must hold exactly 00000000.png..{N-1:08d}.png."""
  blur_dir = builder_utils.require_dir(os.path.join(video_dir, 'blur'), 'B-Aist++ blur folder')
  indices = set(builder_utils.frame_numbers(
      blur_dir, 'blurry frames are named %08d.png, numbered from 00000000.png.'))
  for i in range(len(indices)):
    if i not in indices:
      raise FileNotFoundError(f'{os.path.join(blur_dir, f"{i:08d}.png")}: blurry frame missing '
                              f'({len(indices)} frames found, numbered up to {max(indices):08d}).')
  return len(indices)


def list_frames(video_dir, video):
  """The examples of one video: frames MARGIN..N-MARGIN-1 that have a bbox annotation.

  Frames without `blur_anno/%08d.pkl` are skipped, as the official loader does;
  any other missing file is an error naming it.

  Returns:
    (frames: list of Frame, skipped: int).
  """
  n = count_blur_frames(video_dir)
  frames, skipped = [], 0
  for i in range(MARGIN, n - MARGIN):
    anno = os.path.join(video_dir, 'blur_anno', f'{i:08d}.pkl')
    if not os.path.isfile(anno):
      skipped += 1
      continue
    sharp = tuple(os.path.join(video_dir, 'sharp', f'{i:08d}_{j:03d}.png') for j in range(N_FRAMES))
    for path in sharp:
      if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: sharp frame missing (blurry frame {i:08d} of {video} '
                                f'needs {i:08d}_000.png..{i:08d}_{N_FRAMES - 1:03d}.png).')
    extra = os.path.join(video_dir, 'sharp', f'{i:08d}_{N_FRAMES:03d}.png')
    if os.path.exists(extra):
      raise ValueError(f'{extra}: more than {N_FRAMES} sharp frames for blurry frame {i:08d} '
                       f'of {video}; expected exactly {N_FRAMES}.')
    trend = os.path.join(video_dir, 'trend+_avg', f'{i:08d}_trend.npy')
    if not os.path.isfile(trend):
      raise FileNotFoundError(
          f'{trend}: motion guidance missing for blurry frame {i:08d} of {video}.')
    blur = os.path.join(video_dir, 'blur', f'{i:08d}.png')
    frames.append(Frame(f'{video}/{i:08d}', blur, sharp, anno, trend))
  return frames, skipped


def read_bbox(path, height, width):
  """bbox pickle -> `tfds.features.BBox` normalised to the image, clipped to it.

  The pickle holds a dict whose 'bbox' is pascal_voc pixels
  `[x_min, y_min, x_max, y_max]` (optionally a 5th value, a score).
  """
  try:
    with open(path, 'rb') as f:
      anno = pickle.load(f)
  except Exception as e:  # pickle raises many types on bad input.
    raise ValueError(f'{path}: bbox annotation does not unpickle ({type(e).__name__}: {e}).') from e
  if not isinstance(anno, dict) or 'bbox' not in anno:
    raise ValueError(f'{path}: expected a dict with a "bbox" entry, got {type(anno).__name__}.')
  try:
    box = np.asarray(anno['bbox'], np.float64).reshape(-1)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{path}: bbox {anno["bbox"]!r} is not numeric.') from e
  if box.size not in (4, 5) or not np.all(np.isfinite(box[:4])):
    raise ValueError(
        f'{path}: bbox {box.tolist()}; expected [x_min, y_min, x_max, y_max(, score)].')
  x0, x1 = np.clip(box[[0, 2]], 0, width)
  y0, y1 = np.clip(box[[1, 3]], 0, height)
  if x1 <= x0 or y1 <= y0:
    raise ValueError(f'{path}: bbox {box[:4].tolist()} is empty inside the {height}x{width} image.')
  return tfds.features.BBox(ymin=y0 / height, xmin=x0 / width, ymax=y1 / height, xmax=x1 / width)


def trend_to_labels(trend, path='trend'):
  """f[h,w,2] trend in {-1,0,1} -> i32[h,w] class labels (see GUIDANCE_CLASSES)."""
  trend = np.asarray(trend)
  if trend.ndim != 3 or trend.shape[-1] != 2 or trend.shape[0] < 1 or trend.shape[1] < 1:
    raise ValueError(f'{path}: guidance shape {trend.shape}; expected (h, w, 2).')
  if not np.issubdtype(trend.dtype, np.number) or not np.all(np.isin(trend, (-1, 0, 1))):
    raise ValueError(f'{path}: guidance values must be -1, 0 or 1.')
  code = (trend[..., 0].astype(np.int64) + 1) * 3 + (trend[..., 1].astype(np.int64) + 1)
  table = np.full(9, -1, np.int32)
  for (a, b), label in GUIDANCE_CLASSES.items():
    table[(a + 1) * 3 + (b + 1)] = label
  labels = table[code]
  if np.any(labels < 0):
    bad = trend[labels < 0][0]
    raise ValueError(f'{path}: guidance pair {tuple(bad.tolist())} is not one of '
                     f'{sorted(GUIDANCE_CLASSES)}.')
  return labels


def resize_nearest(labels, height, width):
  """i32[h,w] -> i32[height,width], source index floor(i * h / height) (OpenCV INTER_NEAREST)."""
  h, w = labels.shape
  rows = (np.arange(height) * h) // height
  cols = (np.arange(width) * w) // width
  return labels[rows][:, cols]


def read_guidance(path, height, width):
  """`%08d_trend.npy` -> i32[height,width] class labels at the image's size."""
  try:
    trend = np.load(path, allow_pickle=False)
  except Exception as e:
    raise ValueError(
        f'{path}: guidance does not load as a .npy array ({type(e).__name__}: {e}).') from e
  return resize_nearest(trend_to_labels(trend, path), height, width)


class Builder(builder_utils.PngBuilder):
  """B-Aist++: blurry dancer frames, 7 sharp frames, motion guidance, bbox."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  code_path = epath.Path(__file__)  # see builder_utils.PngBuilder.
  HOMEPAGE = 'https://github.com/zzh-tech/Animation-from-Blur'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download B-Aist++ (link in github.com/zzh-tech/Animation-from-Blur, README,
  "Preparation") and unzip it into `manual_dir`, so that it holds
    b-aist++/<video>/blur/%08d.png, b-aist++/<video>/sharp/%08d_%03d.png,
    b-aist++/<video>/blur_anno/%08d.pkl, b-aist++/<video>/trend+_avg/%08d_trend.npy
  (the video folders directly in manual_dir work too).
  """

  def _extra_features(self):
    return {
        'guidance': tfds.features.Tensor(
            shape=(None, None), dtype=np.int32, encoding=tfds.features.Encoding.ZLIB,
            doc='i32[H,W] motion guidance class: 0 static, 1 (1,-1), 2 (-1,-1), '
                '3 (-1,1), 4 (1,1) (trend channels 0, 1).'),
        'bbox': tfds.features.BBoxFeature(
            doc='dancer box, normalised (ymin, xmin, ymax, xmax).'),
    }

  def _split_generators(self, dl_manager):
    root = find_root(builder_utils.manual_dir(dl_manager))
    generators = {}
    for split in SPLITS:
      videos = read_video_list(split)
      present = [v for v in videos if os.path.isdir(os.path.join(root, v))]
      missing = [v for v in videos if v not in present]
      if not present:
        raise FileNotFoundError(
            f'{root}: none of the {len(videos)} {split} videos of B-Aist++ found '
            f'(e.g. {os.path.join(root, videos[0])}).')
      if missing:
        logging.warning('B-Aist++ %s: %d of %d listed videos not in %s, skipped (first: %s).',
                        split, len(missing), len(videos), root, missing[:3])
      frames, skipped = [], 0
      for video in present:
        f, s = list_frames(os.path.join(root, video), video)
        frames += f
        skipped += s
      if skipped:
        logging.info('B-Aist++ %s: %d frames without a bbox annotation skipped.', split, skipped)
      if not frames:
        raise ValueError(f'{root}: the {split} videos yield no examples (each needs more than '
                         f'{2 * MARGIN} blurry frames and bbox annotations).')
      generators[split] = self._generate_examples(frames)
    return generators

  def _generate_examples(self, frames):
    for fr in frames:
      blur, sharp, (h, w) = builder_utils.load_example_images(fr.blur, fr.sharp)
      yield fr.id, {
          'blur': blur,
          'sharp': sharp,
          'id': fr.id,
          'guidance': read_guidance(fr.trend, h, w),
          'bbox': read_bbox(fr.anno, h, w),
      }

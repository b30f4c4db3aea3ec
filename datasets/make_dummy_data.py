r"""Writes the tiny `dummy_data/` trees of the three builders (deterministic).

  python -m hypercut_datasets.make_dummy_data [--only rb2v|reds|baist]

Every image is 40x48 (HxW). Sharp frame contents encode what the tests check:
pixel [0,0,0] = `marker(t)` for time index t (frame order), channel 1 is a
constant `tag` per sequence/example (which example a record came from).
"""
import argparse
import json
import os
import pickle
import shutil

import numpy as np
from PIL import Image

H, W = 40, 48
HERE = os.path.dirname(os.path.abspath(__file__))


def marker(t):
  """Value of pixel [0,0,0] of the sharp frame with time index t (t <= 20)."""
  return 5 + 12 * t


def frame(tag, t):
  """uint8[H,W,3] sharp frame `t` of the sequence `tag` (smooth, compresses well)."""
  y, x = np.mgrid[0:H, 0:W]
  img = np.empty((H, W, 3), np.uint8)
  img[..., 0] = (3 * x + 2 * y + 7 * t) % 256
  img[..., 1] = tag
  img[..., 2] = (4 * y + 11 * t + tag) % 256
  img[0, 0, 0] = marker(t)
  return img


def mean_u8(frames):
  return np.floor(np.mean(np.stack(frames), axis=0) + 0.5).astype(np.uint8)


def save_png(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image).save(path, format='PNG', optimize=True)


def _fresh(path):
  if os.path.isdir(path):
    shutil.rmtree(path)
  os.makedirs(path)
  return path


# ---------------------------------------------------------------------- RB2V
# (root folder, metadata form, [(seq, frame, partition, order, tag)])
RB2V = {
    'Street': ('dict', [('00000', '0000', 'train', 'ignore', 11),
                        ('00000', '0001', 'train', 'ignore', 12),
                        ('00001', '0000', 'train', 'reverse', 13),
                        ('00002', '0000', 'test', 'ignore', 14),
                        ('00002', '0001', 'test', 'ignore', 15)]),
    'Face': ('dict', [('00000', '0000', 'train', 'keep', 21),
                      ('00000', '0001', 'train', 'ignore', 22),
                      ('00001', '0000', 'val', 'forward', 23),
                      ('00002', '0000', 'test', 'ignore', 24)]),
    'Hand': ('list', [('00000', '0000', 'train', 'ignore', 31),
                      ('00001', '0000', 'train', 'reverse', 32),
                      ('00002', '0000', 'test', 'ignore', 33),
                      ('00002', '0001', 'test', 'ignore', 34)]),
}


def make_rb2v():
  out = _fresh(os.path.join(HERE, 'rb2v', 'dummy_data'))
  for root_name, (form, entries) in RB2V.items():
    root = os.path.join(out, root_name)
    data = []
    for seq, fr, partition, order, tag in entries:
      frames = [frame(tag, t) for t in range(7)]
      stored = frames[::-1] if order == 'reverse' else frames
      entry = {'id': f'{seq}/{fr}', 'order': order, 'partition': partition,
               'blur_path': f'{seq}/blur/{fr}.png'}
      save_png(os.path.join(root, entry['blur_path']), mean_u8(frames))
      for k, image in enumerate(stored, start=1):
        entry[f'frame{k:03d}_path'] = f'{seq}/sharp/{fr}_{k}.png'
        save_png(os.path.join(root, entry[f'frame{k:03d}_path']), image)
      data.append(entry)
    meta = {'name': root_name, 'frame_per_seq': 7, 'data': data} if form == 'dict' else data
    with open(os.path.join(root, 'metadata.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=2)


# ---------------------------------------------------------------------- REDS
# (folder, seq, number of frames, tag)
REDS = [('train_orig', '000', 15, 41), ('train_orig', '001', 8, 42), ('val_orig', '000', 7, 43)]


def make_reds():
  out = _fresh(os.path.join(HERE, 'reds', 'dummy_data'))
  for folder, seq, n, tag in REDS:
    for t in range(n):
      save_png(os.path.join(out, folder, seq, f'{t:08d}.png'), frame(tag, t))


# ------------------------------------------------------------------ B-Aist++
# video -> (number of blurry frames, tag, {frame index: bbox or None (no annotation)}).
# Frames listed get sharp/trend files; 39 and 43 (= N-40) of the first video are
# complete but outside 40..N-41, so the builder must not use them.
BAIST = {
    'gKR_sBM_c01_d28_mKR0_ch05_cropped_32X': (
        83, 51, {39: (1, 1, 20, 20), 40: np.array([4, 6, 30, 36], np.float32), 41: None,
                 42: [10.0, 2.0, 50.0, 39.5, 0.9], 43: (1, 1, 20, 20)}),
    'gWA_sBM_c01_d26_mWA0_ch06_cropped_32X': (81, 52, {40: (0, 0, 48, 40)}),
}


def trend(index):
  """f32[H/2,W/2,2] trend in {-1,0,1}: four quadrants plus a (-1,1) stripe, shifted by index."""
  h, w = H // 2, W // 2
  out = np.zeros((h, w, 2), np.float32)
  out[:h // 2, w // 2:] = (1, -1)
  out[h // 2:, :w // 2] = (-1, -1)
  out[h // 2:, w // 2:] = (1, 1)
  out[:, (index % w)] = (-1, 1)
  return out


def make_baist():
  out = _fresh(os.path.join(HERE, 'baist', 'dummy_data'))
  for video, (n, tag, annotated) in BAIST.items():
    vdir = os.path.join(out, 'b-aist++', video)
    for i in range(n):
      if i not in annotated:  # never read, only counted.
        save_png(os.path.join(vdir, 'blur', f'{i:08d}.png'), frame(tag, 0))
        continue
      frames = [frame((tag + i) % 256, t) for t in range(7)]
      save_png(os.path.join(vdir, 'blur', f'{i:08d}.png'), mean_u8(frames))
      for j, image in enumerate(frames):
        save_png(os.path.join(vdir, 'sharp', f'{i:08d}_{j:03d}.png'), image)
      os.makedirs(os.path.join(vdir, 'trend+_avg'), exist_ok=True)
      np.save(os.path.join(vdir, 'trend+_avg', f'{i:08d}_trend.npy'), trend(i))
      if annotated[i] is not None:
        os.makedirs(os.path.join(vdir, 'blur_anno'), exist_ok=True)
        with open(os.path.join(vdir, 'blur_anno', f'{i:08d}.pkl'), 'wb') as f:
          pickle.dump({'bbox': annotated[i]}, f)


MAKERS = {'rb2v': make_rb2v, 'reds': make_reds, 'baist': make_baist}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--only', choices=sorted(MAKERS))
  args = parser.parse_args()
  for name, make in MAKERS.items():
    if args.only in (None, name):
      make()
      print(f'wrote {os.path.join(HERE, name, "dummy_data")}')


if __name__ == '__main__':
  main()

"""Tests for hypercut_jax.data.augment."""
import numpy as np
import pytest

from hypercut_jax.data import augment
from hypercut_jax.data import guidance as guidance_lib
from hypercut_jax.data import synthetic

_ALL_ON = augment.AugmentConfig(brightness=0.2, contrast=0.2, saturation=0.2,
                                affine=True, max_rotate=10, max_scale=0.1,
                                max_translate=0.1, noise_std=0.0,
                                reverse_time=True)


def _same_everywhere(h=20, w=24, seed=0, guidance=False):
  """An example whose 8 images are one and the same random image."""
  rng = np.random.default_rng(seed)
  img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  ex = {'blur': img, 'sharp': np.repeat(img[None], 7, 0), 'id': 'x'}
  if guidance:
    ex['guidance'] = rng.integers(0, 5, (h, w)).astype(np.int32)
  return ex


def _numbered_frames(h=12, w=16):
  """Frame k filled with 30 k + column index; blur = mean frame."""
  cols = np.arange(w, dtype=np.uint8)[None, :, None]
  sharp = np.stack([np.broadcast_to(30 * k + cols, (h, w, 3)) for k in range(7)])
  return {'blur': sharp.mean(0).round().astype(np.uint8),
          'sharp': sharp.astype(np.uint8)}


@pytest.mark.parametrize('config', [augment.AugmentConfig(), _ALL_ON],
                         ids=['default', 'all_on'])
def test_all_eight_images_get_the_same_transform(config):
  flipped = set()
  for seed in range(12):
    ex = _same_everywhere(seed=seed)
    out = augment.augment(ex, np.random.default_rng(seed), crop=(12, 16),
                          config=config)
    assert out['blur'].shape == (12, 16, 3) and out['blur'].dtype == np.uint8
    assert out['sharp'].shape == (7, 12, 16, 3) and out['sharp'].dtype == np.uint8
    for k in range(7):
      np.testing.assert_array_equal(out['sharp'][k], out['blur'])
    assert out['id'] == 'x'
    if not config.affine:
      # A plain crop (possibly mirrored) of the input, up to colour jitter:
      # find the offset by exhaustive search on the jitter-free geometry.
      plain = augment.augment(ex, np.random.default_rng(seed), crop=(12, 16),
                              config=augment.AugmentConfig(
                                  brightness=0, contrast=0, saturation=0))
      hits = [(t, l, f) for t in range(9) for l in range(9) for f in (0, 1)
              if np.array_equal(plain['blur'],
                                (ex['blur'][:, ::-1] if f else ex['blur'])
                                [t:t + 12, l:l + 16])]
      assert hits, 'not a crop of the input'
      flipped.add(hits[0][2])
  if not config.affine:
    assert flipped == {0, 1}


def test_crop_and_flip_are_drawn_once():
  ex = _same_everywhere()
  rng = np.random.default_rng(3)
  out = augment.random_crop(ex, rng, 8)
  rng = np.random.default_rng(3)
  top, left = int(rng.integers(13)), int(rng.integers(17))
  np.testing.assert_array_equal(out['blur'], ex['blur'][top:top + 8, left:left + 8])
  np.testing.assert_array_equal(augment.hflip(out)['sharp'][:, :, ::-1], out['sharp'])


def test_center_crop():
  ex = _same_everywhere(10, 13, guidance=True)
  out = augment.center_crop(ex, (4, 6))
  np.testing.assert_array_equal(out['blur'], ex['blur'][3:7, 3:9])
  np.testing.assert_array_equal(out['guidance'], ex['guidance'][3:7, 3:9])
  assert augment.center_crop(ex, None)['blur'].shape == (10, 13, 3)


def test_time_is_never_reversed_unless_asked():
  ex = _numbered_frames()
  cfg = augment.AugmentConfig(brightness=0, contrast=0, saturation=0)
  for seed in range(20):
    out = augment.augment(ex, np.random.default_rng(seed), crop=None, config=cfg)
    means = out['sharp'].reshape(7, -1).mean(1)
    assert np.all(np.diff(means) > 0)
  orders = set()
  cfg = augment.AugmentConfig(brightness=0, contrast=0, saturation=0,
                              reverse_time=True)
  for seed in range(20):
    out = augment.augment(ex, np.random.default_rng(seed), crop=None, config=cfg)
    orders.add(bool(np.all(np.diff(out['sharp'].reshape(7, -1).mean(1)) < 0)))
    np.testing.assert_array_equal(np.sort(out['blur'].ravel()),
                                  np.sort(ex['blur'].ravel()))
  assert orders == {False, True}
  always = augment.AugmentConfig(hflip=False, brightness=0, contrast=0,
                                 saturation=0, reverse_time=1.0)
  out = augment.augment(ex, np.random.default_rng(0), crop=None, config=always)
  np.testing.assert_array_equal(out['sharp'], ex['sharp'][::-1])


def test_guidance_follows_flip_and_reversal():
  ex = _same_everywhere(guidance=True)
  flipped = augment.hflip(ex)
  np.testing.assert_array_equal(
      flipped['guidance'], guidance_lib.hflip_guidance(ex['guidance'][:, ::-1]))
  rev = augment.reverse_time(ex)
  np.testing.assert_array_equal(rev['guidance'],
                                guidance_lib.reverse_guidance(ex['guidance']))
  np.testing.assert_array_equal(rev['blur'], ex['blur'])
  out = augment.augment(ex, np.random.default_rng(0), crop=8, config=_ALL_ON)
  assert out['guidance'].shape == (8, 8)
  assert set(np.unique(out['guidance'])) <= set(range(5))


def test_affine_changes_geometry_and_keeps_range():
  ex = _same_everywhere(32, 32)
  cfg = augment.AugmentConfig(hflip=False, brightness=0, contrast=0,
                              saturation=0, affine=True, max_rotate=20)
  out = augment.augment(ex, np.random.default_rng(1), crop=16, config=cfg)
  crops = [ex['blur'][t:t + 16, l:l + 16] for t in range(17) for l in range(17)]
  assert not any(np.array_equal(out['blur'], c) for c in crops)
  # Identity parameters reproduce a plain crop exactly.
  ys, xs = np.mgrid[4:20, 5:21].astype(np.float32)
  np.testing.assert_array_equal(augment.warp(ex['sharp'], ys, xs).astype(np.uint8),
                                ex['sharp'][:, 4:20, 5:21])


def test_colour_jitter_keeps_blur_the_mean_of_the_frames():
  ex = synthetic.render(0, 'train', 2, size=(24, 24))
  ex['sharp'] = (64 + ex['sharp'] // 2).astype(np.uint8)   # no clipping
  ex['blur'] = synthetic.blur_from_sharp(ex['sharp'])
  cfg = augment.AugmentConfig(brightness=0.2, contrast=0.2, saturation=0.3)
  changed = False
  for seed in range(5):
    out = augment.augment(ex, np.random.default_rng(seed), crop=20, config=cfg)
    diff = np.abs(out['blur'] - out['sharp'].astype(np.float64).mean(0))
    assert diff.max() <= 2.0
    crop_means = [ex['blur'][t:t + 20, l:l + 20].mean()
                  for t in range(5) for l in range(5)]
    changed |= min(abs(out['blur'].mean() - m) for m in crop_means) > 1
  assert changed


def test_gaussian_noise_is_independent_per_image():
  ex = {'blur': np.full((32, 32, 3), 128, np.uint8),
        'sharp': np.full((7, 32, 32, 3), 128, np.uint8)}
  cfg = augment.AugmentConfig(hflip=False, brightness=0, contrast=0,
                              saturation=0, noise_std=0.02)
  out = augment.augment(ex, np.random.default_rng(0), crop=None, config=cfg)
  noise = np.concatenate([out['blur'][None], out['sharp']]).astype(np.float64) - 128
  assert abs(noise.std() - 0.02 * 255) < 0.3
  assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.1
  off = augment.augment(ex, np.random.default_rng(0), crop=None,
                        config=augment.AugmentConfig())   # noise off by default
  assert len(np.unique(np.concatenate([off['blur'][None], off['sharp']]))) == 1


def test_bad_input_raises():
  ex = _same_everywhere(10, 10)
  with pytest.raises(ValueError, match='does not fit'):
    augment.random_crop(ex, np.random.default_rng(0), 11)
  with pytest.raises(ValueError, match='sharp'):
    augment.center_crop({'blur': ex['blur'], 'sharp': ex['sharp'][:, :5]}, 4)
  with pytest.raises(ValueError, match="no 'sharp'"):
    augment.center_crop({'blur': ex['blur']}, 4)
  with pytest.raises(ValueError, match='brightness'):
    augment.AugmentConfig(brightness=-0.1)
  with pytest.raises(ValueError, match='reverse_time'):
    augment.AugmentConfig(reverse_time=1.5)

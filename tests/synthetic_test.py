"""Tests for hypercut_jax.data.synthetic and hypercut_jax.data.get_source."""
import hashlib
import os
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from scipy import stats

from hypercut_jax import data
from hypercut_jax.configs import common as configs_common
from hypercut_jax.data import synthetic

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(example) -> str:
  h = hashlib.sha256()
  h.update(example['blur'].tobytes())
  h.update(example['sharp'].tobytes())
  h.update(example['id'].encode())
  return h.hexdigest()


_CASES = [('train', 3, {'blur_space': 'srgb'}),
          ('train', 11, {'blur_space': 'linear'}),
          ('test', 5, {'blur_space': 'srgb'}),
          ('test', 2, {'scenes': 'shared', 'motion_scale': 0.5})]

_CHILD = f"""
import hashlib, sys
from hypercut_jax.data import synthetic
print(synthetic._texture.cache_info().currsize)   # nothing loaded at import
for split, i, kw in {_CASES!r}:
  ex = synthetic.SyntheticBlur2Vid(split, seed=7, num_records=20, size=(24, 40),
                                   **kw)[i]
  h = hashlib.sha256()
  h.update(ex['blur'].tobytes()); h.update(ex['sharp'].tobytes()); h.update(ex['id'].encode())
  print(h.hexdigest())
"""


def test_records_are_identical_across_processes_and_calls():
  expected = []
  for split, i, kw in _CASES:
    src = synthetic.SyntheticBlur2Vid(split, seed=7, num_records=20,
                                      size=(24, 40), **kw)
    first = _digest(src[i])
    assert _digest(src[i]) == first
    expected.append(first)
  out = subprocess.run([sys.executable, '-c', _CHILD], cwd=_REPO, check=True,
                       capture_output=True, text=True, timeout=120).stdout.split()
  assert out[0] == '0'
  assert out[1:] == expected


def test_example_format():
  ex = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=3, size=(20, 36))[1]
  assert set(ex) == {'blur', 'sharp', 'id'}
  assert ex['blur'].shape == (20, 36, 3) and ex['blur'].dtype == np.uint8
  assert ex['sharp'].shape == (7, 20, 36, 3) and ex['sharp'].dtype == np.uint8
  assert ex['id'] in ('synthetic/train/0000001/fwd', 'synthetic/train/0000001/rev')


@pytest.mark.parametrize('sub_frames', [1, 3])
def test_blur_is_mean_of_sharp_in_srgb(sub_frames):
  src = synthetic.SyntheticBlur2Vid('train', seed=1, num_records=10, size=(32, 32),
                                    sub_frames=sub_frames)
  for i in range(4):
    ex = src[i]
    mean = ex['sharp'].astype(np.float64).mean(0)
    assert np.abs(ex['blur'] - mean).max() <= 1.0
    assert np.abs(ex['blur'] - mean).mean() < 0.3


def test_blur_is_mean_of_sharp_in_linear_light():
  src = synthetic.SyntheticBlur2Vid('test', seed=1, num_records=10, size=(32, 32),
                                    blur_space='linear')
  srgb = synthetic.SyntheticBlur2Vid('test', seed=1, num_records=10, size=(32, 32))
  for i in range(3):
    ex = src[i]
    lin = synthetic.srgb_to_linear(ex['sharp'] / 255.0).mean(0)
    ref = synthetic.linear_to_srgb(lin) * 255
    assert np.abs(ex['blur'] - ref).max() <= 1.0
    # Averaging in linear light is visibly different from averaging codes.
    mean_codes = ex['sharp'].astype(np.float64).mean(0)
    assert np.abs(ex['blur'] - mean_codes).max() > 3
    assert srgb[i]['id'] == ex['id']


def test_directions_are_balanced():
  src = synthetic.SyntheticBlur2Vid('train', seed=123, num_records=400, size=(8, 8),
                                    sub_frames=1, max_sprites=1)
  reversed_ = [src[i]['id'].endswith('/rev') for i in range(len(src))]
  assert all(src[i]['id'].endswith(('/fwd', '/rev')) for i in range(5))
  k = int(np.sum(reversed_))
  assert 0 < k < 400
  assert stats.binomtest(k, 400, 0.5).pvalue > 0.01, k


def test_blur_cannot_tell_the_direction():
  kw = dict(size=(32, 32), blur_space='srgb')
  fwd = synthetic.render(5, 'train', 9, reverse=False, **kw)
  rev = synthetic.render(5, 'train', 9, reverse=True, **kw)
  np.testing.assert_array_equal(fwd['blur'], rev['blur'])
  np.testing.assert_array_equal(fwd['sharp'][::-1], rev['sharp'])
  assert not np.array_equal(fwd['sharp'], rev['sharp'])
  drawn = synthetic.render(5, 'train', 9, **kw)
  assert drawn['id'].endswith('/rev') == np.array_equal(drawn['sharp'], rev['sharp'])


def test_motion_is_visible_between_first_and_last_frame():
  src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=20, size=(32, 32))
  d06, d01 = [], []
  for i in range(12):
    x = src[i]['sharp'].astype(np.float32)
    d06.append(np.abs(x[0] - x[6]).mean())
    d01.append(np.abs(x[0] - x[1]).mean())
  assert np.median(d06) > 10       # grey levels, 0..255
  assert np.mean(np.array(d06) > np.array(d01)) == 1.0


def test_sub_frames_blur_each_frame():
  a = synthetic.render(2, 'train', 4, size=(32, 32), sub_frames=1)
  b = synthetic.render(2, 'train', 4, size=(32, 32), sub_frames=3)
  assert a['id'] == b['id']
  assert not np.array_equal(a['sharp'], b['sharp'])


def test_records_differ_and_splits_differ():
  train = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=8, size=(16, 16))
  test = synthetic.SyntheticBlur2Vid('test', seed=0, num_records=8, size=(16, 16))
  digests_train = {_digest(train[i]) for i in range(8)}
  blurs_test = {test[i]['blur'].tobytes() for i in range(8)}
  assert len(digests_train) == 8
  assert not blurs_test & {train[i]['blur'].tobytes() for i in range(8)}
  other_seed = synthetic.SyntheticBlur2Vid('train', seed=1, num_records=8, size=(16, 16))
  assert not np.array_equal(train[0]['sharp'], other_seed[0]['sharp'])


def test_textures_are_bundled_files():
  for name in synthetic.TEXTURES:
    tex = synthetic._texture(name, 0)
    assert tex.dtype == np.uint8 and tex.ndim == 3 and tex.shape[2] == 3
    assert min(tex.shape[:2]) >= 128
  coarse = synthetic._texture('astronaut.png', 2)
  assert coarse.shape == (128, 128, 3)


def test_bad_arguments():
  with pytest.raises(ValueError, match='split'):
    synthetic.SyntheticBlur2Vid('val', seed=0, num_records=2)
  with pytest.raises(ValueError, match='blur_space'):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, blur_space='gamma')
  with pytest.raises(ValueError, match='size'):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, size=(4, 64))
  with pytest.raises(ValueError, match='seed'):
    synthetic.SyntheticBlur2Vid('train', seed=-1, num_records=2)
  with pytest.raises(IndexError):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2)[2]


@pytest.mark.parametrize('kw,match', [
    (dict(scenes='mixed'), "scenes='mixed'; known"),
    (dict(motion_scale=-0.5), 'motion_scale=-0.5; must be a finite number >= 0'),
    (dict(motion_scale=float('nan')), 'motion_scale=nan'),
    (dict(motion_scale=float('inf')), 'motion_scale=inf'),
    (dict(motion_scale='2'), "motion_scale='2'"),
    (dict(motion_scale=True), 'motion_scale=True'),
    (dict(sub_frames=0), 'sub_frames=0; must be an int >= 1'),
    (dict(sub_frames=1.5), 'sub_frames=1.5'),
    (dict(max_sprites=0), 'max_sprites=0; must be an int >= 1'),
    (dict(max_sprites=2.0), 'max_sprites=2.0'),
])
def test_bad_scene_arguments(kw, match):
  with pytest.raises(ValueError, match=match):
    synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, **kw)


# The 12 photos of the first version (scenes='shared' still draws on them).
_OLD_POOL = ('astronaut.png', 'chelsea.png', 'coffee.png', 'ihc.png',
             'motorcycle_left.png', 'rocket.jpg', 'brick.png', 'grass.png',
             'gravel.png', 'camera.png', 'coins.png', 'moon.png')


def _photos_used(split, n, **kw):
  """{photo names} of records 0..n-1: backgrounds, and sprites."""
  backgrounds, sprites = set(), set()
  for i in range(n):
    drawn = synthetic.scene(0, split, i, **kw)
    backgrounds.add(drawn['camera']['name'])
    sprites.update(sp['name'] for sp in drawn['sprites'])
  return backgrounds, sprites


def test_scene_split_photo_lists():
  train, test = set(synthetic.TRAIN_TEXTURES), set(synthetic.TEST_TEXTURES)
  assert not train & test
  assert train | test == set(synthetic.TEXTURES)
  assert len(synthetic.TEXTURES) == len(train) + len(test)
  assert len(train) >= 1.8 * len(test)
  # One scene from two viewpoints stays on one side.
  assert {'motorcycle_left.png', 'motorcycle_right.png'} <= train
  for side in (train, test):   # colour and grey photos on both sides
    assert side & synthetic._GREY and side - synthetic._GREY
  assert set(_OLD_POOL) <= set(synthetic.TEXTURES)
  assert synthetic.photos('train') == synthetic.TRAIN_TEXTURES
  assert synthetic.photos('test', 'split') == synthetic.TEST_TEXTURES
  assert synthetic.photos('train', 'shared') == synthetic.TEXTURES
  with pytest.raises(ValueError, match='scenes'):
    synthetic.photos('train', 'both')


def test_train_and_test_records_show_disjoint_photos():
  train_bg, train_sp = _photos_used('train', 80)
  test_bg, test_sp = _photos_used('test', 80)
  assert train_bg | train_sp <= set(synthetic.TRAIN_TEXTURES)
  assert test_bg | test_sp <= set(synthetic.TEST_TEXTURES)
  # Every photo of a side shows up as a background.
  assert train_bg == set(synthetic.TRAIN_TEXTURES)
  assert test_bg == set(synthetic.TEST_TEXTURES)


def test_shared_scenes_draw_from_every_photo_in_both_splits():
  for split in ('train', 'test'):
    bg, sp = _photos_used(split, 120, scenes='shared')
    assert bg | sp == set(synthetic.TEXTURES)    # the old pool, and more
    assert bg & set(synthetic.TRAIN_TEXTURES) and bg & set(synthetic.TEST_TEXTURES)


def test_scene_is_what_render_draws():
  for i in range(4):
    drawn = synthetic.scene(3, 'test', i, size=(24, 24))
    again = synthetic.scene(3, 'test', i, size=(24, 24))
    assert drawn['camera']['name'] == again['camera']['name']
    np.testing.assert_array_equal(drawn['camera']['centre'], again['camera']['centre'])
    ex = synthetic.render(3, 'test', i, size=(24, 24))
    assert ex['id'].endswith('/rev') == drawn['reverse']
    assert drawn['camera']['name'] not in [sp['name'] for sp in drawn['sprites']]


def test_augmentation_varies_per_record():
  looks = [synthetic.scene(0, 'train', i)['camera'] for i in range(200)]
  assert {look['d4'] for look in looks} == {
      (t, sx, sy) for t in (False, True) for sx in (1, -1) for sy in (1, -1)}
  colour = [look for look in looks if look['name'] not in synthetic._GREY]
  assert len({look['perm'] for look in colour}) == 6
  assert all(look['perm'] == (0, 1, 2) for look in looks
             if look['name'] in synthetic._GREY)
  tones = np.array([look['tone'] for look in looks])
  assert tones.min() < -0.4 and tones.max() > 0.4


def test_shade_tone_curve_gain_and_channel_order():
  x = np.linspace(0, 1, 11, dtype=np.float32)
  x = np.stack([x, x * 0.5, x * 0.25])
  plain = dict(tone=0.0, gain=np.ones(3), perm=(0, 1, 2))
  np.testing.assert_allclose(synthetic._shade(x, plain), x, atol=1e-7)
  swapped = synthetic._shade(x, dict(plain, perm=(2, 0, 1), gain=np.array([1, 2, 3])))
  np.testing.assert_allclose(swapped, x[[2, 0, 1]] * np.array([1, 2, 3])[:, None],
                             rtol=1e-6)
  bright = synthetic._shade(x, dict(plain, tone=0.5))[0]
  dark = synthetic._shade(x, dict(plain, tone=-0.5))[0]
  np.testing.assert_allclose(bright[[0, -1]], [0, 1], atol=1e-6)
  np.testing.assert_allclose(dark[[0, -1]], [0, 1], atol=1e-6)
  assert np.all(bright[1:-1] > x[0, 1:-1]) and np.all(dark[1:-1] < x[0, 1:-1])
  assert np.all(np.diff(bright) > 0) and np.all(np.diff(dark) > 0)


def _plain_and_flipped_textures(monkeypatch, flip, seed):
  """Serves a random texture as 'plain' and flip(texture) as 'flipped'."""
  tex = np.random.default_rng(seed).uniform(size=(3, 41, 41)).astype(np.float32)
  textures = {'plain': tex, 'flipped': np.ascontiguousarray(flip(tex))}
  monkeypatch.setattr(synthetic, '_texture_values',
                      lambda name, level, space: textures[name])


@pytest.mark.parametrize('d4,flip', [
    ((False, -1, 1), lambda t: t[:, :, ::-1]),
    ((False, 1, -1), lambda t: t[:, ::-1, :]),
    ((True, 1, 1), lambda t: t.transpose(0, 2, 1)),
    ((True, -1, -1), lambda t: t[:, ::-1, ::-1].transpose(0, 2, 1)),
])
def test_d4_reads_the_flipped_texture(monkeypatch, d4, flip):
  """The camera with d4 sees what it sees of the flipped/transposed photo."""
  _plain_and_flipped_textures(monkeypatch, flip, seed=0)
  t = synthetic._times(2)
  gy, gx = np.mgrid[0:16, 0:16].astype(np.float32)
  px, py = gx - np.float32(7.5), gy - np.float32(7.5)
  cam = dict(level=0, th0=0.3, w=0.1, w2=0.05, zoom=0.05, scale=1.3,
             centre=np.array([20.0, 20.0]), v=np.array([3.0, -2.0]),
             acc=np.array([1.0, 0.5]), tone=0.3, gain=np.ones(3), perm=(0, 1, 2))
  ours = synthetic._render_camera(dict(cam, name='plain', d4=d4), t, px, py, 'srgb')
  # The same camera, over the flipped photo: G maps an offset b from the
  # centre to G b; seen in the flipped texture, that is the plain offset b.
  ref = synthetic._render_camera(dict(cam, name='flipped', d4=(False, 1, 1)),
                                 t, px, py, 'srgb')
  np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize('d4,flip', [
    ((False, -1, 1), lambda t: t[:, :, ::-1]),
    ((True, 1, -1), lambda t: t[:, ::-1, :].transpose(0, 2, 1)),
])
def test_d4_flips_sprite_textures(monkeypatch, d4, flip):
  _plain_and_flipped_textures(monkeypatch, flip, seed=1)
  t = synthetic._times(1)
  gy, gx = np.mgrid[0:16, 0:16].astype(np.float32)
  sp = dict(level=0, scale=1.2, origin=np.array([20.0, 20.0]),
            ab=np.array([5.0, 4.0]), power=4, m0=np.array([8.0, 7.0]),
            u=np.array([2.0, 1.0]), acc=np.array([0.5, 0.0]), ph0=0.4, q=0.2,
            tone=-0.2, gain=np.ones(3), perm=(0, 1, 2))
  ours = np.zeros((3, 7, 16, 16), np.float32)
  ref = np.zeros((3, 7, 16, 16), np.float32)
  synthetic._render_sprite(dict(sp, name='plain', d4=d4), t, gx, gy, ours,
                           'srgb', 7)
  synthetic._render_sprite(dict(sp, name='flipped', d4=(False, 1, 1)), t, gx,
                           gy, ref, 'srgb', 7)
  assert ours.max() > 0.1
  np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_motion_scale_zero_gives_a_still_scene():
  for space in ('srgb', 'linear'):
    src = synthetic.SyntheticBlur2Vid('test', seed=4, num_records=4, size=(24, 32),
                                      blur_space=space, motion_scale=0.0)
    for i in range(3):
      ex = src[i]
      for frame in ex['sharp']:
        np.testing.assert_array_equal(frame, ex['sharp'][0])
      assert np.abs(ex['blur'].astype(int) - ex['sharp'][0]).max() <= 1


def test_larger_motion_scale_moves_more():
  def mean_d06(scale):
    src = synthetic.SyntheticBlur2Vid('train', seed=2, num_records=12,
                                      size=(32, 32), motion_scale=scale)
    return np.mean([np.abs(src[i]['sharp'][0].astype(np.float32)
                           - src[i]['sharp'][6]).mean() for i in range(12)])
  d = [mean_d06(s) for s in (0.0, 0.5, 1.0, 2.0)]
  assert d[0] == 0
  assert d[1] < d[2] < d[3], d


def _synthetic_config(**kw):
  fields = dict(name='synthetic', seed=3, num_train=10, num_test=4,
                size=(24, 32), blur_space='linear')
  fields.update(kw)
  return ml_collections.ConfigDict(fields)


def test_get_source_synthetic():
  train = data.get_source(_synthetic_config(), 'train')
  test = data.get_source(_synthetic_config(), 'test')
  assert isinstance(train, synthetic.SyntheticBlur2Vid)
  assert (len(train), len(test)) == (10, 4)
  assert train.size == (24, 32) and train.blur_space == 'linear'
  assert train[0]['blur'].shape == (24, 32, 3)
  square = data.get_source(_synthetic_config(size=16, sub_frames=2), 'test')
  assert square.size == (16, 16) and square.sub_frames == 2
  assert (train.scenes, train.motion_scale, train.max_sprites) == ('split', 1.0, 3)
  shared = data.get_source(_synthetic_config(
      scenes='shared', motion_scale=0.5, max_sprites=2), 'train')
  assert (shared.scenes, shared.motion_scale, shared.max_sprites) == ('shared', 0.5, 2)


def test_synthetic_data_config_reaches_the_source():
  c = configs_common.synthetic_data(num_train=5, num_test=3, size=(16, 24))
  assert (c.motion_scale, c.max_sprites, c.sub_frames, c.scenes) == (
      1.0, 3, 3, 'split')
  c.motion_scale = 2.5          # a command-line override
  c.max_sprites, c.sub_frames, c.scenes = 1, 2, 'shared'
  src = data.get_source(c, 'test')
  assert (src.motion_scale, src.max_sprites, src.sub_frames, src.scenes) == (
      2.5, 1, 2, 'shared')
  assert len(src) == 3 and src[0]['sharp'].shape == (7, 16, 24, 3)
  c.scenes = 'mixed'
  with pytest.raises(ValueError, match="config.data: scenes='mixed'"):
    data.get_source(c, 'train')


def test_get_source_errors():
  with pytest.raises(ValueError, match="known: \\['synthetic', 'rb2v', 'reds', 'baist'\\]"):
    data.get_source(ml_collections.ConfigDict({'name': 'gopro'}), 'train')
  with pytest.raises(ValueError, match='split'):
    data.get_source(_synthetic_config(), 'validation')
  bad = ml_collections.ConfigDict({'name': 'synthetic', 'seed': 0, 'num_train': 2})
  with pytest.raises(ValueError, match='size'):
    data.get_source(bad, 'train')


def test_get_source_tfds_datasets_use_hypercut_datasets(monkeypatch):
  calls = []
  fake = types.ModuleType('hypercut_datasets')
  fake.data_source = lambda name, split, data_dir, config=None: calls.append(
      (name, split, data_dir, config)) or ['example']
  monkeypatch.setitem(sys.modules, 'hypercut_datasets', fake)
  cfg = ml_collections.ConfigDict({'name': 'rb2v', 'data_dir': '/d', 'subset': 'face'})
  assert data.get_source(cfg, 'test') == ['example']
  cfg = ml_collections.ConfigDict({'name': 'reds', 'data_dir': '/r'})
  data.get_source(cfg, 'train')
  assert calls == [('rb2v', 'test', '/d', 'face'), ('reds', 'train', '/r', None)]


def test_view_scale_magnifies_the_photos_and_keeps_every_other_draw():
  kw = dict(size=(32, 32), max_sprites=2)
  for i in range(6):
    dense = synthetic.scene(4, 'train', i, **kw)
    magnified = synthetic.scene(4, 'train', i, view_scale=0.25, **kw)
    assert dense['reverse'] == magnified['reverse']
    for a, b in zip([dense['camera'], *dense['sprites']],
                    [magnified['camera'], *magnified['sprites']]):
      assert a['name'] == b['name'] and a['d4'] == b['d4']
      np.testing.assert_array_equal(a.get('v', a.get('u')), b.get('v', b.get('u')))
      # texture pixels per screen pixel (scale at its mip level) shrink 4x
      np.testing.assert_allclose(b['scale'] * 2 ** b['level'],
                                 0.25 * a['scale'] * 2 ** a['level'], rtol=1e-9)
  # Magnified photos are smoother: smaller mean gradient of the sharp frames.
  def roughness(view_scale):
    src = synthetic.SyntheticBlur2Vid('train', seed=4, num_records=6, size=(32, 32),
                                      view_scale=view_scale)
    return np.mean([np.abs(np.diff(src[i]['sharp'].astype(np.float32), axis=2)).mean()
                    for i in range(6)])
  assert roughness(0.12) < 0.7 * roughness(1.0)
  # The default is the source as before (1.0), and the config field reaches it.
  assert synthetic.SyntheticBlur2Vid('test', seed=0, num_records=1).view_scale == 1.0
  src = data.get_source(_synthetic_config(view_scale=0.5), 'test')
  assert src.view_scale == 0.5 and 'view_scale=0.5' in repr(src)
  for bad in (0, -1.0, 1.5, float('nan'), True, '1'):
    with pytest.raises(ValueError, match='view_scale='):
      synthetic.SyntheticBlur2Vid('train', seed=0, num_records=2, view_scale=bad)

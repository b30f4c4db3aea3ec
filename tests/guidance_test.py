"""Tests for hypercut_jax.data.guidance (numpy only, no jax)."""
import numpy as np
import pytest

from hypercut_jax.data import guidance as G


def _texture(h, w, seed=0):
  """Smooth random RGB texture in [0,1] (two passes of a [1,2,1] blur)."""
  x = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
  for _ in range(2):
    x = (np.roll(x, 1, 0) + 2 * x + np.roll(x, -1, 0)) / 4
    x = (np.roll(x, 1, 1) + 2 * x + np.roll(x, -1, 1)) / 4
  return (x - x.min()) / (x.max() - x.min())


def _translation(dx, dy, size=48, seed=0):
  """u8[7,size,size,3]: content moves by (dx, dy) px per frame (x right, y down)."""
  pad = 3 * max(abs(dx), abs(dy)) + 2
  can = _texture(size + 2 * pad, size + 2 * pad, seed)
  frames = []
  for t in range(7):
    oy, ox = pad - (t - 3) * dy, pad - (t - 3) * dx
    frames.append(can[oy:oy + size, ox:ox + size])
  return np.round(np.stack(frames) * 255).astype(np.uint8)


def _interior(g, margin=10):
  return g[..., margin:-margin, margin:-margin]


@pytest.mark.parametrize('v, cls', [
    ((1.0, 0.0), 1), ((-1.0, 0.0), 3), ((0.0, 1.0), 4), ((0.0, -1.0), 2),
    ((1.0, -1.0), 1), ((-1.0, -1.0), 2), ((-1.0, 1.0), 3), ((1.0, 1.0), 4),
    ((0.3, 0.2), 0), ((0.0, 0.0), 0), ((0.5, 0.0), 1), ((0.49, 0.0), 0),
])
def test_velocity_to_guidance_authors_rule(v, cls):
  assert G.velocity_to_guidance(np.array(v, np.float32)) == cls


def test_axis_tol_treats_small_component_as_zero():
  v = np.array([[2.0, 0.1], [2.0, -0.1], [-2.0, 0.1]], np.float32)
  np.testing.assert_array_equal(G.velocity_to_guidance(v), [4, 1, 3])
  np.testing.assert_array_equal(G.velocity_to_guidance(v, axis_tol=0.2), [1, 1, 3])


def test_reverse_is_negated_velocity_and_involution():
  v = np.random.default_rng(1).normal(size=(500, 2)).astype(np.float32)
  v[:50, 1] = 0.0   # pure horizontal
  v[50:100, 0] = 0.0   # pure vertical
  g = G.velocity_to_guidance(v)
  np.testing.assert_array_equal(G.velocity_to_guidance(-v), G.reverse_guidance(g))
  np.testing.assert_array_equal(G.reverse_guidance(np.arange(5)), [0, 3, 4, 1, 2])
  np.testing.assert_array_equal(G.reverse_guidance(G.reverse_guidance(g)), g)


def test_flips_negate_one_sign_component():
  labels = np.arange(5)
  t = G.guidance_to_trend(labels)
  np.testing.assert_array_equal(G.guidance_to_trend(G.hflip_guidance(labels)),
                                t * np.array([-1, 1]))
  np.testing.assert_array_equal(G.guidance_to_trend(G.vflip_guidance(labels)),
                                t * np.array([1, -1]))


def test_trend_round_trip_and_errors():
  labels = np.array([[0, 1, 2], [3, 4, 0]])
  trend = G.guidance_to_trend(labels)
  assert trend.dtype == np.int8 and trend.shape == (2, 3, 2)
  np.testing.assert_array_equal(G.trend_to_guidance(trend.astype(np.float32)), labels)
  with pytest.raises(ValueError, match='outside the class table'):
    G.trend_to_guidance(np.array([[1, 0]], np.float32))
  with pytest.raises(ValueError, match='-1, 0 or 1'):
    G.trend_to_guidance(np.array([[0.5, 1.0]], np.float32))
  with pytest.raises(ValueError, match=r'\[0, 4\]'):
    G.reverse_guidance(np.array([5]))
  with pytest.raises(ValueError, match='integer'):
    G.reverse_guidance(np.array([1.0]))


def test_resize_guidance_nearest():
  g = np.array([[1, 2], [3, 4]], np.int32)
  np.testing.assert_array_equal(
      G.resize_guidance(g, (4, 4)),
      [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
  assert G.resize_guidance(np.zeros((3, 5, 6), np.int32), (10, 12)).shape == (3, 10, 12)


def test_block_match_recovers_shift():
  a = _texture(40, 40)[..., 0]
  b = np.roll(a, (3, -5), axis=(0, 1))   # b[p + (3, -5)] = a[p]
  d = G.block_match(a, b)
  inner = d[8:-8, 8:-8].reshape(-1, 2)
  assert np.mean(np.all(inner == [3, -5], axis=1)) > 0.99


@pytest.mark.parametrize('dx, dy, cls', [
    (2, 0, 1),    # right -> class 1 (the expected class for rightward motion)
    (-3, 0, 3),   # left
    (0, 2, 4),    # down
    (0, -1, 2),   # up
    (-2, -2, 2),  # up-left
    (2, 1, 4),    # right-down
])
def test_translation_gives_expected_class(dx, dy, cls):
  g = G.compute_guidance(_translation(dx, dy))
  assert g.shape == (48, 48) and g.dtype == np.int32
  assert np.mean(_interior(g) == cls) > 0.9


def test_reversed_clip_gives_opposite_class_exactly():
  clip = _translation(2, 0)
  g = G.compute_guidance(clip)
  g_rev = G.compute_guidance(clip[::-1])
  np.testing.assert_array_equal(g_rev, G.reverse_guidance(g))
  assert np.mean(_interior(g_rev) == 3) > 0.9


def test_static_scene_is_static():
  frame = _translation(0, 0)[:1]
  clip = np.repeat(frame, 7, axis=0)
  np.testing.assert_array_equal(G.compute_guidance(clip), np.zeros((48, 48)))


def test_float_uint8_batch_and_downsample_agree():
  clip = _translation(2, 0, size=40)
  g_u8 = G.compute_guidance(clip)
  g_f = G.compute_guidance(clip.astype(np.float32) / 255.0)
  np.testing.assert_array_equal(g_u8, g_f)
  g_b = G.compute_guidance(np.stack([clip, clip[::-1]]))
  assert g_b.shape == (2, 40, 40)
  np.testing.assert_array_equal(g_b[0], g_u8)
  g_half = G.compute_guidance(_translation(4, 0, size=48), downsample=2, levels=1)
  assert g_half.shape == (48, 48)
  assert np.mean(_interior(g_half) == 1) > 0.9


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='odd T'):
    G.compute_guidance(np.zeros((6, 8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match=r'\[\.\.\., 2\]'):
    G.velocity_to_guidance(np.zeros((4, 3)))
  with pytest.raises(ValueError, match='power of 2'):
    G.compute_guidance(np.zeros((7, 12, 12, 3), np.uint8), downsample=3)


def _search_one_by_one(ref, tgt, base, radius, window, penalty, scale):
  """The plain form of guidance._search: candidates visited one at a time."""
  cands = sorted({(int(by) + dy, int(bx) + dx)
                  for by, bx in base.reshape(-1, 2)
                  for dy, dx in G._offsets(radius)},
                 key=lambda d: (d[0] ** 2 + d[1] ** 2, d))
  best_cost = np.full(ref.shape, np.inf, np.float32)
  best = base.copy()
  for dy, dx in cands:
    ok = (np.abs(base[..., 0] - dy) <= radius) & (np.abs(base[..., 1] - dx) <= radius)
    diff = G._shift(tgt, dy, dx) - ref
    cost = G._box_mean(diff * diff, window) + penalty * float(
        (dy * scale) ** 2 + (dx * scale) ** 2)
    better = ok & (cost < best_cost)
    best_cost = np.where(better, cost, best_cost)
    best[better] = (dy, dx)
  return best


@pytest.mark.parametrize('chunk_elems', [1 << 20, 3 * 19 * 17])
def test_vectorised_search_equals_one_by_one(monkeypatch, chunk_elems):
  # Chunks of candidates (here also 3 per chunk) pick exactly what visiting
  # them one by one picks, ties included (flat patches, quantised images).
  monkeypatch.setattr(G, '_CHUNK_ELEMS', chunk_elems)
  rng = np.random.default_rng(3)
  ref = np.round(rng.uniform(size=(19, 17)) * 4).astype(np.float32) / 4
  ref[5:12, 4:10] = 0.5
  tgt = np.roll(ref, (1, -2), axis=(0, 1))
  base = rng.integers(-2, 3, (19, 17, 2))
  for radius, scale in ((2, 1), (3, 2)):
    want = _search_one_by_one(ref, tgt, base, radius, 5, 1e-3, scale)
    got = G._search(ref, tgt, base, radius, 5, 1e-3, scale)
    np.testing.assert_array_equal(got, want)

"""Tests for hypercut_jax.train.report (host-side writers, tables, images)."""
import glob
import io
import json
import os
import struct
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from hypercut_jax.train import report


def _read_event_scalars(path):
  """(tag, step) -> value from a TensorBoard event file, CRCs checked (no TF)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=g-import-not-at-top
  out = {}
  with open(path, 'rb') as f:
    data = f.read()
  pos = 0
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack('<Q', header)
    (header_crc,) = struct.unpack('<I', data[pos + 8:pos + 12])
    assert header_crc == masked_crc32c(header)
    body = data[pos + 12:pos + 12 + length]
    (body_crc,) = struct.unpack('<I', data[pos + 12 + length:pos + 16 + length])
    assert body_crc == masked_crc32c(body)
    pos += 16 + length
    event = event_pb2.Event.FromString(body)
    for v in event.summary.value:
      out[(v.tag, event.step)] = v.simple_value
  return out


def test_import_is_light():
  # No jax, TensorBoard, tqdm or Pillow at import time (they load on first use).
  code = ('import sys, hypercut_jax.train.report; '
          'print(sorted(m for m in ("jax", "tensorboardX", "tqdm", "PIL") if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'


# ---------------------------------------------------------- MetricWriter ---


def test_metric_writer_jsonl_tensorboard_and_config(tmp_path):
  workdir = tmp_path / 'run'
  with report.MetricWriter(workdir, process_index=0) as w:
    w.write(0, {'train/loss_h': np.float32(0.5), 'train/lr': 5e-4})
    w.write(10, {'eval/hit': jnp.array(0.75), 'eval/ppsnr': float('inf'),
                 'eval/n': np.int64(3), 'note': 'ok'})
    w.write_config(ml_collections.ConfigDict({'seed': 1, 'optim': {'lr': 5e-4}}))
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  assert len(lines) == 2

  def strict(c):
    raise ValueError(f'non-standard JSON constant {c}')
  records = [json.loads(line, parse_constant=strict) for line in lines]
  assert records[0] == {'step': 0, 'train/loss_h': 0.5, 'train/lr': 5e-4}
  assert records[1] == {'step': 10, 'eval/hit': 0.75, 'eval/ppsnr': 'inf', 'eval/n': 3,
                        'note': 'ok'}
  assert float(records[1]['eval/ppsnr']) == np.inf
  assert json.loads((workdir / 'config.json').read_text()) == {'seed': 1, 'optim': {'lr': 5e-4}}

  events = glob.glob(str(workdir / 'tb' / 'events.out.tfevents.*'))
  assert len(events) == 1 and os.path.getsize(events[0]) > 0
  scalars = _read_event_scalars(events[0])
  assert scalars[('train/loss_h', 0)] == pytest.approx(0.5)
  assert scalars[('eval/hit', 10)] == pytest.approx(0.75)
  assert scalars[('eval/n', 10)] == 3.0
  assert ('note', 10) not in scalars

  # A resumed run appends.
  with report.MetricWriter(workdir, process_index=0) as w:
    w.write(20, {'train/loss_h': 0.25})
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(l)['step'] for l in lines] == [0, 10, 20]


def test_metric_writer_only_process_zero_writes(tmp_path):
  workdir = tmp_path / 'run'
  w = report.MetricWriter(workdir, process_index=1)
  w.write(0, {'loss': 1.0})
  w.write_config({'a': 1})
  w.close()
  assert not workdir.exists()


def test_metric_writer_default_process_index_and_bad_values(tmp_path):
  with report.MetricWriter(tmp_path) as w:  # jax.process_index() == 0 here
    assert w.active
    with pytest.raises(ValueError, match="'x'"):
      w.write(1, {'x': np.zeros(3)})
    with pytest.raises(ValueError, match='step'):
      w.write(-1, {'y': 1.0})
  assert (tmp_path / 'metrics.jsonl').read_text() == ''


# --------------------------------------------------------- markdown_table ---


def test_markdown_table_ordering():
  m = {'eval/hit': 0.97149, 'eval/hit_first': 0.99, 'eval/con@2': 0.9, 'eval/con@3': 0.8551,
       'eval/n': 120.0}
  table = report.markdown_table(m, 'ordering', dataset='REDS')
  lines = table.splitlines()
  assert lines[0] == '|  | hit (%) | hit (0,6) (%) | con@2 (%) | con@3 (%) |'
  assert lines[2] == '| ours | 97.1 | 99.0 | 90.0 | 85.5 |'
  assert lines[3] == '| paper (REDS) | 95.7 | - | 96.5 | 94.4 |'
  assert len([l for l in lines if l.startswith('| paper')]) == 1
  assert '120 test examples' in table
  everything = report.markdown_table({'hit': 0.5}, 'ordering')
  assert '| ours | 50.0 | - | - | - |' in everything
  for row in ('B-Aist++) | 97.5 | - | 95.6 | 91.2', 'RB2V-Face) | 94.4 | - | 96.7 | 92.1',
              'RB2V-Hand) | 98.6 | - | 97.0 | 96.7', 'RB2V-Street) | 98.7 | - | 98.3 | 96.8'):
    assert row in everything
  assert 'RB2V-Hand' in report.markdown_table({}, 'ordering', dataset='hand')
  with pytest.raises(ValueError, match='dataset'):
    report.markdown_table({}, 'ordering', dataset='gopro')
  with pytest.raises(ValueError, match='stage'):
    report.markdown_table({}, 'deblur')


def test_markdown_table_generator_and_best_of_n():
  m = {f'ppsnr_f{t}': 30.0 + t for t in range(7)}
  m.update({'ppsnr': 33.0, 'pssim': 0.91234, 'plpips': 0.05, 'pred_hit': 0.5,
            'pred_con@2': 1.0, 'pred_con@3': 0.25})
  lines = report.markdown_table(m, 'generator').splitlines()
  assert lines[0] == '| pPSNR (dB) | ' + ' | '.join(f'frame {i}' for i in range(1, 8)) + ' |'
  assert lines[2] == '| model | 30.00 | 31.00 | 32.00 | 33.00 | 34.00 | 35.00 | 36.00 |'
  assert lines[3] == ''   # no baseline in the metrics: no "copy the blur" row
  assert lines[-1] == '| model | 33.00 | 0.9123 | 0.0500 | 50.0 | 100.0 | 25.0 |'
  partial = report.markdown_table({'ppsnr': float('inf'), 'n': 3.0}, 'generator')
  assert '| model | inf | - | - | - | - | - |' in partial.splitlines()
  assert partial.endswith('3 test examples.')
  bon = report.markdown_table({'p1/ppsnr': 25.0, 'p1/pssim': 0.8, 'p1/plpips': 0.2,
                               'p5/ppsnr': 27.5, 'p5/pssim': 0.85, 'p5/plpips': 0.1}, 'best_of_n')
  assert bon.splitlines()[2:] == ['| P1 | 25.00 | 0.8000 | 0.2000 |',
                                  '| P5 | 27.50 | 0.8500 | 0.1000 |']


def _blur_metrics(prefix='eval/'):
  m = {f'{prefix}ppsnr_f{t}': 30.0 + t for t in range(7)}
  m.update({f'{prefix}blur/ppsnr_f{t}': 20.0 + t for t in range(7)})
  m.update({f'{prefix}ppsnr': 33.0, f'{prefix}pssim': 0.9, f'{prefix}pred_hit': 0.5,
            f'{prefix}blur/ppsnr': 23.0, f'{prefix}blur/pssim': 0.6,
            f'{prefix}blur/plpips': 0.25, f'{prefix}n': 4.0})
  return m


def test_markdown_table_generator_copy_the_blur_rows():
  lines = report.markdown_table(_blur_metrics(), 'generator').splitlines()
  assert lines[2] == '| model | 30.00 | 31.00 | 32.00 | 33.00 | 34.00 | 35.00 | 36.00 |'
  assert lines[3] == '| copy the blur | 20.00 | 21.00 | 22.00 | 23.00 | 24.00 | 25.00 | 26.00 |'
  # Pooled: the model's row, then the baseline's (no pred hit / con for 7
  # identical frames; the model has no pLPIPS here).
  assert lines[-4:-2] == ['| model | 33.00 | 0.9000 | - | 50.0 | - | - |',
                          '| copy the blur | 23.00 | 0.6000 | 0.2500 | - | - | - |']
  assert lines[-1] == '4 test examples.'
  # Unprefixed keys work the same; the baseline never answers the model's name.
  assert report.markdown_table(_blur_metrics(''), 'generator') == '\n'.join(lines)
  only_blur = report.markdown_table({'eval/blur/ppsnr': 20.0}, 'generator')
  assert '| model | - | - | - | - | - | - |' in only_blur.splitlines()
  # P_n and the animation table show the baseline too.
  bon = {'eval/p1/ppsnr': 25.0, 'eval/blur/ppsnr': 23.0, 'eval/blur/pssim': 0.6}
  assert report.markdown_table(bon, 'best_of_n').splitlines()[2:] == [
      '| P1 | 25.00 | - | - |', '| copy the blur | 23.00 | 0.6000 | - |']
  anim = report.markdown_table({**_blur_metrics(), 'eval/p1/ppsnr': 25.0}, 'animation')
  assert anim.count('| copy the blur |') == 3


def test_blur_verdict_beats_every_frame():
  text = report.blur_verdict(_blur_metrics())
  assert text == ('Model vs copy-the-blur (pPSNR, dB): frame 1 +10.00, frame 2 +10.00, '
                  'frame 3 +10.00, frame 4 +10.00, frame 5 +10.00, frame 6 +10.00, '
                  'frame 7 +10.00; pooled +10.00. The model beats the blur on 7 of 7 frames.')
  assert report.blur_verdict(_blur_metrics('')) == text


def test_blur_verdict_mixed_and_negative():
  m = _blur_metrics()
  m['eval/ppsnr_f0'] = 19.5        # frame 1: -0.50
  m['eval/ppsnr_f6'] = 26.0        # frame 7: a tie is not a win
  m['eval/ppsnr'] = 22.0
  text = report.blur_verdict(m)
  assert 'frame 1 -0.50, frame 2 +10.00' in text and 'frame 7 +0.00; pooled -1.00.' in text
  assert text.endswith('The model does NOT beat the blur on frames 1, 7 (it beats it on 5 of 7).')
  worse = {**{f'ppsnr_f{t}': 10.0 for t in range(7)}, 'ppsnr': 10.0,
           **{f'blur/ppsnr_f{t}': 12.0 for t in range(7)}, 'blur/ppsnr': 12.0}
  assert report.blur_verdict(worse).endswith(
      'pooled -2.00. The model does NOT beat the blur on frames 1, 2, 3, 4, 5, 6, 7 '
      '(it beats it on 0 of 7).')
  worse['ppsnr_f3'] = float('nan')
  assert 'frame 4 nan' in report.blur_verdict(worse)
  one = {**worse, 'ppsnr_f3': 20.0, **{f'ppsnr_f{t}': 30.0 for t in (0, 1, 2, 4, 5)}}
  assert report.blur_verdict(one).endswith('on frame 7 (it beats it on 6 of 7).')
  perfect = {**_blur_metrics(), 'eval/ppsnr': float('inf')}
  assert 'pooled +inf.' in report.blur_verdict(perfect)


def test_blur_verdict_missing_keys():
  # No baseline at all: nothing to say.
  assert report.blur_verdict({}) == ''
  assert report.blur_verdict({'eval/ppsnr': 20.0, 'eval/ppsnr_f0': 20.0}) == ''
  # A baseline with holes: one clear error naming every missing key.
  m = _blur_metrics()
  del m['eval/ppsnr_f3'], m['eval/blur/ppsnr']
  with pytest.raises(ValueError, match=r"missing or not scalar: \['ppsnr_f3', 'blur/ppsnr'\]"):
    report.blur_verdict(m)
  with pytest.raises(ValueError, match='blur/ppsnr_f0'):
    report.blur_verdict({**_blur_metrics(), 'eval/blur/ppsnr_f0': 'n/a'})


def test_markdown_table_generator_names_the_middle_frame():
  gt = report.markdown_table({'eval/ppsnr': 20.0, 'eval/middle_gt': 1.0,
                              'eval/n': 4.0}, 'generator')
  assert 'Middle frame: ground truth' in gt
  est = report.markdown_table({'eval/ppsnr': 20.0,
                               'eval/middle_gt': np.float32(0.0)}, 'generator')
  assert 'estimated by the centre network' in est
  assert 'Middle frame' not in report.markdown_table({'ppsnr': 1.0}, 'generator')


def test_format_metrics():
  assert report.format_metrics({'loss': np.float32(0.5), 'step': 3, 'ids': ['a']}) == \
      'loss=0.5 step=3'


# ---------------------------------------------------------- save_examples ---


def test_to_uint8_rounds_and_clips():
  x = np.array([-0.1, 0.0, 0.6 / 255, 0.4 / 255, 127.6 / 255, 254.4 / 255, 1.0, 1.3], np.float32)
  np.testing.assert_array_equal(report.to_uint8(x), [0, 0, 1, 0, 128, 254, 255, 255])
  u = np.array([3, 200], np.uint8)
  assert report.to_uint8(u) is u or np.array_equal(report.to_uint8(u), u)
  with pytest.raises(ValueError, match='dtype'):
    report.to_uint8(np.array([1, 2], np.int32))


def test_save_examples_png_strip_and_gif(tmp_path):
  rng = np.random.default_rng(0)
  n, t, h, w, pad = 3, 7, 8, 10, 2
  blur = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
  pred = rng.uniform(-0.1, 1.1, (n, t, h, w, 3)).astype(np.float32)
  gt = rng.integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)
  png, gif = report.save_examples(tmp_path / 'ex' / 'step_10', blur, pred, gt, max_examples=2,
                                  pad=pad)
  assert png == str(tmp_path / 'ex' / 'step_10.png')
  strip = np.asarray(Image.open(png).convert('RGB'))
  assert strip.shape == (2 * h + pad, 15 * w + 14 * pad, 3)
  np.testing.assert_array_equal(strip[:h, :w], blur[0])
  x0 = (1 + 2) * (w + pad)  # example 0, predicted frame 2
  np.testing.assert_array_equal(strip[:h, x0:x0 + w], report.to_uint8(pred[0, 2]))
  x0 = (1 + t + 6) * (w + pad)  # example 1, GT frame 6
  np.testing.assert_array_equal(strip[h + pad:, x0:x0 + w], gt[1, 6])
  assert (strip[h:h + pad] == 255).all()

  with Image.open(gif) as im:
    assert im.format == 'GIF'
    assert im.n_frames == t
    assert im.info.get('loop') == 0
    assert im.size == (2 * w + pad, 2 * h + pad)


def test_save_examples_shape_errors(tmp_path):
  blur = np.zeros((1, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match='pred'):
    report.save_examples(tmp_path / 'x', blur, np.zeros((1, 7, 8, 9, 3)), np.zeros((1, 7, 8, 8, 3)))
  with pytest.raises(ValueError, match='blur'):
    report.save_examples(tmp_path / 'x', blur[0], np.zeros((1, 7, 8, 8, 3)),
                         np.zeros((1, 7, 8, 8, 3)))


# ------------------------------------------------------------ ProgressBar ---


def test_progress_bar_shows_rate_loss_and_is_silent_off_process_zero():
  buf = io.StringIO()
  with report.ProgressBar(total=100, initial=10, process_index=0, file=buf, mininterval=0) as bar:
    bar.update(20, {'train/loss_h': 0.123456, 'train/lr': 1e-3})
    bar.update(40, {'train/loss_h': 0.1})
    bar.write('eval done')
  text = buf.getvalue()
  assert '40/100' in text and 'loss_h=0.1000' in text and 'step/s' in text
  assert 'lr=' not in text and 'eval done' in text
  silent = io.StringIO()
  with report.ProgressBar(total=10, process_index=1, file=silent) as bar:
    bar.update(5, {'loss': 1.0})
    bar.write('nothing')
  assert silent.getvalue() == ''

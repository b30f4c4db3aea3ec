"""Tests for train/fingerprint.py and the loop's drift check, metrics rewind
and crop check (train/loop.py)."""
import json

import pytest

from hypercut_jax.train import fingerprint
from hypercut_jax.train import loop
from hypercut_jax.train import report
import checkpoint_test  # the one-stage H config

def _config(**over):
  """checkpoint_test's one-stage H config; `a__b=v` sets field a.b."""
  c = checkpoint_test._stage_config(total_steps=2, ckpt_steps=2,  # pylint: disable=protected-access
                                    async_checkpoint=False)
  for key, value in over.items():
    *path, last = key.split('__')
    node = c
    for part in path:
      node = node[part]
    node[last] = value
  return c


# ------------------------------------------------------------ pure parts ---
def test_fields_leave_out_what_does_not_shape_the_state():
  flat = fingerprint.fields(_config())
  assert flat['optim.lr'] == 1e-3 and flat['model.kwargs.nf'] == 4
  assert flat['data.size'] == [36, 36] and flat['total_steps'] == 2
  for key in ('log_steps', 'keep', 'eval.lpips', 'input.eval_batch_size',
              'ckpt_steps', 'sharding.fsdp', 'data.num_test', 'best_metric'):
    assert key not in flat
  same = fingerprint.fields(_config(log_steps=9, keep=5, input__worker_count=2,
                                    eval__max_examples=4, ckpt_steps=1))
  assert same == flat


def test_differences_name_each_field_with_both_values():
  old = fingerprint.record_of(_config())
  new = fingerprint.record_of(_config(optim__lr=2e-3, total_steps=5))
  assert fingerprint.differences(old, new) == [
      'optim.lr: 0.001 -> 0.002', 'total_steps: 2 -> 5']
  assert fingerprint.differences(old, old) == []


def test_unreadable_record_is_a_named_error(tmp_path):
  (tmp_path / fingerprint.FILE).write_text('{not json')
  with pytest.raises(fingerprint.ConfigDriftError, match='fingerprint.json'):
    fingerprint.check(_config(), str(tmp_path))


# ------------------------------------------------------------ loop level ---
def test_drift_stops_before_touching_the_workdir_and_override_continues(
    tmp_path):
  work = str(tmp_path)
  loop.run(_config(), work)
  before = (tmp_path / 'metrics.jsonl').read_text()
  config_json = (tmp_path / 'config.json').read_text()
  changed = _config(optim__lr=2e-3, total_steps=3)
  with pytest.raises(fingerprint.ConfigDriftError) as e:
    loop.run(changed, work)
  msg = str(e.value)
  assert '\n' not in msg
  assert 'optim.lr: 0.001 -> 0.002' in msg and 'total_steps: 2 -> 3' in msg
  assert '--config.resume=override' in msg
  assert (tmp_path / 'metrics.jsonl').read_text() == before   # untouched
  assert (tmp_path / 'config.json').read_text() == config_json
  # Fields that do not shape the state may change freely.
  loop.run(_config(log_steps=2, eval__max_examples=4), work)
  # On purpose: continues from step 2 under the new config, records it.
  changed.resume = 'override'
  out = loop.run(changed, work)
  assert out['ordering'].step == 3
  record = json.loads((tmp_path / fingerprint.FILE).read_text())
  assert record['fields']['optim.lr'] == 2e-3
  changed.resume = 'check'
  loop.run(changed, work)   # the new record is now the reference


def test_generator_records_its_h_and_a_changed_h_is_drift(tmp_path):
  h_dir = tmp_path / 'h'
  loop.run(_config(), str(h_dir))
  gen = _config(hypercut={'checkpoint': str(h_dir)})
  ident = fingerprint.h_identity(gen)
  assert ident['step'] == 2 and ident['digest'] == json.loads(
      (h_dir / fingerprint.FILE).read_text())['digest']
  fingerprint.write(str(tmp_path / 'g'), fingerprint.record_of(gen))
  fingerprint.check(gen, str(tmp_path / 'g'))   # same H: fine
  loop.run(_config(total_steps=4, resume='override'), str(h_dir))  # H moves on
  with pytest.raises(fingerprint.ConfigDriftError, match='frozen H'):
    fingerprint.check(gen, str(tmp_path / 'g'))


def test_crop_larger_than_the_records_fails_before_any_file(tmp_path):
  work = tmp_path / 'w'
  with pytest.raises(ValueError, match=r'input.crop=40 \(ordering stage\) is '
                     r'larger than the .synthetic. records \(36x36\)'):
    loop.run(_config(input__crop=40), str(work))
  assert not work.exists()


def test_bad_resume_mode_is_named():
  with pytest.raises(ValueError, match='config.resume'):
    loop.validate(_config(resume='always'))


# ------------------------------------------------------- metrics rewind ---
def test_rewind_drops_rows_past_the_restored_step(tmp_path):
  with report.MetricWriter(tmp_path, process_index=0) as w:
    for step in (1, 2, 3, 4):
      w.write(step, {'train/loss': 1.0 / step})
    w.write(4, {'eval/hit': 0.5})
    with open(w.jsonl_path, 'a') as f:
      f.write('{"step": 5, "train/lo')   # a line cut by a crash
    assert w.rewind(2) == 4
    w.write(3, {'train/loss': 0.25})
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in rows] == [1, 2, 3]
  with report.MetricWriter(tmp_path, process_index=0) as w:
    w.write(3, {'eval/hit': 0.5})
    assert w.rewind(3, drop_eval_at_step=True) == 1
    assert w.rewind(3) == 0
  assert [r['step'] for r in map(json.loads, open(tmp_path / 'metrics.jsonl'))
          ] == [1, 2, 3]


def test_finished_stage_rerun_keeps_one_eval_row(tmp_path):
  loop.run(_config(), str(tmp_path))
  loop.run(_config(), str(tmp_path))   # finished: only evaluated again
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in rows if 'train/loss' in r] == [1, 2]
  assert [r['step'] for r in rows if 'eval/hit' in r] == [2]

"""Tests for train/checkpoint.py and the loop's resume, preemption and NaN
handling (train/loop.py)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
import pytest

from hypercut_jax.configs import synthetic as synthetic_configs
from hypercut_jax.data import pipeline
from hypercut_jax.data import synthetic
from hypercut_jax.train import checkpoint
from hypercut_jax.train import loop
from hypercut_jax.train import optim
from hypercut_jax.train import ordering as ordering_lib
from hypercut_jax.train import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_H = dict(nf=4, embed_dim=8, n_down=5, n_blocks=1)


# ------------------------------------------------------------- unit level ---
def _state_and_iterator():
  model = ordering_lib.make_model(TINY_H)
  tx = optim.adamax_torch(1e-3)
  state = ordering_lib.make_init(model, tx, 33)(jax.random.key(0))
  src = synthetic.SyntheticBlur2Vid('train', seed=0, num_records=16,
                                    size=(36, 36))
  it = pipeline.make_train_iterator(src, batch_size=2, crop=33, seed=0)
  return state, it, src


def test_roundtrip_state_iterator_config_with_shardings(tmp_path):
  state, it, src = _state_and_iterator()
  next(it)
  mngr = checkpoint.make_manager(str(tmp_path / 'ck'), keep=2)
  checkpoint.save(mngr, 7, state, data_iter=it, config={'a': 1, 'b': [2, 3]})
  mngr.wait_until_finished()
  expected_next = next(it)

  mesh = sharding.make_mesh()
  abstract = jax.eval_shape(lambda: state)
  target = sharding.with_shardings(
      abstract, sharding.tree_shardings(abstract, mesh, fsdp=True,
                                        min_size=64))
  fresh = pipeline.make_train_iterator(src, batch_size=2, crop=33, seed=0)
  mngr2 = checkpoint.make_manager(str(tmp_path / 'ck'), keep=2)
  assert mngr2.latest_step() == 7
  restored, fresh = checkpoint.restore(mngr2, 7, target, data_iter=fresh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state),
               jax.device_get(restored))
  np.testing.assert_array_equal(restored.hyperplane, state.hyperplane)
  assert restored.params['stem']['conv']['kernel'].sharding.mesh.size == 8
  got = next(fresh)
  np.testing.assert_array_equal(got['sharp'], expected_next['sharp'])
  assert checkpoint.read_config(str(tmp_path / 'ck')) == ({'a': 1, 'b': [2, 3]}, 7)


def test_keep_last_k_and_best(tmp_path):
  state, _, _ = _state_and_iterator()
  mngr = checkpoint.make_manager(str(tmp_path), keep=2, best_metric='eval/hit',
                                 async_save=False)
  hits = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: None}
  for step, hit in hits.items():
    checkpoint.save(mngr, step, state,
                    metrics=None if hit is None else {'eval/hit': hit})
  mngr.wait_until_finished()
  assert mngr.all_steps() == [2, 4, 5]   # best (0.9) + last two


def test_half_written_checkpoint_is_ignored(tmp_path):
  state, _, _ = _state_and_iterator()
  mngr = checkpoint.make_manager(str(tmp_path), keep=3)
  checkpoint.save(mngr, 3, state)
  mngr.wait_until_finished()
  mngr.close()
  # What a crash during orbax's write of step 9 leaves: the temporary
  # directory that is renamed to `9` only once complete.
  tmp = tmp_path / '9.orbax-checkpoint-tmp-1234567'
  (tmp / 'state').mkdir(parents=True)
  (tmp / 'state' / 'junk').write_text('partial')
  assert checkpoint.latest_step(str(tmp_path)) == 3
  assert checkpoint.make_manager(str(tmp_path)).latest_step() == 3


# ------------------------------------------------------------- loop level ---
def _stage_config(**over):
  c = dict(
      stage='ordering', seed=0, precision='float32', sharding={'fsdp': False},
      keep=2, async_checkpoint=True, log_steps=1,
      data={'name': 'synthetic', 'seed': 0, 'num_train': 32, 'num_test': 8,
            'size': (36, 36)},
      model={'name': 'hypercut', 'kwargs': TINY_H},
      optim={'name': 'adamax_torch', 'lr': 1e-3, 'schedule': 'constant'},
      loss={'form': 'official'},
      input={'batch_size': 8, 'crop': 33, 'eval_batch_size': 8,
             'eval_crop': 33, 'worker_count': 0},
      total_steps=4, ckpt_steps=2, best_metric='hit',
      eval={'lpips': False, 'num_examples': 0, 'max_examples': 8})
  c.update(over)
  return ml_collections.ConfigDict(c)


def _final_params(workdir):
  cfg = ml_collections.ConfigDict(checkpoint.read_config(workdir)[0])
  model = ordering_lib.make_model(cfg.model.kwargs)
  tx = optim.make_optimizer(cfg.optim, lambda _: 0.0)
  abstract = jax.eval_shape(ordering_lib.make_init(model, tx, cfg.input.crop),
                            jax.random.key(0))
  state, step = checkpoint.restore_state(workdir, abstract)
  return jax.device_get(state), step


def test_resume_ignores_half_written_and_nan_stops_naming_the_step(tmp_path):
  cfg = _stage_config(total_steps=2)
  loop.run(cfg, str(tmp_path))
  assert checkpoint.latest_step(str(tmp_path)) == 2
  tmp = tmp_path / 'checkpoints' / '3.orbax-checkpoint-tmp-42'
  tmp.mkdir()
  (tmp / 'junk').write_text('partial')
  # Same workdir, longer run (on purpose: resume='override'): resumes from
  # step 2, not from the half save.
  out = loop.run(_stage_config(total_steps=3, ckpt_steps=1,
                               resume='override'), str(tmp_path))
  assert out['ordering'].step == 3
  steps = [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')
           if 'train/loss' in l]
  assert steps == [1, 2, 3]
  assert not tmp.exists()   # cleaned up by the manager



def test_flipped_bytes_resume_from_the_previous_good_step(tmp_path, caplog):
  import checkpoint_integrity_test as damage  # pylint: disable=g-import-not-at-top
  cfg = _stage_config(total_steps=4, ckpt_steps=2, keep=3,
                      async_checkpoint=False)
  loop.run(cfg, str(tmp_path / 'ref'))
  ref, _ = _final_params(str(tmp_path / 'ref'))
  work = tmp_path / 'run'
  loop.run(cfg, str(work))
  damage.flip_bytes(str(work / 'checkpoints' / '4'))
  with caplog.at_level('WARNING'):
    out = loop.run(cfg, str(work))
  lines = [r.getMessage() for r in caplog.records
           if 'is corrupt' in r.getMessage()]
  assert len(lines) == 1 and '\n' not in lines[0], lines
  assert 'step 4' in lines[0] and 'resuming from step 2' in lines[0]
  assert (work / 'checkpoints.corrupt' / '4').is_dir()   # kept, not deleted
  assert out['ordering'].step == 4
  got, step = _final_params(str(work))
  assert step == 4
  jax.tree.map(np.testing.assert_array_equal, ref, got)   # retrained 3..4
  rows = [json.loads(l) for l in open(work / 'metrics.jsonl')]
  assert [r['step'] for r in rows if 'train/loss' in r] == [1, 2, 3, 4]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path):
  # lr 1e38: step 1's update blows the params up, so step 2's loss is not
  # finite. Training stops naming step 2; the state after step 2 is not saved.
  bad = _stage_config(total_steps=8, ckpt_steps=1,
                      optim={'name': 'sgd', 'lr': 1e38, 'schedule': 'constant'})
  with pytest.raises(FloatingPointError,
                     match=r'train/loss=(nan|inf|-inf) at step 2: stopping'):
    loop.run(bad, str(tmp_path))
  assert checkpoint.latest_step(str(tmp_path)) == 1


def test_sigterm_saves_a_restorable_checkpoint(tmp_path):
  cfg = _stage_config(total_steps=10_000, ckpt_steps=None)

  def send_sigterm_after_first_step():
    path = tmp_path / 'metrics.jsonl'
    deadline = time.time() + 300
    while time.time() < deadline:
      if path.exists() and 'train/loss' in path.read_text():
        os.kill(os.getpid(), signal.SIGTERM)
        return
      time.sleep(0.05)

  watcher = threading.Thread(target=send_sigterm_after_first_step, daemon=True)
  watcher.start()
  out = loop.run(cfg, str(tmp_path))
  watcher.join()
  result = out['ordering']
  assert result.preempted and 1 <= result.step < 10_000
  state, step = _final_params(str(tmp_path))
  assert step == result.step and int(state.step) == step
  assert not (tmp_path / 'results.md').exists()
  # The handler was only active during the run.
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# ------------------------------------------------------ kill -9 and resume ---
RESUME_ARGS = ['--config.total_steps=12', '--config.ckpt_steps=2',
               '--config.log_steps=1', '--config.data.num_train=64',
               '--config.async_checkpoint=true']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """(final params, metrics rows) of the RESUME_ARGS run, uninterrupted, in
  this process (same 8 fake devices as the subprocesses, which inherit
  XLA_FLAGS)."""
  ref_cfg = _smoke_ordering_config()
  ref_cfg.total_steps = 12
  ref_cfg.ckpt_steps = 2
  ref_cfg.log_steps = 1
  ref_cfg.data.num_train = 64
  work = tmp_path_factory.mktemp('ref')
  loop.run(ref_cfg, str(work))
  ref, ref_step = _final_params(str(work))
  assert ref_step == 12
  return ref, [json.loads(l) for l in open(work / 'metrics.jsonl')]


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted_run(tmp_path, uninterrupted):
  args = RESUME_ARGS
  ref, ref_rows = uninterrupted
  work = str(tmp_path / 'run')
  cmd = [sys.executable, '-m', 'hypercut_jax.main',
         '--config=configs/synthetic.py:stage=ordering,smoke',
         f'--workdir={work}', *args]
  kill_after = int(np.random.default_rng(0).choice([2, 4, 6, 8]))
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  try:
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
      if (checkpoint.latest_step(work) or 0) >= kill_after:
        break
      time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  killed_at = checkpoint.latest_step(work)
  assert killed_at is not None and killed_at < 12

  rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                         timeout=400)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  got, step = _final_params(work)
  assert step == 12
  jax.tree.map(np.testing.assert_array_equal, ref, got)   # bit for bit
  # metrics.jsonl reads as one run: rows logged after the checkpoint the
  # kill left are dropped on resume, then logged again once.
  rows = [json.loads(l) for l in open(os.path.join(work, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if 'train/loss' in r] == list(range(1, 13))
  assert ([r['step'] for r in rows if 'eval/hit' in r]
          == [r['step'] for r in ref_rows if 'eval/hit' in r])


@pytest.mark.slow
def test_sigterm_exits_75_then_rerun_equals_uninterrupted_run(
    tmp_path, uninterrupted):
  args = RESUME_ARGS
  work = str(tmp_path / 'run')
  cmd = [sys.executable, '-m', 'hypercut_jax.main',
         '--config=configs/synthetic.py:stage=ordering,smoke',
         f'--workdir={work}', *args]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  try:
    metrics = os.path.join(work, 'metrics.jsonl')
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
      if os.path.exists(metrics) and 'train/loss' in open(metrics).read():
        break
      time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=400)
  finally:
    proc.kill()
  assert proc.returncode == 75, err[-3000:]
  assert 'preempted: a checkpoint is saved; rerun the same command' in err
  assert 'Traceback' not in err
  stopped_at = checkpoint.latest_step(work)
  assert stopped_at is not None and stopped_at < 12

  rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                         timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  ref, _ = uninterrupted
  got, step = _final_params(work)
  assert step == 12
  jax.tree.map(np.testing.assert_array_equal, ref, got)   # bit for bit
  rows = [json.loads(l) for l in open(os.path.join(work, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if 'train/loss' in r] == list(range(1, 13))


def _smoke_ordering_config():
  return synthetic_configs.get_config('stage=ordering,smoke')

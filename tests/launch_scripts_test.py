"""Tests for launch/*.sh, launch/*.sbatch: syntax, --dry-run output, input checks.

No test starts a training process: `--dry-run` must only print, and the
non-dry runs here go to fake `gcloud` / `srun` executables on PATH that
record their arguments. The real multi-process run is in
tests/multiprocess_test.py.
"""
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
LOCAL = LAUNCH / 'local_multiprocess.sh'
TPU = LAUNCH / 'tpu_pod.sh'
SLURM = LAUNCH / 'slurm_gpu.sbatch'
SCRIPTS = (LOCAL, TPU, SLURM)
MAIN = ['--config=configs/synthetic.py:smoke', '--workdir=/shared/run1']
TPU_ARGS = ['--tpu', 'hc-v4-32', '--zone', 'us-central2-b']


def _fake_bin(tmp_path, *names):
  """A PATH dir whose `names` append 'name argv... | ENV' lines to calls.log."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  log = tmp_path / 'calls.log'
  for name in names:
    exe = bin_dir / name
    exe.write_text(
        '#!/usr/bin/env bash\n'
        f'printf "%s " {name} "$@" >> {log}\n'
        f'echo "| HYPERCUT_DISTRIBUTED=${{HYPERCUT_DISTRIBUTED:-}} '
        f'JAX_LOCAL_DEVICE_IDS=${{JAX_LOCAL_DEVICE_IDS:-}}" >> {log}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
  return bin_dir, log


def _run(script, *args, tmp_path, fakes=('gcloud', 'srun'), env=None,
         cwd=REPO):
  bin_dir, log = _fake_bin(tmp_path, *fakes)
  base = {k: v for k, v in os.environ.items()
          if not k.startswith(('SLURM_', 'JAX_', 'HYPERCUT_', 'CUDA_'))}
  base['PATH'] = f'{bin_dir}{os.pathsep}{base.get("PATH", "")}'
  base['TMPDIR'] = str(tmp_path)
  base.update(env or {})
  proc = subprocess.run(['bash', str(script), *args], cwd=cwd, env=base,
                        capture_output=True, text=True, timeout=60,
                        check=False)
  calls = log.read_text() if log.exists() else ''
  return proc, calls


def _commands(stdout):
  """The lines the scripts print for each command ('+ ...')."""
  return [line[2:] for line in stdout.splitlines() if line.startswith('+ ')]


def _assert_usage_error(proc, *needles):
  assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
  assert 'usage:' in proc.stderr, proc.stderr
  for needle in needles:
    assert needle in proc.stderr, (needle, proc.stderr)


# ----------------------------------------------------------------- syntax ---
@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_executable_bash(script):
  text = script.read_text()
  assert text.startswith('#!/usr/bin/env bash\n')
  assert 'set -euo pipefail' in text
  assert os.access(script, os.X_OK), f'{script} is not executable'
  proc = subprocess.run(['bash', '-n', str(script)], capture_output=True,
                        text=True, timeout=30, check=False)
  assert proc.returncode == 0, proc.stderr
  # shellcheck runs where it is installed (`apt-get install shellcheck`);
  # bash -n above runs everywhere.
  if shutil.which('shellcheck'):
    proc = subprocess.run(['shellcheck', '--shell=bash', str(script)],
                          capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_help_prints_usage(script, tmp_path):
  proc, calls = _run(script, *(['train'] if script == TPU else []), '--help',
                     tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith('usage:'), proc.stdout
  assert '--dry-run' in proc.stdout
  assert not calls


# ------------------------------------------------------ local_multiprocess ---
def test_local_dry_run_prints_one_command_per_process(tmp_path):
  workdir = tmp_path / 'w'
  proc, _ = _run(LOCAL, '-n', '3', '-k', '4', '--port', '12345', '--dry-run',
                 '--python', '/opt/py/bin/python', '--', '--config=configs/synthetic.py:smoke',
                 f'--workdir={workdir}', '--config.seed=3', tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  cmds = _commands(proc.stdout)
  assert len(cmds) == 3, proc.stdout
  for rank, cmd in enumerate(cmds):
    for part in ('JAX_PLATFORMS=cpu',
                 'XLA_FLAGS=--xla_force_host_platform_device_count=4',
                 'HYPERCUT_DISTRIBUTED=1',
                 'JAX_COORDINATOR_ADDRESS=127.0.0.1:12345',
                 'JAX_LOCAL_DEVICE_IDS=0,1,2,3', 'SLURM_NTASKS=3',
                 f'SLURM_PROCID={rank}', f'SLURM_LOCALID={rank}',
                 '/opt/py/bin/python -m hypercut_jax.main '
                 '--config=configs/synthetic.py:smoke '
                 f'--workdir={workdir} --config.seed=3',
                 f'{workdir}/launch_logs/process_{rank}.log'):
      assert part in cmd, (part, cmd)
  assert not workdir.exists(), 'a dry run must not create anything'


def test_local_dry_run_defaults(tmp_path):
  proc, _ = _run(LOCAL, '--dry-run', '--', '--config', 'configs/synthetic.py',
                 '--workdir', '/tmp/x', tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  cmds = _commands(proc.stdout)
  assert len(cmds) == 2
  assert 'device_count=2' in cmds[1] and 'SLURM_PROCID=1' in cmds[1]
  assert '--config configs/synthetic.py --workdir /tmp/x' in cmds[0]


@pytest.mark.parametrize('args,needle', [
    (['--', '--config=c'], 'missing --workdir'),
    (['--', '--workdir=/tmp/w'], 'missing --config'),
    ([], 'missing --config'),
    (['-n', '0', '--', *MAIN], '--num-processes'),
    (['-n', 'two', '--', *MAIN], '--num-processes'),
    (['-k', '-1', '--', *MAIN], '--devices-per-process'),
    (['--port', '80', '--', *MAIN], '--port'),
    (['--timeout', '1.5', '--', *MAIN], '--timeout'),
    (['--port'], '--port needs a value'),
    (['--bogus', '--', *MAIN], "unknown option '--bogus'"),
    (['--', '--config=c', '--workdir=gs://b/w'], 'local path'),
])
def test_local_rejects_bad_arguments(args, needle, tmp_path):
  proc, _ = _run(LOCAL, '--dry-run', *args, tmp_path=tmp_path)
  _assert_usage_error(proc, needle)


# ---------------------------------------------------------------- tpu_pod ---
def test_tpu_dry_run_all_prints_every_step_and_runs_nothing(tmp_path):
  proc, calls = _run(
      TPU, 'all', *TPU_ARGS, '--project', 'my-proj', '--accelerator-type',
      'v4-32', '--spot', '--data-src', 'gs://bucket/tfds', '--data-dir',
      '/home/me/tfds', '--dry-run', '--', *MAIN,
      '--config.data.data_dir=/home/me/tfds', tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert not calls, 'a dry run must not call gcloud'
  assert not list(tmp_path.glob('hypercut_jax_*.tar.gz'))
  cmds = _commands(proc.stdout)
  create, tar, scp, install, data, train = cmds
  assert create == ('gcloud compute tpus tpu-vm create hc-v4-32 '
                    '--zone=us-central2-b --project=my-proj '
                    '--accelerator-type=v4-32 --version=tpu-ubuntu2204-base '
                    '--spot')
  assert 'git ls-files' in tar and 'tar --null' in tar
  assert scp.startswith('gcloud compute tpus tpu-vm scp ')
  assert 'hc-v4-32:hypercut_jax.tar.gz' in scp and '--worker=all' in scp
  for part in ('tpu-vm ssh hc-v4-32', '--worker=all', 'jax[tpu]==0.10.2',
               'pip install -q -e hypercut_jax'):
    assert part in install, (part, install)
  assert 'gcloud storage rsync --recursive gs://bucket/tfds /home/me/tfds' in data
  for part in ('--worker=all', 'cd hypercut_jax',
               'HYPERCUT_DISTRIBUTED=1 python3 -m hypercut_jax.main '
               '--config=configs/synthetic.py:smoke --workdir=/shared/run1 '
               '--config.data.data_dir=/home/me/tfds',
               'tee -a ~/hypercut_train.log'):
    assert part in train, (part, train)
  assert 'launch/tpu_pod.sh delete --tpu hc-v4-32' in proc.stdout


def test_tpu_dry_run_detach_logs_stop_delete(tmp_path):
  proc, _ = _run(TPU, 'train', *TPU_ARGS, '--detach', '--dry-run', '--',
                 *MAIN, tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  (train,) = _commands(proc.stdout)
  assert 'nohup env HYPERCUT_DISTRIBUTED=1 python3 -m hypercut_jax.main' in train
  assert '> ~/hypercut_train.pid' in train
  proc, _ = _run(TPU, 'logs', *TPU_ARGS, '--worker', '3', '--dry-run',
                 tmp_path=tmp_path)
  (logs,) = _commands(proc.stdout)
  assert '--worker=3' in logs and 'tail -n 200 -F ~/hypercut_train.log' in logs
  proc, _ = _run(TPU, 'stop', *TPU_ARGS, '--dry-run', tmp_path=tmp_path)
  (stop,) = _commands(proc.stdout)
  assert '--worker=all' in stop and 'kill -TERM' in stop
  proc, _ = _run(TPU, 'delete', *TPU_ARGS, '--dry-run', tmp_path=tmp_path)
  assert _commands(proc.stdout) == [
      'gcloud compute tpus tpu-vm delete hc-v4-32 --zone=us-central2-b --quiet']


def test_tpu_train_runs_gcloud_on_all_workers(tmp_path):
  proc, calls = _run(TPU, 'train', *TPU_ARGS, '--', *MAIN, tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  (call,) = calls.splitlines()
  assert call.startswith('gcloud compute tpus tpu-vm ssh hc-v4-32 '
                         '--zone=us-central2-b --worker=all --command=')
  assert ('HYPERCUT_DISTRIBUTED=1 python3 -m hypercut_jax.main '
          '--config=configs/synthetic.py:smoke --workdir=/shared/run1') in call
  assert _commands(proc.stdout), 'the command must be printed before it runs'


@pytest.mark.parametrize('args,needle', [
    ([], "unknown command '--dry-run'"),
    (['launch', *TPU_ARGS], "unknown command 'launch'"),
    (['delete', '--zone', 'us-central2-b'], 'missing --tpu'),
    (['delete', '--tpu', 'hc'], 'missing --zone'),
    (['delete', '--tpu', 'HC_1', '--zone', 'us-central2-b'], '--tpu'),
    (['delete', '--tpu', 'hc', '--zone', 'central'], '--zone'),
    (['create', *TPU_ARGS], '--accelerator-type'),
    (['create', *TPU_ARGS, '--accelerator-type', 'big'], '--accelerator-type'),
    (['train', *TPU_ARGS], 'missing --config'),
    (['train', *TPU_ARGS, '--', '--config=c'], 'missing --workdir'),
    (['train', *TPU_ARGS, '--', '--config=c', '--workdir=runs/x'],
     'absolute path'),
    (['train', *TPU_ARGS, '--', '--config=c', '--workdir=gs://b/x'],
     'absolute path'),
    (['data', *TPU_ARGS, '--data-dir', '/d'], '--data-src'),
    (['data', *TPU_ARGS, '--data-src', 'gs://b/t'], '--data-dir'),
    (['logs', *TPU_ARGS, '--worker', 'x'], '--worker'),
    (['delete', *TPU_ARGS, '--', *MAIN], 'takes no hypercut_jax.main flags'),
    (['setup', *TPU_ARGS, '--remote-dir', '../etc'], '--remote-dir'),
    (['delete', *TPU_ARGS, '--bogus'], "unknown option '--bogus'"),
])
def test_tpu_rejects_bad_arguments(args, needle, tmp_path):
  proc, calls = _run(TPU, *args, '--dry-run', tmp_path=tmp_path)
  _assert_usage_error(proc, needle)
  assert not calls


def test_tpu_without_arguments_prints_usage(tmp_path):
  proc, calls = _run(TPU, tmp_path=tmp_path)
  _assert_usage_error(proc, 'missing command')
  assert not calls


# -------------------------------------------------------------- slurm_gpu ---
def test_slurm_dry_run_one_process_per_gpu(tmp_path):
  proc, calls = _run(SLURM, '--dry-run', '--nodes', '2', '--gpus-per-node',
                     '4', '--', *MAIN, tmp_path=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert not calls
  (cmd,) = _commands(proc.stdout)
  assert cmd == ('HYPERCUT_DISTRIBUTED=1 srun --nodes=2 --ntasks=8 '
                 '--ntasks-per-node=4 --kill-on-bad-exit=1 '
                 f'--chdir={REPO} python3 -m hypercut_jax.main '
                 '--config=configs/synthetic.py:smoke --workdir=/shared/run1')


def test_slurm_dry_run_per_node_reads_the_allocation(tmp_path):
  proc, _ = _run(SLURM, '--dry-run', '--per-node', '--', *MAIN,
                 tmp_path=tmp_path,
                 env={'SLURM_JOB_NUM_NODES': '3', 'SLURM_GPUS_ON_NODE': '8',
                      'SLURM_SUBMIT_DIR': '/home/me/hc'})
  assert proc.returncode == 0, proc.stderr
  (cmd,) = _commands(proc.stdout)
  assert cmd.startswith('HYPERCUT_DISTRIBUTED=1 JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7 '
                        'srun --nodes=3 --ntasks=3 --ntasks-per-node=1 ')
  assert '--chdir=/home/me/hc' in cmd


def test_slurm_job_runs_srun_with_the_environment(tmp_path):
  proc, calls = _run(SLURM, '--per-node', '--', *MAIN, tmp_path=tmp_path,
                     env={'SLURM_JOB_ID': '77', 'SLURM_JOB_NUM_NODES': '2',
                          'CUDA_VISIBLE_DEVICES': '0,1'})
  assert proc.returncode == 0, proc.stdout + proc.stderr
  (call,) = calls.splitlines()
  assert call.startswith('srun --nodes=2 --ntasks=2 --ntasks-per-node=1 ')
  assert 'hypercut_jax.main --config=configs/synthetic.py:smoke' in call
  assert call.endswith('| HYPERCUT_DISTRIBUTED=1 JAX_LOCAL_DEVICE_IDS=0,1')


@pytest.mark.parametrize('args,env,needle', [
    (['--', *MAIN], {}, 'not inside a SLURM job'),
    (['--dry-run', '--gpus-per-node', '4', '--', *MAIN], {}, 'pass --nodes'),
    (['--dry-run', '--nodes', '2', '--', *MAIN], {}, 'pass --gpus-per-node'),
    (['--dry-run', '--nodes', '0', '--gpus-per-node', '4', '--', *MAIN], {},
     '--nodes must be'),
    (['--dry-run', '--nodes', '1', '--gpus-per-node', 'x', '--', *MAIN], {},
     '--gpus-per-node must be'),
    (['--dry-run', '--nodes', '1', '--gpus-per-node', '1'], {},
     'missing --config'),
    (['--dry-run', '--nodes', '1', '--gpus-per-node', '1', '--', '--config=c',
      '--workdir=rel'], {}, 'absolute path'),
    (['--dry-run', '--bogus'], {}, "unknown option '--bogus'"),
    (['--', *MAIN], {'SLURM_JOB_ID': '5', 'SLURM_JOB_NUM_NODES': '1',
                     'SLURM_GPUS_ON_NODE': '1'}, 'repository root'),
])
def test_slurm_rejects_bad_arguments(args, env, needle, tmp_path):
  proc, calls = _run(SLURM, *args, tmp_path=tmp_path, env=env,
                     cwd=tmp_path)
  _assert_usage_error(proc, needle)
  assert not calls

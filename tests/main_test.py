"""Tests for hypercut_jax/main.py: the CLI end to end and its failures."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, timeout=600):
  return subprocess.run([sys.executable, '-m', 'hypercut_jax.main', *args],
                        cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def test_help_documents_the_cli():
  out = _main('--help', timeout=120)   # absl exits with 1 after --help
  assert '--workdir' in out.stdout and '--config' in out.stdout
  assert 'configs/synthetic.py' in out.stdout   # the module docstring


@pytest.mark.parametrize('override,message', [
    ('--config.ordering.optim.lrr=1', 'lrr'),
    ('--config.ordering.input.batch_size=abc', 'batch_size'),
])
def test_bad_override_fails_before_anything_runs(tmp_path, override, message):
  work = tmp_path / 'w'
  out = _main('--config=configs/synthetic.py:smoke', f'--workdir={work}',
              override, timeout=120)
  assert out.returncode != 0
  assert message in out.stderr
  assert not work.exists()   # nothing was built, compiled or written


def test_invalid_value_is_one_clear_error(tmp_path):
  work = tmp_path / 'w'
  out = _main('--config=configs/synthetic.py:smoke', f'--workdir={work}',
              '--config.generator.model.name=unet3d', timeout=180)
  assert out.returncode != 0
  assert ("ValueError: config.generator.model.name='unet3d'; known: "
          "['jin2018', 'purohit2019'" in out.stderr)
  assert not work.exists()


@pytest.mark.slow
def test_readme_command_smoke_end_to_end(tmp_path):
  work = tmp_path / 'synthetic'
  out = _main('--config=configs/synthetic.py:smoke', f'--workdir={work}')
  assert out.returncode == 0, out.stderr[-4000:]
  results = (work / 'results.md').read_text()
  assert '## Ordering network H' in results and 'hit (%)' in results
  assert '## Generator unet + HyperCUT' in results and 'pPSNR' in results
  assert results.strip() in out.stdout
  for stage in ('ordering', 'generator'):
    lines = [json.loads(l) for l in open(work / stage / 'metrics.jsonl')]
    assert [l['step'] for l in lines if 'train/loss' in l] == [1, 2]
    assert any('eval/hit' in l or 'eval/ppsnr' in l for l in lines)
    assert (work / stage / 'checkpoints' / '2').is_dir()
    assert (work / stage / 'config.json').is_file()
    assert os.listdir(work / stage / 'tb')
  assert (work / 'generator' / 'examples' / 'step_0000002.png').is_file()
  assert (work / 'generator' / 'examples' / 'step_0000002.gif').is_file()
  # H is frozen: the generator's checkpoint holds no H parameters.
  gen_cfg = json.loads((work / 'generator' / 'config.json').read_text())
  assert gen_cfg['hypercut']['checkpoint'] == str(work / 'ordering')


def _error_lines(stderr: str) -> list[str]:
  """stderr without absl's log lines (I/W/E<date> ...)."""
  return [l for l in stderr.splitlines()
          if l.strip() and not (l[:1] in 'IWE' and l[1:5].isdigit())]


@pytest.mark.parametrize('args,message', [
    (['--config=configs/no_such_file.py'],
     '--config=configs/no_such_file.py: cannot load the config file'),
    (['--config=configs/synthetic.py:smoke',
      '--config.generator.hypercut.alhpa=0.3'],
     "--config.generator.hypercut.alhpa: no such config field 'alhpa'. "
     'Did you mean "alpha"'),
    (['--config=configs/synthetic.py:smok'],
     "unknown config arg 'smok'"),
    (['--config=configs/synthetic.py:smoke',
      '--config.generator.input.crop=60', '--config.generator.input.eval_crop=60'],
     "input.crop=60 (generator stage) is larger than the 'synthetic' records "
     '(40x40)'),
])
def test_user_errors_are_one_line_with_status_2(tmp_path, args, message):
  work = tmp_path / 'w'
  out = _main(*args, f'--workdir={work}', timeout=180)
  assert out.returncode == 2, out.stderr[-3000:]
  lines = _error_lines(out.stderr)
  assert len(lines) == 1 and lines[0].startswith('error: '), lines
  assert message in lines[0]
  assert 'Traceback' not in out.stderr
  assert not work.exists()


def test_verbose_shows_the_traceback(tmp_path):
  out = _main('--config=configs/synthetic.py:smoke', f'--workdir={tmp_path}/w',
              '--config.generator.model.name=unet3d', '--verbose', timeout=180)
  assert out.returncode == 2
  assert 'Traceback' in out.stderr and 'error: ValueError' in out.stderr


def test_no_checkpoint_that_verifies_is_one_line_with_status_1(tmp_path):
  from checkpoint_integrity_test import flip_bytes  # pylint: disable=g-import-not-at-top
  work = tmp_path / 'w'
  args = ('--config=configs/synthetic.py:stage=ordering,smoke',
          f'--workdir={work}')
  assert _main(*args).returncode == 0
  flip_bytes(str(work / 'checkpoints' / '2'))
  out = _main(*args)
  assert out.returncode == 1, out.stderr[-3000:]
  lines = _error_lines(out.stderr)
  assert len(lines) == 1, lines
  assert lines[0].startswith('error: CheckpointError: no checkpoint in ')
  assert 'step 2 (state: ' in lines[0]
  assert 'Traceback' not in out.stderr
  assert (work / 'checkpoints' / '2').is_dir()   # nothing moved

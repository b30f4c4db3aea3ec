"""Tests of the reproduction script (hypercut_jax/reproduce.py) and its
configs (hypercut_jax/configs/reproduce.py).

The end-to-end test runs the whole script (`python -m hypercut_jax.reproduce`)
in `mode=tiny` (each run a few steps of a tiny model, then the report) into a
temp dir, with a temp copy of docs/reproduction.md, and checks every table and
figure file. To stay short on a 2-core CPU it trains one run of each kind
(H, a naive and a + HyperCUT generator, the AfB predictor and decomposer +
HyperCUT): the other runs differ only in their config, checked above.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hypercut_jax import reproduce
from hypercut_jax.configs import reproduce as reproduce_configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, 'docs', 'reproduction.md')


@pytest.fixture(scope='module')
def cfg_module():
  return reproduce_configs


# ----------------------------------------------------------------- configs ---
@pytest.mark.parametrize('mode', ['tiny', 'cpu'])
def test_every_run_config_validates(cfg_module, mode, tmp_path):
  from hypercut_jax.train import loop  # pylint: disable=g-import-not-at-top
  h_dir = tmp_path / 'h'
  h_dir.mkdir()
  names = cfg_module.run_names(afb=True)
  assert names[0] == 'h' and len(names) == len(set(names))
  for name in names:
    _, _, _, use_h = cfg_module.RUN_SPECS[name]
    arg = reproduce.config_arg(name, mode=mode, dataset='synthetic', seed=3,
                               h_checkpoint=str(h_dir) if use_h else '')
    config = cfg_module.get_config(arg)
    loop.validate(config)
    assert config.seed == 3 and config.data.seed == 3
    if use_h:
      assert config.hypercut.checkpoint == str(h_dir)
      assert config.hypercut.alpha == cfg_module.ALPHA
    elif config.stage == 'generator':
      assert config.hypercut.alpha == 0.0


def test_run_specs_losses(cfg_module):
  """naive = Charbonnier; oi = order-invariant; + HyperCUT only on _hypercut."""
  for name, (stage, _, deblur, use_h) in cfg_module.RUN_SPECS.items():
    if stage != 'generator':
      continue
    cfg = cfg_module.get_config(f'run={name},mode=tiny')
    assert cfg.loss.deblur == deblur
    assert use_h == name.endswith('hypercut')
    if name.endswith('naive'):
      assert deblur == 'charbonnier'
    if '_oi' in name:
      assert deblur == 'order_invariant'


def test_paper_mode_uses_paper_settings(cfg_module, tmp_path):
  cfg = cfg_module.get_config(f'run=h,mode=paper,dataset=reds,data_dir={tmp_path}')
  assert cfg.data.name == 'reds' and cfg.total_epochs == 100
  assert cfg.model.kwargs['nf'] == 32 and cfg.model.kwargs['embed_dim'] == 128
  assert cfg.input.crop == 256
  cfg = cfg_module.get_config(
      f'run=jin2018_oi_hypercut,mode=paper,dataset=rb2v,subset=face,'
      f'data_dir={tmp_path},h_checkpoint={tmp_path}')
  assert cfg.data.subset == 'face' and cfg.hypercut.alpha == 0.2
  assert not dict(cfg.model.kwargs)   # the full network


@pytest.mark.parametrize('arg, match', [
    ('run=nope', 'run'),
    ('mode=fast', 'mode'),
    ('run=h,mode=paper', 'real dataset'),
    ('run=h,mode=cpu,dataset=reds,data_dir=/x', 'mode=cpu'),
    ('run=h,mode=paper,dataset=baist', 'data_dir'),
    ('colour=red', 'colour'),
])
def test_bad_config_args(cfg_module, arg, match):
  with pytest.raises(ValueError, match=match):
    cfg_module.get_config(arg)


def test_select_runs(cfg_module):
  assert reproduce.select_runs(cfg_module, 'jin2018_oi,h', afb=False) == [
      'h', 'jin2018_oi']
  assert reproduce.select_runs(cfg_module, None, afb=False) == list(
      cfg_module.BASE_RUNS)
  with pytest.raises(ValueError, match='jin2019'):
    reproduce.select_runs(cfg_module, 'h,jin2019', afb=False)


def test_config_file_flag(tmp_path):
  """--config_file: a file providing what the configs module does (the
  `configs/reproduce.py` entry point re-exports it); default: the module."""
  assert reproduce.load_config_module() is reproduce_configs
  module = reproduce.load_config_module(
      os.path.join(REPO, 'configs', 'reproduce.py'))
  assert module.RUN_SPECS == reproduce_configs.RUN_SPECS
  assert module.AFB_ENABLED == reproduce_configs.AFB_ENABLED
  assert reproduce.select_runs(module, None, afb=True) == list(
      reproduce_configs.run_names(afb=True))
  arg = reproduce.config_arg('afb_hypercut', mode='tiny', dataset='synthetic',
                             seed=1)
  assert module.get_config(arg).to_dict() == (
      reproduce_configs.get_config(arg).to_dict())
  with pytest.raises(FileNotFoundError, match='nope.py'):
    reproduce.load_config_module(str(tmp_path / 'nope.py'))


# ----------------------------------------------------------------- helpers ---
def test_rewrite_doc(tmp_path):
  doc = tmp_path / 'doc.md'
  doc.write_text(f'intro\n{reproduce.BEGIN}\nold numbers\n{reproduce.END}\n'
                 'outro\n')
  reproduce.rewrite_doc(str(doc), '| a |\n|---|\n| 1 |')
  text = doc.read_text()
  assert 'old numbers' not in text
  assert text == (f'intro\n{reproduce.BEGIN}\n| a |\n|---|\n| 1 |\n'
                  f'{reproduce.END}\noutro\n')
  reproduce.rewrite_doc(str(doc), 'again')   # idempotent markers
  assert text.replace('| a |\n|---|\n| 1 |', 'again') == doc.read_text()
  bad = tmp_path / 'bad.md'
  bad.write_text('no markers\n')
  with pytest.raises(ValueError, match='markers'):
    reproduce.rewrite_doc(str(bad), 'x')


class _FakeConfigs:
  """A configs module whose one run's config has a settable step count."""
  RUN_SPECS = {'h': ('ordering', None, None, False)}

  def __init__(self, steps):
    self.steps = steps

  def get_config(self, arg):
    import ml_collections  # pylint: disable=g-import-not-at-top
    return ml_collections.ConfigDict({'stage': 'ordering',
                                      'total_steps': self.steps,
                                      'hypercut': {'checkpoint': arg}})


def test_done_runs_are_skipped_only_with_the_same_config(tmp_path):
  """done.json vouches for one config: the same is skipped, another stops."""
  fake = _FakeConfigs(steps=10)
  fingerprint = reproduce.config_fingerprint(fake.get_config(''))
  assert fingerprint == reproduce.config_fingerprint(fake.get_config(''))
  assert fingerprint != reproduce.config_fingerprint(
      _FakeConfigs(steps=11).get_config(''))
  # the sibling H run's path is not part of it (a moved workdir matches)
  assert fingerprint == reproduce.config_fingerprint(
      fake.get_config('/elsewhere/h'))
  (tmp_path / 'h').mkdir()
  marker = tmp_path / 'h' / 'done.json'
  marker.write_text(json.dumps({'name': 'h', 'steps': 10, 'seconds': 1.0,
                                'config_sha256': fingerprint}))
  logs = []
  records = reproduce.train_runs(fake, ['h'], str(tmp_path), mode='cpu',
                                 dataset='synthetic', seed=0, log=logs.append)
  assert records['h']['steps'] == 10 and 'skipped' in logs[0]
  with pytest.raises(ValueError, match=r"run 'h' in .*another config"):
    reproduce.train_runs(_FakeConfigs(steps=11), ['h'], str(tmp_path),
                         mode='cpu', dataset='synthetic', seed=0,
                         log=logs.append)
  marker.write_text(json.dumps({'name': 'h', 'steps': 10, 'seconds': 1.0}))
  with pytest.raises(ValueError, match='delete'):   # a marker without one
    reproduce.train_runs(fake, ['h'], str(tmp_path), mode='cpu',
                         dataset='synthetic', seed=0, log=logs.append)


def test_pca_2d_finds_the_main_axes():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(200, 2)) * np.array([10.0, 3.0])
  basis = np.linalg.qr(rng.normal(size=(6, 6)))[0][:, :2]
  x = z @ basis.T + 0.01 * rng.normal(size=(200, 6)) + 5.0
  xy, ratio = reproduce.pca_2d(x)
  assert xy.shape == (200, 2)
  assert ratio[0] > ratio[1] > 0 and ratio.sum() > 0.99
  # Up to sign, the projections are the centred latent coordinates.
  for k in range(2):
    c = np.corrcoef(xy[:, k], z[:, k])[0, 1]
    assert abs(c) > 0.99


def test_outer_gains_and_tables():
  def frames(values):
    return {**{f'ppsnr_f{i}': v for i, v in enumerate(values)},
            'ppsnr': float(np.mean(values)), 'pssim': 0.5, 'plpips': 0.2,
            'pred_hit': 0.5, 'pred_con@2': 0.5, 'pred_con@3': 0.25, 'n': 4}
  gen = {'jin2018_naive': frames([20, 21, 22, 30, 22, 21, 20]),
         'jin2018_oi': frames([21, 22, 23, 25, 23, 22, 21]),
         'jin2018_oi_hypercut': frames([23, 23, 23, 25, 23, 23, 24])}
  gains = reproduce.outer_gains(gen)
  g = gains['jin2018_oi_hypercut']
  assert g['vs_baseline']['reference'] == 'jin2018_oi'
  assert g['vs_baseline']['frame1'] == pytest.approx(2.0)
  assert g['vs_baseline']['frame7'] == pytest.approx(3.0)
  assert g['vs_naive']['frame1'] == pytest.approx(3.0)
  table = reproduce.frames_table(gen, list(gen))
  assert table.count('\n') == 4 and '| frame 7 |' in table.splitlines()[0]
  assert '23.00 | 23.00 | 23.00 | 25.00 | 23.00 | 23.00 | 24.00' in table
  assert '+2.00 | +3.00' in reproduce.gains_table(gains)
  pooled = reproduce.pooled_table(gen, list(gen))
  assert '25.0' in pooled   # pred con@3 in percent


def test_copy_the_blur_from_the_evaluator_metrics():
  metrics = {'ppsnr': 25.0, 'ppsnr_f0': 24.0, 'pred_hit': 1.0, 'n': 8.0,
             'blur/ppsnr': 21.0, 'blur/ppsnr_f0': 19.0, 'blur/pssim': 0.6}
  model, blur = reproduce.split_baseline(metrics)
  assert model == {'ppsnr': 25.0, 'ppsnr_f0': 24.0, 'pred_hit': 1.0, 'n': 8.0}
  assert blur == {'ppsnr': 21.0, 'ppsnr_f0': 19.0, 'pssim': 0.6, 'n': 8.0}
  assert reproduce.split_baseline({'ppsnr': 1.0, 'n': 2.0})[1] == {}
  # Two test sets whose baselines score the same share one row.
  assert reproduce._same_metrics(blur, {**blur, 'ppsnr': 21.0 + 1e-7})
  assert not reproduce._same_metrics(blur, {**blur, 'ppsnr': 21.1})
  assert not reproduce._same_metrics(blur, {'ppsnr': 21.0})
  blur_u8 = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
  ex = reproduce.copy_blur_examples({'blur': blur_u8, 'pred': None, 'gt': 0})
  assert ex['pred'].shape == (2, 7, 3, 4, 3) and ex['pred'].dtype == np.float32
  np.testing.assert_allclose(ex['pred'][:, 6], blur_u8 / 255.0)
  # Pooled rows: the baseline has no pred hit / con; one row per test set.
  gen = {'jin2018_naive': {'ppsnr': 25.0, 'pssim': 0.7, 'pred_hit': 0.5}}
  full = {**blur, 'ppsnr_f0': 19.0}
  one = reproduce.pooled_table(gen, list(gen), full)
  assert '| copy the blur | 21.00 | 0.6000 | - | - | - | - |' in one
  two = reproduce.pooled_table(gen, list(gen), [('copy the blur (a)', full),
                                                ('copy the blur (b)', full)])
  assert '| copy the blur (a) |' in two and '| copy the blur (b) |' in two


# -------------------------------------------------------------- end to end ---
E2E_RUNS = ('h', 'purohit2019_naive', 'purohit2019_oi_hypercut',
            'afb_predictor', 'afb_hypercut')


@pytest.mark.slow
def test_whole_script_tiny(tmp_path):
  """Runs (tiny) then the report: every table and figure is written."""
  workdir, out = tmp_path / 'runs', tmp_path / 'docs' / 'reproduction'
  doc = tmp_path / 'docs' / 'reproduction.md'
  doc.parent.mkdir()
  shutil.copy(DOC, doc)
  env = dict(os.environ)
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'jax_cache')
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  cmd = [sys.executable, '-m', 'hypercut_jax.reproduce', f'--workdir={workdir}',
         '--mode=tiny', f'--out={out}', f'--doc={doc}', '--num_examples=2',
         '--only=' + ','.join(E2E_RUNS)]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=1500, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cfg_module = reproduce_configs
  names = list(E2E_RUNS)
  for name in names:
    assert (workdir / name / 'done.json').exists(), name
    assert f'[reproduce] ({names.index(name) + 1}/{len(names)}) {name}' in (
        proc.stdout)
  gens = [n for n in names if cfg_module.RUN_SPECS[n][0] == 'generator']
  for name in ['copy_blur'] + gens:
    for ext in ('png', 'gif'):
      path = out / f'strip_{name}.{ext}'
      assert path.exists() and path.stat().st_size > 0, path
  assert (out / 'embedding.png').stat().st_size > 1000
  results = json.loads((out / 'results.json').read_text())
  assert set(results['generators']) == set(gens)
  assert 0.0 <= results['h']['hit'] <= 1.0
  for name in gens:
    assert len([k for k in results['generators'][name]
                if k.startswith('ppsnr_f')]) == 7
    assert 'plpips' in results['generators'][name]
  assert 'purohit2019_oi_hypercut' in results['hypercut_gains']
  assert set(results['best_of_n']['afb_hypercut']) >= {'1', '2'}
  tables = (out / 'tables.md').read_text()
  for heading in ('Ordering network H', 'Purohit et al. 2019: per-frame pPSNR',
                  'Animation-from-Blur (Zhong et al. 2022): per-frame pPSNR',
                  'Pooled', 'What + HyperCUT changes', '(P_n)', 'Runs'):
    assert heading in tables
  text = doc.read_text()
  block = text[text.index(reproduce.BEGIN):text.index(reproduce.END)]
  assert tables.strip() in block
  assert '](reproduction/embedding.png)' in block
  assert '](reproduction/strip_purohit2019_oi_hypercut.png)' in block
  # The hand-written part of the doc is kept.
  original = open(DOC, encoding='utf-8').read()
  assert text[:text.index(reproduce.BEGIN)] == original[:original.index(
      reproduce.BEGIN)]
  # A rerun skips finished runs (two of them here, to keep the test short).
  rerun = [c for c in cmd if not c.startswith('--doc')] + [
      '--only=h,purohit2019_naive', f'--out={tmp_path / "again"}']
  proc = subprocess.run(rerun, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count('skipped') == 2
  assert 'training' not in proc.stdout


def test_portable_names_no_machine_path():
  texts = ['python -m hypercut_jax.reproduce --workdir=/x/run2 --out=/x/run2/report',
           'python -m hypercut_jax.reproduce --workdir=/x/run --mode=cpu',
           'run=afb,h_checkpoint=/x/run/h', None]
  assert reproduce.portable(texts, '/x/run2') == [
      'python -m hypercut_jax.reproduce --workdir=W1 --out=W1/report',
      'python -m hypercut_jax.reproduce --workdir=W2 --mode=cpu',
      'run=afb,h_checkpoint=W2/h', None]
  assert reproduce.portable(['--workdir=/y --out=/y/r /yz'], '/y') == [
      '--workdir=W --out=W/r /yz']

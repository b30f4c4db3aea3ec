"""Tests for hypercut_jax/configs: parse_arg, every config loads, validates
and runs a step (TFDS configs on the builders' dummy data), the `--config`
files load them, overrides are checked."""
import os

from absl import flags
import jax
from ml_collections import config_flags
import pytest

from hypercut_jax.configs import baist
from hypercut_jax.configs import common
from hypercut_jax.configs import rb2v
from hypercut_jax.configs import reds
from hypercut_jax.configs import reproduce
from hypercut_jax.configs import synthetic
from hypercut_jax.configs import synthetic_afb
from hypercut_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs')   # the `--config` files
PACKAGE_CONFIGS = os.path.join(REPO, 'hypercut_jax', 'configs')
MODULES = {'baist': baist, 'rb2v': rb2v, 'reds': reds, 'reproduce': reproduce,
           'synthetic': synthetic, 'synthetic_afb': synthetic_afb}


# ----------------------------------------------------------------- parse_arg --
def test_parse_arg_types_values_against_defaults():
  arg = common.parse_arg('subset=face,smoke,seed=3,lr=0.5', subset='street',
                         smoke=False, seed=0, lr=1.0, flag=True)
  assert (arg.subset, arg.smoke, arg.seed, arg.lr, arg.flag) == (
      'face', True, 3, 0.5, True)
  assert common.parse_arg('smoke=false', smoke=True).smoke is False
  assert common.parse_arg(None, seed=1).seed == 1


@pytest.mark.parametrize('arg,match', [
    ('subsett=face', "unknown config arg 'subsett'.*known: \\['seed', 'smoke', 'subset'\\]"),
    ('seed=x', "seed='x': expected an int"),
    ('smoke=maybe', 'expected a bool'),
    ('subset', "config arg 'subset' needs a value"),
])
def test_parse_arg_rejects_bad_input(arg, match):
  with pytest.raises(ValueError, match=match):
    common.parse_arg(arg, subset='street', seed=0, smoke=False)


def test_config_args_are_checked():
  with pytest.raises(ValueError, match="subset='city'; known"):
    rb2v.get_config('subset=city')
  with pytest.raises(ValueError, match="model='unet3d'; known"):
    reds.get_config('stage=generator,model=unet3d')


# ------------------------------------------------------------ every config --
ALL = [('synthetic', a) for a in ('', 'smoke', 'stage=ordering,smoke',
                                  'stage=generator,smoke')]
ALL += [('rb2v', f'subset={s},stage={st},model={m}{sm}')
        for s in ('street', 'face', 'hand') for st in ('ordering', 'generator')
        for m in ('jin2018', 'purohit2019') for sm in ('', ',smoke')]
ALL += [(n, f'stage={st},model={m}{sm}') for n in ('reds', 'baist')
        for st in ('ordering', 'generator')
        for m in ('jin2018', 'purohit2019') for sm in ('', ',smoke')]
# Animation-from-Blur: predictor, decomposer, decomposer + HyperCUT.
ALL += [('baist', f'{a}{sm}') for a in (
    'stage=predictor', 'stage=generator,model=zhong2022',
    'stage=generator,model=zhong2022,alpha=0.2') for sm in ('', ',smoke')]
ALL += [('synthetic_afb', a) for a in (
    '', 'smoke', 'stage=ordering', 'stage=predictor', 'stage=generator',
    'stage=predictor,smoke', 'stage=generator,smoke,alpha=0')]


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """The builders' dummy data prepared into a temp data_dir."""
  from hypercut_datasets import build  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  dummy = os.path.join(REPO, 'datasets')
  for subset in ('street', 'face', 'hand'):
    build.build('rb2v', manual_dir=os.path.join(dummy, 'rb2v', 'dummy_data'),
                data_dir=data_dir, config=subset)
  build.build('reds', manual_dir=os.path.join(dummy, 'reds', 'dummy_data'),
              data_dir=data_dir, config='linear')
  build.build('baist', manual_dir=os.path.join(dummy, 'baist', 'dummy_data'),
              data_dir=data_dir)
  return data_dir


def _get(name, arg, data_dir):
  if not name.startswith('synthetic'):
    arg = f'{arg},data_dir={data_dir}' if arg else f'data_dir={data_dir}'
  return MODULES[name].get_config(arg)


@pytest.mark.parametrize('name,arg', ALL)
def test_every_config_loads_and_validates(name, arg, tfds_dir):
  config = _get(name, arg, tfds_dir)
  assert config.stage in loop.STAGES
  doc = MODULES[name].__doc__
  assert 'python -m hypercut_jax.main --config=configs/' + name in doc.replace('\\\n', '')
  # The dummy splits are tiny, and Animation-from-Blur's B-Aist++ batch is
  # the authors' 2: those validate against one device.
  afb = name == 'baist' and ('zhong2022' in arg or 'predictor' in arg)
  one = (jax.devices()[:1] if not name.startswith('synthetic')
         and ('smoke' in arg or afb) else None)
  loop.validate(config, devices=one)


def test_full_size_tfds_configs_carry_the_paper_settings(tfds_dir):
  h = _get('rb2v', 'subset=face', tfds_dir)
  assert (h.optim.name, h.optim.lr, h.optim.b1, h.optim.b2, h.optim.eps) == (
      'adamax_torch', 5e-4, 0.9, 0.999, 1e-8)
  assert (h.optim.schedule, h.optim.decay_rate, h.optim.decay_every_epochs) == (
      'step', 0.9, 3.0)
  assert (h.input.batch_size, h.input.crop, h.total_epochs) == (8, 256, 100)
  assert h.model.kwargs.to_dict() == dict(
      nf=32, embed_dim=128, n_down=5, n_blocks=6, negative_slope=1.0,
      channel_order='bgr')
  g = _get('reds', 'stage=generator,model=purohit2019', tfds_dir)
  assert g.hypercut.alpha == 0.2 and g.loss.flow_weight == 0.02
  assert g.optim.name == 'adam'


# One step of each dataset config's default stage on the dummy data (1
# device: the dummy splits hold 1-3 examples). The generator stage runs end
# to end in main_test (synthetic); here its TFDS configs are validated only,
# to keep the suite within its CPU budget.
RUN = [('rb2v', 'subset=face,smoke'), ('reds', 'smoke'), ('baist', 'smoke'),
       ('baist', 'stage=predictor,smoke'),
       ('baist', 'stage=generator,model=zhong2022,smoke')]


@pytest.mark.parametrize('name,arg', RUN)
def test_config_runs_one_step_on_dummy_data(name, arg, tfds_dir, tmp_path):
  config = _get(name, arg, tfds_dir)
  config.total_steps = 1
  out = loop.run(config, str(tmp_path), devices=jax.devices()[:1])
  result = out[config.stage]
  assert result.step == 1 and not result.preempted
  assert (tmp_path / 'results.md').is_file()


def test_synthetic_stage_runs_one_step_on_8_devices(tmp_path):
  config = _get('synthetic', 'stage=ordering,smoke', None)
  config.total_steps = 1
  out = loop.run(config, str(tmp_path))
  assert out['ordering'].step == 1


# ----------------------------------------------------------- CLI overrides --
def _parse(*argv, config=os.path.join(CONFIGS, 'synthetic.py') + ':smoke'):
  """The config of `--config=<config> *argv`, loaded as main's flag does."""
  argv = ['prog', f'--config={config}', *argv]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'c', flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


@pytest.mark.parametrize('name,arg', [
    ('synthetic', 'smoke'), ('synthetic_afb', 'stage=predictor,smoke'),
    ('rb2v', 'subset=hand,stage=generator'), ('reds', 'smoke'),
    ('baist', 'stage=generator,model=zhong2022,alpha=0.2'),
    ('reproduce', 'run=afb_hypercut,mode=tiny')])
def test_config_files_load_the_package_configs(name, arg):
  """`--config=configs/<name>.py:arg` (the root entry point) and the
  package's own file give the package module's config."""
  want = MODULES[name].get_config(arg).to_dict()
  for folder in (CONFIGS, PACKAGE_CONFIGS):
    path = os.path.join(folder, f'{name}.py')
    assert _parse(config=f'{path}:{arg}').to_dict() == want, path


def test_override_sets_a_field():
  config = _parse('--config.ordering.optim.lr=0.25',
                  '--config.ordering.ckpt_steps=5')
  assert config.ordering.optim.lr == 0.25 and config.ordering.ckpt_steps == 5


def test_misspelt_override_fails_naming_the_field():
  # Raised while the flags are parsed, i.e. before any config is used.
  with pytest.raises((flags.Error, AttributeError), match='lrr'):
    _parse('--config.ordering.optim.lrr=0.25')
  with pytest.raises((flags.Error, TypeError), match='batch_size'):
    _parse('--config.ordering.input.batch_size=eight')


def test_baist_animation_from_blur_configs_carry_the_authors_settings(tfds_dir):
  dec = _get('baist', 'stage=generator,model=zhong2022', tfds_dir)
  assert (dec.model.name, dec.loss.deblur, dec.hypercut.alpha) == ('zhong2022', 'mse', 0.0)
  assert (dec.optim.name, dec.optim.lr, dec.optim.schedule) == ('adam', 1e-4, 'cosine')
  assert dec.optim.lr * dec.optim.final_lr_fraction == pytest.approx(1e-6)
  assert (dec.input.crop, dec.input.eval_crop, dec.total_epochs) == (192, (192, 160), 400)
  assert dec.eval.p_n == (1, 3, 5) and dec.eval.predictor_checkpoint is None
  assert _get('baist', 'stage=generator,model=zhong2022,alpha=0.2',
              tfds_dir).hypercut.alpha == 0.2
  pred = _get('baist', 'stage=predictor', tfds_dir)
  assert (pred.optim.lr, pred.optim.b1, pred.optim.linear_decay_epochs,
          pred.total_epochs) == (2e-4, 0.5, 100.0, 200)
  assert pred.loss.to_dict() == dict(lambda_ce=10.0, lambda_gan=1.0, lambda_gan2=1.0,
                                     lambda_kl=0.01, lambda_l1=0.0, lambda_z=0.0, tau=1.0)
  assert pred.input.crop == 256 and pred.model.kwargs.to_dict() == {}
  # jin2018/purohit2019 keep their alpha 0.2 unless asked.
  assert _get('baist', 'stage=generator', tfds_dir).hypercut.alpha == 0.2
  assert _get('baist', 'stage=generator,alpha=0.5', tfds_dir).hypercut.alpha == 0.5


def test_synthetic_afb_chains_h_predictor_and_decomposer():
  config = _get('synthetic_afb', '', None)
  assert config.stage == 'both'
  assert [s for s, _ in loop.stage_workdirs(config, 'w')] == [
      'ordering', 'predictor', 'generator']
  assert config.generator.model.name == 'zhong2022'
  assert config.generator.hypercut.alpha == 0.2 and config.data.guidance

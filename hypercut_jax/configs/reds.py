r"""REDS (120 fps sharp frames, 7 averaged into one blur; val = test).

Prepare the TFDS data once (see datasets/reds/README.md; config `linear`:
blur averaged in linear RGB), then

  python -m hypercut_jax.main --config=configs/reds.py \
      --workdir=/tmp/reds_h --config.data.data_dir=$HOME/tensorflow_datasets
  python -m hypercut_jax.main \
      --config=configs/reds.py:stage=generator,model=jin2018 \
      --workdir=/tmp/reds_jin --config.hypercut.checkpoint=/tmp/reds_h
  python -m hypercut_jax.main \
      --config=configs/reds.py:stage=generator,model=purohit2019 \
      --workdir=/tmp/reds_purohit --config.hypercut.checkpoint=/tmp/reds_h \
      --config.model.centre_checkpoint=/tmp/reds_jin

Args: stage=ordering|generator, model=jin2018|purohit2019,
subset=linear|srgb (the builder config), data_dir=<prepared TFDS dir>,
smoke (tiny sizes and 2 steps for CPU tests).

Settings: as configs/rb2v.py (official H settings; generators with
alpha=0.2 and each paper's optimiser; Purohit's middle frame outside
training from `model.centre_checkpoint` / `eval.middle`).
"""
from hypercut_jax.configs import common

DATASET = 'reds'


def get_config(arg=None):
  arg = common.parse_arg(arg, subset='linear', stage='ordering',
                         model='jin2018', data_dir='~/tensorflow_datasets',
                         smoke=False, seed=0)
  common.check_choice('subset', arg.subset, ('linear', 'srgb'))
  return common.dataset_config(DATASET, arg, subset=arg.subset)

r"""RB2V (Street / Face / Hand): HyperCUT's real blur-to-video dataset.

Prepare the TFDS data once (see datasets/rb2v/README.md), then

  # Stage 1, the ordering network H (official settings):
  python -m hypercut_jax.main --config=configs/rb2v.py:subset=street \
      --workdir=/tmp/rb2v_street_h --config.data.data_dir=$HOME/tensorflow_datasets
  # Stage 2, a generator with R_hyp under the frozen H:
  python -m hypercut_jax.main \
      --config=configs/rb2v.py:subset=street,stage=generator,model=jin2018 \
      --workdir=/tmp/rb2v_street_jin \
      --config.hypercut.checkpoint=/tmp/rb2v_street_h
  # The baseline: --config.hypercut.alpha=0 (or no checkpoint).
  # Purohit et al. with the trained Jin centre net of the run above as its
  # middle-frame estimate (evaluated on it: eval.middle='estimate'):
  python -m hypercut_jax.main \
      --config=configs/rb2v.py:subset=street,stage=generator,model=purohit2019 \
      --workdir=/tmp/rb2v_street_purohit \
      --config.hypercut.checkpoint=/tmp/rb2v_street_h \
      --config.model.centre_checkpoint=/tmp/rb2v_street_jin

Args: subset=street|face|hand, stage=ordering|generator,
model=jin2018|purohit2019, data_dir=<prepared TFDS dir>, smoke (tiny sizes
and 2 steps for CPU tests).

Settings: H as the official code (ResnetIm2Vec nf=32 d=128, AdaMax torch form
lr 5e-4 betas (0.9, 0.999), x0.9 every 3 epochs, batch 8, crop 256, 100
epochs, validation every 5 epochs); generators with `alpha=0.2`, each
paper's optimiser as recorded in configs/common.py. Purohit trains on the
ground-truth middle frame; `model.centre_checkpoint`, `eval.middle` and
`model.kwargs.middle[_kwargs]` choose its middle frame outside training
(configs/common.py, docs/cli.md).
"""
from hypercut_jax.configs import common

DATASET = 'rb2v'
SUBSETS = ('street', 'face', 'hand')


def get_config(arg=None):
  arg = common.parse_arg(arg, subset='street', stage='ordering',
                         model='jin2018', data_dir='~/tensorflow_datasets',
                         smoke=False, seed=0)
  common.check_choice('subset', arg.subset, SUBSETS)
  return common.dataset_config(DATASET, arg, subset=arg.subset)

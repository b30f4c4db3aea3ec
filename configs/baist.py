r"""B-Aist++ (dancers; 73 train / 32 test videos; motion guidance included).

Prepare the TFDS data once (see datasets/baist/README.md), then

  python -m hypercut_jax.main --config=configs/baist.py \
      --workdir=/tmp/baist_h --config.data.data_dir=$HOME/tensorflow_datasets
  python -m hypercut_jax.main \
      --config=configs/baist.py:stage=generator,model=purohit2019 \
      --workdir=/tmp/baist_purohit --config.hypercut.checkpoint=/tmp/baist_h

Args: stage=ordering|generator, model=jin2018|purohit2019,
data_dir=<prepared TFDS dir>, smoke (tiny sizes and 2 steps for CPU tests).
Batches carry the dataset's `guidance` map; generators that do not use it
ignore it (Animation-from-Blur's decomposer, `zhong2022`, will use it once
registered in hypercut_jax.models.REGISTRY).

Settings: as configs/rb2v.py (official H settings; generators with
alpha=0.2 and each paper's optimiser).
"""
import importlib.util
import os


def _common():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'common.py')
  spec = importlib.util.spec_from_file_location('hypercut_configs_common', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


common = _common()
DATASET = 'baist'


def get_config(arg=None):
  arg = common.parse_arg(arg, stage='ordering', model='jin2018',
                         data_dir='~/tensorflow_datasets', smoke=False, seed=0)
  return common.dataset_config(DATASET, arg, subset=None)

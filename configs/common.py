"""The shared config pieces, for code that still loads `configs/common.py`.

They live in `hypercut_jax/configs/common.py` (`from hypercut_jax.configs
import common`), which the configs import; this file re-exports its public
names.
"""
from hypercut_jax.configs.common import base_config
from hypercut_jax.configs.common import check_choice
from hypercut_jax.configs.common import dataset_config
from hypercut_jax.configs.common import GENERATOR_KWARGS
from hypercut_jax.configs.common import GENERATOR_LOSS
from hypercut_jax.configs.common import GENERATOR_OPTIM
from hypercut_jax.configs.common import generator_stage
from hypercut_jax.configs.common import input_config
from hypercut_jax.configs.common import optim_config
from hypercut_jax.configs.common import ordering_stage
from hypercut_jax.configs.common import parse_arg
from hypercut_jax.configs.common import shrink_for_smoke
from hypercut_jax.configs.common import single_stage
from hypercut_jax.configs.common import synthetic_data
from hypercut_jax.configs.common import tfds_data
from hypercut_jax.configs.common import TINY

__all__ = ('base_config', 'check_choice', 'dataset_config', 'GENERATOR_KWARGS',
           'GENERATOR_LOSS', 'GENERATOR_OPTIM', 'generator_stage',
           'input_config', 'optim_config', 'ordering_stage', 'parse_arg',
           'shrink_for_smoke', 'single_stage', 'synthetic_data', 'tfds_data',
           'TINY')

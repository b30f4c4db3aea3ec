"""The runs of the paper reproduction: the `--config` file.

  python -m hypercut_jax.main --config=configs/reproduce.py:run=h,mode=cpu \
      --workdir=W/h

The configs are `hypercut_jax/configs/reproduce.py` (its docstring lists the
runs and args), which `python -m hypercut_jax.reproduce` imports; this file
makes the path above work from the repository root and, re-exporting what
the script reads, serves as its `--config_file`.
"""
from hypercut_jax.configs.reproduce import AFB_ENABLED
from hypercut_jax.configs.reproduce import get_config
from hypercut_jax.configs.reproduce import run_names
from hypercut_jax.configs.reproduce import RUN_SPECS

__all__ = ('AFB_ENABLED', 'get_config', 'run_names', 'RUN_SPECS')

"""REDS: the `--config` file.

  python -m hypercut_jax.main --config=configs/reds.py[:arg] --workdir=W

The config is `hypercut_jax/configs/reds.py` (its docstring lists the
runs and args; `from hypercut_jax.configs import reds` in Python); this
file only makes the path above work from the repository root.
"""
from hypercut_jax.configs.reds import get_config

__all__ = ('get_config',)

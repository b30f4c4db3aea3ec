"""B-Aist++ (HyperCUT and Animation-from-Blur): the `--config` file.

  python -m hypercut_jax.main --config=configs/baist.py[:arg] --workdir=W

The config is `hypercut_jax/configs/baist.py` (its docstring lists the
runs and args; `from hypercut_jax.configs import baist` in Python); this
file only makes the path above work from the repository root.
"""
from hypercut_jax.configs.baist import get_config

__all__ = ('get_config',)

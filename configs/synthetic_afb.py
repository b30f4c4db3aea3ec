"""Animation-from-Blur (+ HyperCUT) on the synthetic data: the `--config` file.

  python -m hypercut_jax.main --config=configs/synthetic_afb.py[:arg] --workdir=W

The config is `hypercut_jax/configs/synthetic_afb.py` (its docstring lists the
runs and args; `from hypercut_jax.configs import synthetic_afb` in Python); this
file only makes the path above work from the repository root.
"""
from hypercut_jax.configs.synthetic_afb import get_config

__all__ = ('get_config',)

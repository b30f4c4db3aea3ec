"""HyperCUT end to end on the embedded synthetic data: the `--config` file.

  python -m hypercut_jax.main --config=configs/synthetic.py[:arg] --workdir=W

The config is `hypercut_jax/configs/synthetic.py` (its docstring lists the
runs and args; `from hypercut_jax.configs import synthetic` in Python); this
file only makes the path above work from the repository root.
"""
from hypercut_jax.configs.synthetic import get_config

__all__ = ('get_config',)

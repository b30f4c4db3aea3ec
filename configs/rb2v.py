"""RB2V (Street / Face / Hand): the `--config` file.

  python -m hypercut_jax.main --config=configs/rb2v.py[:arg] --workdir=W

The config is `hypercut_jax/configs/rb2v.py` (its docstring lists the
runs and args; `from hypercut_jax.configs import rb2v` in Python); this
file only makes the path above work from the repository root.
"""
from hypercut_jax.configs.rb2v import get_config

__all__ = ('get_config',)

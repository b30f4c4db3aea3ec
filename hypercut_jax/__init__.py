"""hypercut_jax: HyperCUT (CVPR 2023) in JAX/Flax.

Importing the package does no work: no devices, files or flags are touched.
"""

__version__ = '0.1.0'

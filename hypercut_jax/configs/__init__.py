"""ml_collections configs: one module per dataset, plus the reproduction runs.

Each config module exposes `get_config(arg=None)`, where `arg` is the text
after ':' in `--config=<file>.py:<arg>`:

  synthetic       HyperCUT end to end on the embedded synthetic data
  synthetic_afb   Animation-from-Blur (+ HyperCUT) on the synthetic data
  rb2v, reds, baist   the paper's datasets (prepared TFDS data)
  reproduce       the runs of `python -m hypercut_jax.reproduce`
  common          the shared pieces (`parse_arg`, the stage defaults, the
                  tiny model sizes `TINY`)

`--config` loads a file path, so both `configs/<name>.py` (thin entry points
at the repository root) and `hypercut_jax/configs/<name>.py` work; in Python,
`from hypercut_jax.configs import synthetic`. Importing this package does no
work.
"""

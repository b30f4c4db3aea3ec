"""Training: train state, sharded steps per stage, checkpoints, the loop.

`train.loop.run(config, workdir)` is the entry point used by
`python -m hypercut_jax.main`. Importing this package does no work.
"""

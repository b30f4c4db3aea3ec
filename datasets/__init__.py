"""TFDS builders for the HyperCUT datasets, installed as `hypercut_datasets`."""

"""TFDS builder: see reds_dataset_builder.py and README.md."""

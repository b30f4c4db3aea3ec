"""TFDS builder: see baist_dataset_builder.py and README.md."""

"""TFDS builder: see rb2v_dataset_builder.py and README.md."""

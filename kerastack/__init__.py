"""Build, test and publish pinned Keras/TensorFlow + Jupyter images from versions.toml."""

__version__ = "0.1.0"

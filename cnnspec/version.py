"""cnnspec's version, recorded in run.json and the ONNX metadata; `cnnspec.__version__` re-exports it."""

__version__ = "0.1.0"

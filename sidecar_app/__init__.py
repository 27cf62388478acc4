"""hailo-sidecar: the /infer contract for EdgeInfer, served from stub, ONNX or Hailo backends."""

from importlib.metadata import PackageNotFoundError, version

# One source for the version: pyproject.toml (galaxy.yml repeats it; tests/unit/test_collection.py
# checks that they agree). Installed, the package's metadata carries it.
try:
    __version__ = version("hailo-sidecar")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

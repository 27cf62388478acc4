"""hailo-sidecar: the /infer contract for EdgeInfer, served from stub, ONNX or Hailo backends."""

from __future__ import annotations

# One source for the version: pyproject.toml (galaxy.yml repeats it; tests/unit/test_collection.py
# checks that they agree). Installed, the package's metadata carries it. Read on first use
# (`sidecar_app.__version__`, `from sidecar_app import __version__`), not at import: importing
# importlib.metadata was a quarter of what the container healthcheck (then `hailo-sidecar probe`)
# cost where the arm64 image runs under QEMU (0.7 of 3.1 s of CPU per probe).


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("hailo-sidecar")
    except PackageNotFoundError:  # a source tree that was never installed
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value

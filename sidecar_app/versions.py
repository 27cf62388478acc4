"""What this process runs on, read from package metadata (nothing heavy is imported)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from . import __version__


def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def runtime_versions() -> dict[str, str]:
    """Versions an operator compares across hosts: `hailo-sidecar versions` and /healthz."""
    return {
        "sidecar": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        # The HailoRT binding this image or venv carries ("none": stub and onnx modes only).
        "hailort": dist_version("hailort") or "none",
        "onnxruntime": dist_version("onnxruntime") or "none",
        "numpy": dist_version("numpy") or "none",
    }

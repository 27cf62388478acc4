"""A release's manifest.json as hailo-compile writes it: what the sidecar checks a model against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ModelLoadError


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(
            "manifest", f"the release manifest {path} does not exist (MANIFEST_PATH)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError("manifest", f"cannot read the release manifest {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError("manifest", f"the release manifest {path} is not a JSON object")
    return data


def hef_input_shape(manifest: dict[str, Any]) -> list[int] | None:
    """The input shape the compiler parsed, as HailoRT reports it ([H, W, C]); None in manifests
    written before hailo-compile recorded it."""
    shape = (manifest.get("input") or {}).get("hef_shape")
    return [int(d) for d in shape] if isinstance(shape, list) else None

"""Golden windows: a few windows of the calibration set and the reference model's outputs for
them, written into the release as golden.json and named in its (signed) manifest by sha256. Before
the sidecar serves a release it runs the model on these windows and compares (sidecar_app/release.py,
the parity thresholds), so a model that loads but computes something else is never switched to.

The outputs come from the ONNX model through onnx's reference evaluator (pure numpy, part of the
onnx package the DFC brings): no onnxruntime in the compiler image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .shape import CHANNELS, WINDOW_LEN

GOLDEN_WINDOWS = 8
FILE = "golden.json"


def golden(onnx_path: Path, calib_path: Path, count: int = GOLDEN_WINDOWS) -> dict[str, Any]:
    import onnx
    from onnx.reference import ReferenceEvaluator

    calib = np.load(calib_path, allow_pickle=False)
    windows = calib[:count].reshape(-1, WINDOW_LEN, CHANNELS).astype(np.float32)
    model = onnx.load(str(onnx_path))
    inits = {i.name for i in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in inits]
    rank = len(inp.type.tensor_type.shape.dim)
    x = windows.reshape(-1, 1, WINDOW_LEN, CHANNELS) if rank == 4 else windows
    names = [o.name for o in model.graph.output]
    outputs = dict(zip(names, ReferenceEvaluator(model).run(None, {inp.name: x}), strict=True))
    return {
        "format": 1,
        "reference": "model.onnx (onnx.reference)",
        "windows": windows.tolist(),
        "latent": np.asarray(outputs["latent"], np.float32).tolist(),
        "motif_scores": np.asarray(outputs["motif_scores"], np.float32).tolist(),
    }


def encode(data: dict[str, Any]) -> bytes:
    """The file's bytes (deterministic: the same inputs give the same sha256)."""
    return (json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n").encode()

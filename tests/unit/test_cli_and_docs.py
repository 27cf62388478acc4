"""Reference model, calibration set and the committed OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sidecar_app.backends.base import file_sha256
from sidecar_app.cli import main
from sidecar_app.openapi import build_openapi
from sidecar_app.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_reference_model_is_deterministic(tmp_path):
    assert main(["reference-model", str(tmp_path / "a.onnx")]) == 0
    assert main(["reference-model", str(tmp_path / "b.onnx")]) == 0
    assert main(["reference-model", str(tmp_path / "p.onnx"), "--perturb", "0.1"]) == 0
    assert file_sha256(tmp_path / "a.onnx") == file_sha256(tmp_path / "b.onnx")
    assert file_sha256(tmp_path / "a.onnx") != file_sha256(tmp_path / "p.onnx")


def test_calibration_set_layout(tmp_path):
    assert main(["calib-set", str(tmp_path / "c.npy"), "--n", "64"]) == 0
    data = np.load(tmp_path / "c.npy")
    assert data.shape == (64, 1, 100, 9) and data.dtype == np.float32
    assert np.isfinite(data).all() and data.std() > 0.1


def test_committed_openapi_matches_the_code():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(build_openapi(load_settings())))

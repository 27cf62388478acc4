"""Backends: onnx against onnxruntime directly, hailo through the stand-in with each failure,
checksum verification, device failure -> 503 -> recovery, and fallback."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from hailo_platform import standin

from sidecar_app.backends.base import file_sha256
from sidecar_app.tools.refmodel import reference_model

GOOD = [[0.01 * (i + j) for j in range(9)] for i in range(100)]


def test_onnx_matches_onnxruntime(make_client, onnx_model, onnx_sha, windows):
    client = make_client(INFER_MODE="onnx", ONNX_PATH=onnx_model)
    r = client.post("/infer/batch", json={"windows": windows.tolist()})
    assert r.status_code == 200
    assert r.headers["x-model-sha256"] == onnx_sha
    sess = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    latent, motifs = sess.run(["latent", "motif_scores"], {"x": windows})
    got = r.json()["results"]
    np.testing.assert_allclose([g["latent"] for g in got], latent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([g["motif_scores"] for g in got], motifs, rtol=1e-5, atol=1e-6)


def test_onnx_model_with_wrong_motif_count_is_refused(make_client, tmp_path):
    path = reference_model(tmp_path / "m8.onnx", num_motifs=8)
    client = make_client(INFER_MODE="onnx", ONNX_PATH=path, NUM_MOTIFS=12)
    health = client.get("/healthz").json()
    assert health["status"] == "unavailable"
    assert "motif_scores has shape" in health["reason"] and "NUM_MOTIFS" in health["reason"]
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 503 and "Retry-After" in r.headers


def test_onnx_missing_file(make_client, tmp_path):
    client = make_client(INFER_MODE="onnx", ONNX_PATH=tmp_path / "absent.onnx")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "not found" in r.json()["reason"]


def test_checksum_mismatch_never_serves(make_client, onnx_model):
    client = make_client(INFER_MODE="onnx", ONNX_PATH=onnx_model, MODEL_SHA256="a" * 64, FALLBACK_MODE="stub")
    health = client.get("/healthz").json()
    assert health["ready"] is False and health["status"] == "unavailable"
    assert "refusing to serve the wrong model" in health["reason"]
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 503
    assert "sha256" in r.json()["error"]


def test_checksum_match_serves(make_client, onnx_model, onnx_sha):
    client = make_client(INFER_MODE="onnx", ONNX_PATH=onnx_model, MODEL_SHA256=onnx_sha.upper())
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").json()["model_sha256"] == onnx_sha


def test_hailo_contract_and_health(make_client, hef):
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, CONFIG_VERSION="cfg-7")
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 200
    doc = r.json()
    assert len(doc["latent"]) == 64 and len(doc["motif_scores"]) == 12
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["mode"] == "hailo"
    assert health["model_kind"] == "hef" and health["hef_sha256"] == health["model_sha256"] == file_sha256(
        hef
    )
    assert health["versions"]["hailort"] == "4.23.0"
    assert health["config_version"] == "cfg-7"
    # The device is opened once and kept open across requests.
    client.post("/infer", json={"x": GOOD})
    assert standin.held_vdevices() == 1


def test_device_failure_then_recovery(make_client, hef):
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, DEVICE_RETRY_MAX_S=0.2)
    service = client.app.state.service
    assert client.get("/healthz").json()["status"] == "ok"

    # A frame fails on the device (PCIe gone): HailoRT reports it to the job's callback only.
    standin.CONTROL["fail_frames"] = 1
    standin.CONTROL["open_status"] = 74  # the device stays unavailable for now
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 503
    assert "HAILO_DRIVER_OPERATION_FAILED" in r.json()["error"]
    assert r.headers["retry-after"] == "1"
    health = client.get("/healthz").json()
    assert health["status"] == "unavailable" and health["ready"] is False
    ready = client.get("/readyz")
    assert ready.status_code == 503 and 1 <= int(ready.headers["retry-after"]) <= 2
    metrics = client.get("/metrics").text
    assert "hailo_sidecar_ready 0.0" in metrics
    assert 'hailo_sidecar_backend_errors_total{kind="driver_error"} 1.0' in metrics

    standin.CONTROL.pop("open_status")  # the device is back
    service._next_retry = 0.0  # skip the backoff wait
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"
    assert "hailo_sidecar_ready 1.0" in client.get("/metrics").text


def test_backoff_bounds_reopen_attempts(make_client, hef):
    standin.CONTROL["open_status"] = 74
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, DEVICE_RETRY_MAX_S=60)
    for _ in range(20):
        client.post("/infer", json={"x": GOOD})
    metrics = client.get("/metrics").text
    # 1 failed open at start-up; requests inside the 1 s backoff do not hammer the device.
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith('hailo_sidecar_backend_errors_total{kind="device_unavailable"}')
    )
    assert float(line.split()[-1]) <= 2


def test_fallback_serves_degraded_and_labels_it(make_client, hef, onnx_model, onnx_sha):
    standin.CONTROL["open_status"] = 74
    client = make_client(
        INFER_MODE="hailo", HEF_PATH=hef, FALLBACK_MODE="onnx", ONNX_PATH=onnx_model, DEVICE_RETRY_MAX_S=0.2
    )
    health = client.get("/healthz").json()
    assert health["status"] == "degraded" and health["ready"] is True
    assert health["serving_mode"] == "onnx" and health["model_sha256"] == onnx_sha
    assert health["model_kind"] == "onnx" and "hef_sha256" not in health
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 200 and r.headers["x-infer-mode"] == "onnx"
    assert 'mode="onnx"' in client.get("/metrics").text

    standin.CONTROL.clear()
    client.app.state.service._next_retry = 0.0
    assert client.post("/infer", json={"x": GOOD}).headers["x-infer-mode"] == "hailo"
    assert client.get("/healthz").json()["status"] == "ok"


def test_runtime_failure_switches_to_fallback(make_client, hef):
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, FALLBACK_MODE="stub", DEVICE_RETRY_MAX_S=30)
    standin.CONTROL.update({"fail_frames": 1, "open_status": 74})
    assert client.post("/infer", json={"x": GOOD}).status_code == 503
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 200 and r.headers["x-infer-mode"] == "stub"
    assert client.get("/healthz").json()["status"] == "degraded"


def test_control_file_drives_a_separate_process(tmp_path, monkeypatch):
    # The stand-in reads faults from HAILO_STANDIN_CONTROL too (used by the server tests).
    ctl = tmp_path / "ctl.json"
    ctl.write_text(json.dumps({"fail_frames": 2, "fail_status": 87}))
    monkeypatch.setenv("HAILO_STANDIN_CONTROL", str(ctl))
    assert standin.consume_frame_failure() == standin.consume_frame_failure() == 87
    assert standin.consume_frame_failure() == 0
    assert json.loads(ctl.read_text())["fail_frames"] == 0

"""Health, readiness, metrics and logs."""

from __future__ import annotations

import io
import json
import logging

from sidecar_app.logs import JsonFormatter

GOOD = [[0.5] * 9 for _ in range(100)]


def test_health_fields(make_client, onnx_model, onnx_sha):
    client = make_client(INFER_MODE="onnx", ONNX_PATH=onnx_model, CONFIG_VERSION="2025.09-a", NUM_MOTIFS=12)
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["ready"] is True and h["mode"] == "onnx"
    assert h["model_path"] == str(onnx_model)
    assert h["model_kind"] == "onnx" and h["model_sha256"] == onnx_sha
    assert "hef_sha256" not in h, "hef_sha256 names a HEF: an ONNX file is not reported under it"
    assert h["config_version"] == "2025.09-a" and h["num_motifs"] == 12
    assert h["device"] == "cpu"
    assert h["versions"]["sidecar"] and h["versions"]["onnxruntime"]
    assert h["uptime_s"] >= 0


def test_liveness_readiness_and_oip_aliases(stub):
    assert stub.get("/livez").json() == {"live": True}
    assert stub.get("/v2/health/live").status_code == 200
    assert stub.get("/readyz").json()["ready"] is True
    assert stub.get("/v2/health/ready").json() == {"ready": True}
    meta = stub.get("/v2/models/imu-encoder").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [100, 9]}]
    assert [o["shape"] for o in meta["outputs"]] == [[64], [12]]


def test_metrics_content(make_client):
    client = make_client(INFER_MODE="stub", CONFIG_VERSION="v9", NUM_MOTIFS=12)
    client.post("/infer", json={"x": GOOD})
    client.post("/infer/batch", json={"windows": [GOOD] * 5})
    client.post("/infer", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    sha = client.get("/healthz").json()["model_sha256"]
    assert (
        f'hailo_sidecar_model_info{{config_version="v9",hef_sha256="",mode="stub",model_kind="stub",'
        f'model_sha256="{sha}",num_motifs="12"}} 1.0'
    ) in text
    assert 'hailo_sidecar_requests_total{code="200",endpoint="/infer",method="POST"} 1.0' in text
    assert 'hailo_sidecar_requests_total{code="400",endpoint="/infer",method="POST"} 1.0' in text
    assert 'hailo_sidecar_request_duration_seconds_bucket{endpoint="/infer",le="0.05"}' in text
    assert 'hailo_sidecar_request_duration_seconds_bucket{endpoint="/infer",le="0.0005"}' in text
    assert 'hailo_sidecar_inference_duration_seconds_count{mode="stub"} 2.0' in text
    assert "hailo_sidecar_batch_size_sum 6.0" in text
    assert "hailo_sidecar_ready 1.0" in text
    assert "hailo_sidecar_in_flight_requests" in text


def test_unknown_paths_do_not_explode_metric_cardinality(stub):
    for i in range(5):
        stub.get(f"/random-{i}")
    text = stub.get("/metrics").text
    assert 'endpoint="unmatched"' in text and "random-" not in text


def test_request_id_echoed_or_generated(stub):
    r = stub.post("/infer", json={"x": GOOD}, headers={"X-Request-ID": "edge-42"})
    assert r.headers["x-request-id"] == "edge-42"
    generated = stub.post("/infer", json={"x": GOOD}).headers["x-request-id"]
    assert len(generated) == 32
    hostile = stub.get("/livez", headers={"X-Request-ID": "a b;{}" * 50}).headers["x-request-id"]
    assert len(hostile) == 32  # replaced, not echoed


def test_access_log_is_one_json_line_without_body(stub):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("hailo_sidecar")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        secretish = [[123.456] * 9 for _ in range(100)]
        stub.post("/infer", json={"x": secretish}, headers={"X-Request-ID": "log-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    lines = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    req = [ln for ln in lines if ln["msg"] == "request"]
    assert len(req) == 1
    entry = req[0]
    assert entry["method"] == "POST" and entry["path"] == "/infer" and entry["status"] == 200
    assert entry["request_id"] == "log-1" and entry["latency_ms"] > 0
    assert "123.456" not in stream.getvalue()

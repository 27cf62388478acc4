"""hailo-sidecar parity: the reference ONNX against itself, a perturbed model, and a running
sidecar over HTTP; thresholds, the JSON report, progress and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_server import Server

from sidecar_app.cli import main
from sidecar_app.settings import Settings
from sidecar_app.tools.refmodel import calibration_set, reference_model, sample_windows


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("parity")
    windows = d / "windows.npy"
    np.save(windows, sample_windows(200))
    return {
        "ref": reference_model(d / "ref.onnx"),
        # Small weight noise: what a broken export or a wrong quantization looks like.
        "drifted": reference_model(d / "drifted.onnx", perturb=0.2),
        "windows": windows,
        "calib": calibration_set(d / "calib.npy", 32),
    }


def parity(models: dict[str, Path], tmp_path: Path, candidate: str, *extra: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    rc = main(["parity", "--reference", f"onnx:{models['ref']}", "--candidate", candidate,
               "--windows", str(models["windows"]), "--report", str(report), *extra])  # fmt: skip
    return rc, json.loads(report.read_text()) if report.exists() else {}


def test_reference_against_itself_passes(models, tmp_path, capsys):
    rc, report = parity(models, tmp_path, f"onnx:{models['ref']}")
    assert rc == 0 and report["passed"] is True
    s = report["summary"]
    assert report["windows"] == 200
    assert s["cosine_min"] > 0.99999 and s["max_abs_error"] < 1e-5 and s["topk_agreement_mean"] == 1.0
    assert s["drifted_windows"] == 0
    out = capsys.readouterr()
    assert "parity: PASS" in out.out
    # Progress goes to stderr (not a terminal here: at the first batch, then every 5 s).
    assert f"parity: {Settings.model_fields['max_batch'].default}/200 windows" in out.err


def test_perturbed_model_is_detected_as_drift(models, tmp_path, capsys):
    rc, report = parity(models, tmp_path, f"onnx:{models['drifted']}")
    assert rc == 1 and report["passed"] is False
    s = report["summary"]
    assert s["drifted_windows"] > 0 and s["cosine_min"] < 0.99
    worst = report["worst_windows"][0]
    assert worst["drifted"] is True and worst["cosine"] == pytest.approx(s["cosine_min"])
    assert "parity: FAIL (drift)" in capsys.readouterr().out


def test_loose_thresholds_accept_the_perturbed_model(models, tmp_path):
    """The thresholds decide, not the tool: a quantized HEF is judged with the team's numbers."""
    rc, report = parity(models, tmp_path, f"onnx:{models['drifted']}", "--min-cosine", "0.5",
                        "--max-abs-error", "2", "--min-topk-agreement", "0.3")  # fmt: skip
    assert rc == 0 and report["thresholds"]["min_cosine"] == 0.5


def test_running_sidecar_over_http(models, tmp_path):
    """Windows per call by default: as many as a sidecar with the default MAX_BATCH takes."""
    srv = Server(INFER_MODE="onnx", ONNX_PATH=str(models["ref"]))
    try:
        rc, report = parity(models, tmp_path, srv.url + "/infer")
    finally:
        srv.stop()
    assert rc == 0, report
    assert srv.url in report["candidate"] and "onnx" in report["candidate"]
    assert report["summary"]["cosine_min"] > 0.9999


def test_stub_candidate_drifts(models, tmp_path):
    rc, report = parity(models, tmp_path, "stub", "--limit", "20")
    assert rc == 1 and report["windows"] == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "gpu:x"], "expected onnx:PATH, hailo:PATH, stub or an http(s):// URL"),
        (["--candidate", "onnx:/nonexistent.onnx"], "ONNX model not found"),
        (["--candidate", "http://127.0.0.1:9"], "http://127.0.0.1:9/healthz"),
        (["--windows", "WRONG_SHAPE"], "expected (N, 100, 9)"),
        (["--reference", "stub"], "--reference must be onnx:PATH"),
    ],
)
def test_bad_input_exits_2_naming_it(models, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 100, 8), dtype=np.float32))
    argv = {"--reference": f"onnx:{models['ref']}", "--candidate": f"onnx:{models['ref']}",
            "--windows": str(models["windows"]), "--report": str(tmp_path / "r.json")}  # fmt: skip
    for k, v in zip(args[::2], args[1::2], strict=True):
        argv[k] = str(bad) if v == "WRONG_SHAPE" else v
    assert main(["parity", *[x for kv in argv.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_calibration_layout_is_accepted(models, tmp_path):
    rc, report = parity(models, tmp_path, f"onnx:{models['ref']}", "--windows", str(models["calib"]))
    assert rc == 0 and report["windows"] == 32

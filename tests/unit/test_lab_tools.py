"""The lab's own tools: the summary's checks and rendering (lab/scripts/summary.py) and the
stand-in fidelity comparison (sidecar_app/fidelity.py against lab/scripts/fidelity.py)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"lab_{name}", ROOT / "lab" / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


summary = load("summary")
fidelity = load("fidelity")

SHA = "ab" * 32
IMAGE = {"image": "127.0.0.1:5000/hailo/sidecar:0.2.0", "revision": "0123456789abcdef",
         "platform": "linux/arm64", "ref": "127.0.0.1:5000/hailo/sidecar@sha256:" + "c" * 64}  # fmt: skip
RELEASE = {"profile": "onnx", "config_version": "lab-1", "image": IMAGE["ref"],
           "model": {"name": "imu-encoder", "version": "1.0.0", "file": "model.onnx",
                     "sha256": SHA}}  # fmt: skip


def host(name: str, group: str, **health: Any) -> dict[str, Any]:
    h = {"status": "ok", "serving_mode": "onnx", "config_version": "lab-1", "model_sha256": SHA, **health}
    return {"host": name, "group": group, "url": f"http://127.0.0.1:1900{len(name)}", "health": h,
            "release": copy.deepcopy(RELEASE)}  # fmt: skip


def lab(*hosts: dict[str, Any]) -> dict[str, Any]:
    return {"image": IMAGE, "releases": [], "hosts": list(hosts)}


def test_a_healthy_lab_has_no_problems_and_renders_a_curl_line() -> None:
    data = lab(host("lab-pi-1", "pi"), host("lab-pi-2", "pi"))
    assert summary.problems(data) == []
    text = "\n".join(summary.render(data, [{"step": "pi.yml", "seconds": 12, "changed": 0}]))
    assert "pi.yml" in text and "changed=0" in text
    assert "curl -sS -X POST http://127.0.0.1:19008/infer" in text
    assert f"sha256 {SHA}" in text and "(git 0123456789ab, linux/arm64)" in text


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"status": "unreachable (refused)"}, "lab-pi-1: sidecar at http://127.0.0.1:19008 is unreachable"),
        ({"model_sha256": "0" * 64}, f"lab-pi-1: serves {'0' * 64}, deployed {SHA}"),
        ({"config_version": "lab-2"}, "lab-pi-1: config lab-2, deployed lab-1"),
    ],
    ids=["down", "other model", "other config"],
)
def test_each_problem_is_named(health: dict[str, Any], expected: str) -> None:
    found = summary.problems(lab(host("lab-pi-1", "pi", **health), host("lab-pi-2", "pi")))
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.fixture
def standin_run(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stand-in observed through sidecar_app/fidelity.py, as a device run would be."""
    manifest = {"hw_arch": "hailo8", "input": {"hef_shape": [100, 9, 1]},
                "outputs": {"latent": [64], "motif_scores": [12]}}  # fmt: skip
    lab_obs = fidelity.standin(manifest)
    device = copy.deepcopy(lab_obs)
    device["texts"] = {
        "version": "HailoRT-CLI version 4.23.0",
        "identify": "Executing on device: 0001:01:00.0\n"
        + "\n".join(f"{label}: x" for label in fidelity.IDENTIFY_LABELS),
        "parse_hef": lab_obs["texts"]["parse_hef"],
        "driver_version": "4.23.0\n",
    }
    return device, lab_obs


Run = tuple[dict[str, Any], dict[str, Any]]


def test_the_standin_observes_what_the_backend_relies_on(standin_run: Run) -> None:
    _, obs = standin_run
    assert obs["input"]["shape"] == [100, 9, 1] and sorted(obs["outputs"].values()) == [[12], [64]]
    assert obs["async_queue_size"] >= 1
    # pyhailort.py has no class of its own for 74: the base class, status in the cause.
    assert obs["second_vdevice"]["class"] == "HailoRTException"
    assert obs["second_vdevice"]["status"] == 74
    assert obs["push_past_queue"]["status"] == 82
    assert obs["push_after_that"]["status"] == 63
    assert obs["wait_past_queue"]["status"] == 4


def test_a_device_like_the_standin_compares_the_same(standin_run: Run) -> None:
    device, obs = standin_run
    lines = fidelity.compare(device, obs)
    assert [ln for ln in lines if not ln.startswith("same: ")] == []
    assert len(lines) >= 16


def test_each_difference_is_reported(standin_run: Run) -> None:
    device, obs = standin_run
    device["async_queue_size"] = obs["async_queue_size"] * 2
    device["push_past_queue"]["status"] = 8
    device["texts"]["driver_version"] = "unknown"
    differs = [ln for ln in fidelity.compare(device, obs) if ln.startswith("DIFFERS")]
    assert [ln.split(":")[1].strip() for ln in differs] == [
        "async queue size",
        "push_past_queue",
        "driver version file form",
    ]

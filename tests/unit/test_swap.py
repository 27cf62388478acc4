"""The release swap (RELEASE_POINTER): a new release is loaded beside the one serving, checked
(files against the signed manifest, the contract's shapes, the golden windows) and made active
without a restart; a candidate that fails a check is refused and the old model keeps serving.
In onnx mode (two ONNX Runtime sessions), hailo mode (two models on the stand-in's one VDevice)
and stub mode; under load on a real server, no request fails."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import standin_dfc
from conftest import ClientFactory
from hailo_platform import standin
from test_server import Server

from hef_compiler.golden import encode, golden
from sidecar_app.backends.base import file_sha256
from sidecar_app.loadgen import build_request, run_load
from sidecar_app.refmodel import calibration_set, reference_model

POLL = "0.05"


def onnx_release(root: Path, folder: str, seed: int = 7, golden_seed: int | None = None,
                 num_motifs: int = 12) -> dict[str, Any]:  # fmt: skip
    """A release folder as the role puts it under the models root (onnx mode): model.onnx,
    golden.json (from the model of GOLDEN_SEED: another seed makes golden windows it cannot meet)
    and manifest.json naming both. Returns the pointer that makes it current."""
    d = root / folder
    d.mkdir(parents=True)
    model = reference_model(d / "model.onnx", num_motifs=num_motifs, seed=seed)
    calib = calibration_set(root / f"{folder}.calib.npy", 16)
    ref = model if golden_seed is None else reference_model(root / f"{folder}.ref.onnx", seed=golden_seed)
    gold = encode(golden(ref, calib, 4))
    (d / "golden.json").write_bytes(gold)
    manifest = {"model": "imu-encoder", "version": folder, "onnx_sha256": file_sha256(model),
                "golden": {"file": "golden.json", "sha256": hashlib.sha256(gold).hexdigest()}}  # fmt: skip
    (d / "manifest.json").write_text(json.dumps(manifest))
    return {"folder": folder, "file": "model.onnx", "sha256": manifest["onnx_sha256"],
            "config_version": f"cfg-{folder}", "num_motifs": num_motifs, "model": "imu-encoder",
            "version": folder}  # fmt: skip


def point(root: Path, pointer: dict[str, Any]) -> None:
    """Writes the pointer as the role does (a new file renamed over the old one)."""
    tmp = root / ".current.json.tmp"
    tmp.write_text(json.dumps(pointer))
    tmp.replace(root / "current.json")


def wait_for(
    get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = get()
        if done(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "models"
    r.mkdir()
    return r


def test_onnx_release_swaps_without_a_restart(make_client: ClientFactory, root: Path) -> None:
    a, b = onnx_release(root, "a", seed=7), onnx_release(root, "b", seed=8)
    point(root, a)
    client = make_client(INFER_MODE="onnx", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    health = client.get("/healthz").json()
    assert (health["release"]["folder"], health["config_version"], health["model_sha256"]) == (
        "a",
        "cfg-a",
        a["sha256"],
    )
    window = {"x": [[0.1] * 9] * 100}
    before = client.post("/infer", json=window).json()
    point(root, b)
    health = wait_for(lambda: client.get("/healthz").json(), lambda h: h["release"]["folder"] == "b")
    assert health["release"]["folder"] == "b" and health["model_sha256"] == b["sha256"]
    assert health["candidate"]["state"] == "active" and health["last_swap_at"] is not None
    assert client.post("/infer", json=window).json() != before, "the new model answers"
    metrics = client.get("/metrics").text
    assert f'config_version="cfg-b",model="imu-encoder",sha256="{b["sha256"]}",version="b"' in metrics
    assert 'hailo_sidecar_release_swaps_total{result="activated"} 1.0' in metrics


@pytest.mark.parametrize(
    ("make", "kind", "message"),
    [
        (lambda root: onnx_release(root, "bad", seed=8, golden_seed=9), "golden",
         "does not reproduce the release's 4 golden windows"),
        (lambda root: {**onnx_release(root, "bad"), "num_motifs": 10}, "contract", "motif_scores"),
        (lambda root: {**onnx_release(root, "bad"), "sha256": "0" * 64}, "checksum_mismatch",
         "but the release pointer says"),
        (lambda root: {**onnx_release(root, "bad"), "file": "model.hef"}, "pointer", "runs onnx mode"),
        (lambda root: {"folder": "../etc", "file": "model.onnx", "sha256": "0" * 64, "config_version": "x"},
         "pointer", "is not a folder name"),
    ],
    ids=["golden windows", "output shape", "file changed after signing", "hef in onnx mode", "bad pointer"],
)  # fmt: skip
def test_a_bad_candidate_is_refused_and_the_old_model_keeps_serving(
    make_client: ClientFactory, root: Path, make: Callable[[Path], dict[str, Any]], kind: str, message: str
) -> None:
    a = onnx_release(root, "a")
    point(root, a)
    client = make_client(INFER_MODE="onnx", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    bad = make(root)
    if kind == "checksum_mismatch":
        (root / "bad" / "manifest.json").write_text(
            json.dumps({**json.loads((root / "bad" / "manifest.json").read_text()), "onnx_sha256": "0" * 64})
        )
    point(root, bad)
    health = wait_for(
        lambda: client.get("/healthz").json(), lambda h: (h["candidate"] or {}).get("state") == "refused"
    )
    assert health["candidate"]["state"] == "refused" and health["candidate"]["kind"] == kind, health[
        "candidate"
    ]
    assert message in health["candidate"]["reason"]
    assert health["status"] == "ok" and health["release"]["folder"] == "a"
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200
    assert "hailo_sidecar_candidate_refused 1.0" in client.get("/metrics").text
    # Pointing back at the serving release clears nothing and changes nothing.
    point(root, a)
    time.sleep(0.2)
    assert client.get("/healthz").json()["release"]["folder"] == "a"


def test_a_restart_serves_the_pointer_and_refuses_a_changed_file(
    make_client: ClientFactory, root: Path
) -> None:
    b = onnx_release(root, "b", seed=8)
    point(root, b)
    client = make_client(INFER_MODE="onnx", RELEASE_POINTER=str(root / "current.json"))
    assert client.get("/healthz").json()["release"]["folder"] == "b"
    # A file changed on the host after deployment: the next start refuses it (unready).
    (root / "b" / "model.onnx").write_bytes((root / "b" / "model.onnx").read_bytes() + b"\0")
    again = make_client(INFER_MODE="onnx", RELEASE_POINTER=str(root / "current.json"))
    ready = again.get("/readyz")
    assert (
        ready.status_code == 503
        and "refusing to serve a model that is not the signed release's" in ready.json()["reason"]
    )


def test_stub_mode_swaps_its_config(make_client: ClientFactory, root: Path) -> None:
    point(root, {"folder": None, "file": None, "config_version": "stub-1"})
    client = make_client(INFER_MODE="stub", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    assert client.get("/healthz").json()["config_version"] == "stub-1"
    point(root, {"folder": None, "file": None, "config_version": "stub-2", "num_motifs": 5})
    health = wait_for(lambda: client.get("/healthz").json(), lambda h: h["config_version"] == "stub-2")
    assert health["config_version"] == "stub-2" and health["num_motifs"] == 5
    assert len(client.post("/infer", json={"x": [[0.1] * 9] * 100}).json()["motif_scores"]) == 5


def hailo_release(root: Path, tmp: Path, folder: str, seed: int) -> dict[str, Any]:
    """A release compiled by hailo-compile with the stand-in DFC (the HEF carries the network)."""
    bindir, site = standin_dfc.install(tmp / "dfc")
    onnx, calib = (
        reference_model(tmp / f"{folder}.onnx", seed=seed),
        calibration_set(tmp / f"{folder}.npy", 64),
    )
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}  # fmt: skip
    subprocess.run([sys.executable, "-m", "hef_compiler.cli", "--onnx", str(onnx), "--calib", str(calib),
                    "--version", folder, "--config-version", f"cfg-{folder}", "--out", str(tmp / "out")],
                   env=env, check=True, capture_output=True)  # fmt: skip
    shutil.copytree(tmp / "out" / "imu-encoder" / folder, root / folder)
    manifest = json.loads((root / folder / "manifest.json").read_text())
    return {"folder": folder, "file": "model.hef", "sha256": manifest["hef_sha256"],
            "config_version": f"cfg-{folder}", "num_motifs": 12}  # fmt: skip


def test_hailo_mode_swaps_on_one_vdevice(make_client: ClientFactory, root: Path, tmp_path: Path) -> None:
    a, b = hailo_release(root, tmp_path, "1.0.0", 7), hailo_release(root, tmp_path, "1.1.0", 8)
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    assert client.get("/healthz").json()["release"]["folder"] == "1.0.0"
    point(root, b)
    health = wait_for(lambda: client.get("/healthz").json(), lambda h: h["release"]["folder"] == "1.1.0")
    assert health["release"]["folder"] == "1.1.0" and health["hef_sha256"] == b["sha256"]
    # The device stayed open (one VDevice, now the new model's) and serves.
    assert standin.held_vdevices() == 1
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200


def test_no_request_fails_during_swaps_under_load(root: Path) -> None:
    """A real server under 4 concurrent clients while the release changes five times."""
    releases = [onnx_release(root, f"r{i}", seed=7 + i) for i in range(3)]
    point(root, releases[0])
    server = Server(INFER_MODE="onnx", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL,
                    LOG_LEVEL="warning")  # fmt: skip
    try:
        body = json.dumps({"x": np.full((100, 9), 0.1).tolist()}).encode()
        request = build_request("/infer", body, "application/json", f"127.0.0.1:{server.port}")

        async def load_and_swap() -> Any:
            load = asyncio.create_task(
                run_load("127.0.0.1", server.port, request, 4, 4.0, 100_000, retry=True)
            )
            for i in range(5):
                await asyncio.sleep(0.6)
                point(root, releases[(i + 1) % 3])
            return await load

        result = asyncio.run(load_and_swap())
        health = json.loads(urllib.request.urlopen(server.url + "/healthz").read())
    finally:
        server.stop()
    assert result.requests > 50 and result.errors == 0 and result.failed == 0, result
    assert health["candidate"]["state"] == "active"

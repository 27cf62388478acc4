"""The release swap (RELEASE_POINTER): a new release is loaded beside the one serving, checked
(files against the signed manifest, the contract's shapes, the golden windows) and made active
without a restart; a candidate that fails a check is refused and the old model keeps serving.
In onnx mode (two ONNX Runtime sessions), hailo mode (two models on the stand-in's one VDevice;
a fresh VDevice when the device holds the 32 core ops it can, vdma_device.cpp) and stub mode;
under load on a real server, no request fails, also across 100 swaps in hailo mode."""

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
import standin_hef
from conftest import ClientFactory
from hailo_platform import standin
from test_server import Server

from hef_compiler.golden import encode, golden
from sidecar_app.backends import hailo
from sidecar_app.backends.base import file_sha256
from sidecar_app.tools.loadgen import RunResult, build_request, run_load
from sidecar_app.tools.refmodel import calibration_set, reference_model

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


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One release compiled by hailo-compile (stand-in DFC) for the module's tests to copy."""
    tmp = tmp_path_factory.mktemp("compiled")
    (tmp / "models").mkdir()
    hailo_release(tmp / "models", tmp, "1.0.0", 7)
    return tmp / "models" / "1.0.0"


def copied(root: Path, compiled: Path) -> dict[str, Any]:
    """COMPILED under ROOT; returns the pointer that makes it current."""
    shutil.copytree(compiled, root / compiled.name)
    manifest = json.loads((root / compiled.name / "manifest.json").read_text())
    return {"folder": compiled.name, "file": "model.hef", "sha256": manifest["hef_sha256"],
            "config_version": f"cfg-{compiled.name}", "num_motifs": 12}  # fmt: skip


def recompiled(root: Path, base: dict[str, Any], count: int, tag: str = "r") -> list[dict[str, Any]]:
    """COUNT releases of BASE's network, each a HEF of its own (another digest, so another hash:
    HailoRT configures each as a new core op), with its manifest; returns their pointers."""
    spec = standin_hef.read(root / base["folder"] / "model.hef")
    pointers = []
    for i in range(1, count + 1):
        folder = f"{base['folder']}-{tag}{i}"
        shutil.copytree(root / base["folder"], root / folder)
        hef = root / folder / "model.hef"
        hef.write_bytes(standin_hef.encode({**spec, "digest": f"{spec['digest']}-{tag}{i}"}))
        manifest = json.loads((root / folder / "manifest.json").read_text())
        manifest.update(hef_sha256=file_sha256(hef), version=folder)
        (root / folder / "manifest.json").write_text(json.dumps(manifest))
        pointers.append({**base, "folder": folder, "sha256": manifest["hef_sha256"],
                         "config_version": f"cfg-{folder}"})  # fmt: skip
    return pointers


def metric(text: str, name: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


@pytest.mark.slow
def test_a_hundred_hailo_swaps_under_load_fail_no_request(root: Path, compiled: Path) -> None:
    """100 releases in a row on a real server in hailo mode under 4 clients (binary bodies). A
    VDevice keeps every model it configured and the device refuses the 33rd (vdevice.cpp,
    vdma_device.cpp): every 32nd swap reopens the device, with requests waiting, not failing."""
    base = copied(root, compiled)
    releases = recompiled(root, base, 100)
    point(root, base)
    server = Server(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S="0.02",
                    LOG_LEVEL="warning", DEVICE_POLL_S="0")  # fmt: skip

    def health() -> dict[str, Any]:
        return dict(json.loads(urllib.request.urlopen(server.url + "/healthz", timeout=10).read()))

    def swaps() -> list[str]:
        seen = []
        for pointer in releases:
            point(root, pointer)
            h = wait_for(health, lambda h, f=pointer["folder"]: h["release"]["folder"] == f, timeout=20)
            seen.append(h["release"]["folder"])
            if seen[-1] != pointer["folder"]:
                break  # stuck: the assertion below names it
        return seen

    try:
        body = np.full((100, 9), 0.1, "<f4").tobytes()
        request = build_request("/infer", body, "application/octet-stream", f"127.0.0.1:{server.port}")

        async def load_while_swapping() -> tuple[RunResult, list[str]]:
            done = asyncio.ensure_future(asyncio.to_thread(swaps))
            total = RunResult()
            while not done.done():  # half-second rounds of 4 clients, bounded by the swaps' 20 s each
                r = await run_load("127.0.0.1", server.port, request, 4, 0.5, 100_000, retry=True)
                total.requests, total.errors, total.failed = (
                    total.requests + r.requests,
                    total.errors + r.errors,
                    total.failed + r.failed,
                )
            return total, await done

        t0 = time.perf_counter()
        result, seen = asyncio.run(load_while_swapping())
        elapsed = time.perf_counter() - t0
        final = health()
        served = urllib.request.urlopen(
            urllib.request.Request(
                server.url + "/infer", data=body, headers={"content-type": "application/octet-stream"}
            )
        )
        metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    finally:
        server.stop()
    assert seen == [r["folder"] for r in releases], f"stopped after {seen[-1:]}: {final['candidate']}"
    assert result.requests > 100 and result.errors == 0 and result.failed == 0, result
    assert final["candidate"]["state"] == "active" and final["hef_sha256"] == releases[-1]["sha256"]
    assert served.status == 200 and served.headers["x-model-sha256"] == releases[-1]["sha256"]
    # 1 model at start + 31 swaps fill a VDevice (32); swaps 32, 64 and 96 each open a fresh one
    # with the candidate as its first model, which 31 more swaps fill again.
    assert metric(metrics, "hailo_sidecar_device_reopens_total") == 3
    assert metric(metrics, "hailo_sidecar_device_core_ops") == 100 - 96 + 1
    assert metric(metrics, 'hailo_sidecar_release_swaps_total{result="activated"}') == 100
    print(f"100 hailo swaps in {elapsed:.1f} s under {result.requests} requests")


def test_a_candidate_refused_on_a_reopened_device_gives_the_old_release_back(
    make_client: ClientFactory, root: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every swap reopens when one model fills the VDevice: a candidate that fails its golden
    windows on the fresh VDevice is refused and the old release is configured there again."""
    monkeypatch.setattr(hailo, "MAX_CORE_OPS", 1)
    a = copied(root, compiled)
    (good,) = recompiled(root, a, 1)
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    window = {"x": [[0.1] * 9] * 100}
    before = client.post("/infer", json=window).json()
    # A HEF whose network is not the one its golden windows came from (its first layer's
    # activation changed).
    (bad,) = recompiled(root, a, 1, tag="bad")
    spec = standin_hef.read(root / bad["folder"] / "model.hef")
    spec["standin_layers"][0]["act"] = "none" if spec["standin_layers"][0]["act"] != "none" else "tanh"
    (root / bad["folder"] / "model.hef").write_bytes(standin_hef.encode(spec))
    manifest = json.loads((root / bad["folder"] / "manifest.json").read_text())
    manifest["hef_sha256"] = bad["sha256"] = file_sha256(root / bad["folder"] / "model.hef")
    (root / bad["folder"] / "manifest.json").write_text(json.dumps(manifest))
    point(root, bad)
    health = wait_for(
        lambda: client.get("/healthz").json(), lambda h: (h["candidate"] or {}).get("state") == "refused"
    )
    assert health["candidate"]["kind"] == "golden", health["candidate"]
    assert health["status"] == "ok" and health["release"]["folder"] == "1.0.0"
    assert client.post("/infer", json=window).json() == before
    assert standin.held_vdevices() == 1 and standin.configured_core_ops() == 1
    point(root, good)
    health = wait_for(
        lambda: client.get("/healthz").json(), lambda h: h["release"]["folder"] == good["folder"]
    )
    assert (health["candidate"]["state"], health["candidate"]["device"]) == ("active", "reopened")
    assert client.post("/infer", json=window).status_code == 200
    assert "hailo_sidecar_device_reopens_total 2.0" in client.get("/metrics").text


def test_a_request_waits_for_a_reopen_at_most_the_bound_then_gets_503(
    make_client: ClientFactory, root: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-call side of a slow reopen (here: a device at 0.1 s per frame checking 8 golden
    windows): a request waits no longer than the bound, is told to retry, and the swap completes."""
    monkeypatch.setattr(hailo, "MAX_CORE_OPS", 1)
    a = copied(root, compiled)
    (b,) = recompiled(root, a, 1)
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    client.app.state.service.reopen_wait_s = 0.2
    standin.CONTROL["frame_time_s"] = 0.1
    point(root, b)
    health = wait_for(
        lambda: client.get("/healthz").json(), lambda h: (h["candidate"] or {}).get("state") == "checking"
    )
    assert health["candidate"]["state"] == "checking"
    # The reopen checks 8 golden windows at 0.1 s each: had the request waited for it, it would be 200.
    r = client.post("/infer", json={"x": [[0.1] * 9] * 100})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "being reopened for a new release (waited 0.2 s)" in r.json()["error"]
    standin.CONTROL["frame_time_s"] = 0.0002
    health = wait_for(lambda: client.get("/healthz").json(), lambda h: h["release"]["folder"] == b["folder"])
    assert health["candidate"]["device"] == "reopened"
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200


def settled(health: dict[str, Any]) -> bool:
    """The candidate's check has ended (refused or active)."""
    return (health["candidate"] or {}).get("state") in ("refused", "active")


def test_a_device_failure_in_a_candidates_golden_check_refuses_it_and_the_old_model_serves(
    make_client: ClientFactory, root: Path, compiled: Path
) -> None:
    """The on-call side: the device fails (87, delivered through the callback) while the candidate's
    golden windows run beside the serving model. The candidate is refused with the device's kind
    and closed; the old model keeps serving (not 'checking' for ever with a model left open)."""
    a = copied(root, compiled)
    (b,) = recompiled(root, a, 1)
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    standin.CONTROL.update(fail_frames=1, fail_status=87)
    point(root, b)
    health = wait_for(lambda: client.get("/healthz").json(), settled, timeout=3)
    assert (health["candidate"]["state"], health["candidate"]["kind"]) == ("refused", "driver_timeout")
    assert health["release"]["folder"] == a["folder"]
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200
    assert 'hailo_sidecar_release_swaps_total{result="refused"} 1.0' in client.get("/metrics").text


def test_a_device_failure_in_a_candidates_golden_check_on_a_reopened_device_gives_the_old_release_back(
    make_client: ClientFactory, root: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every swap reopens (one model fills the VDevice): the device fails while the candidate's
    golden windows run on the fresh VDevice. The candidate is refused and its VDevice released,
    the old release is configured again and serves; the reopen is counted."""
    monkeypatch.setattr(hailo, "MAX_CORE_OPS", 1)
    a = copied(root, compiled)
    (b,) = recompiled(root, a, 1)
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    window = {"x": [[0.1] * 9] * 100}
    before = client.post("/infer", json=window).json()
    standin.CONTROL.update(fail_frames=1, fail_status=87)
    point(root, b)
    health = wait_for(lambda: client.get("/healthz").json(), settled, timeout=3)
    assert (health["candidate"]["state"], health["candidate"]["kind"]) == ("refused", "driver_timeout")
    assert health["status"] == "ok" and health["release"]["folder"] == a["folder"]
    assert client.post("/infer", json=window).json() == before
    assert standin.held_vdevices() == 1 and standin.configured_core_ops() == 1
    assert standin.released_under_models() == []  # the models closed before their VDevices
    assert "hailo_sidecar_device_reopens_total 1.0" in client.get("/metrics").text


def test_a_candidate_whose_files_do_not_match_its_manifest_is_refused_without_a_reopen(
    make_client: ClientFactory, root: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attacker's (or a botched copy's) side: on a full VDevice, a release whose HEF does not
    match its signed manifest is refused by the file check before the device is touched: no
    reopen, the serving model and its VDevice stay as they were."""
    monkeypatch.setattr(hailo, "MAX_CORE_OPS", 1)
    a = copied(root, compiled)
    (bad,) = recompiled(root, a, 1, tag="bad")
    manifest = json.loads((root / bad["folder"] / "manifest.json").read_text())
    manifest["hef_sha256"] = "0" * 64  # the HEF no longer matches the manifest
    (root / bad["folder"] / "manifest.json").write_text(json.dumps(manifest))
    point(root, a)
    client = make_client(INFER_MODE="hailo", RELEASE_POINTER=str(root / "current.json"), RELEASE_POLL_S=POLL)
    backend_before = client.app.state.service.active.backend
    point(root, bad)
    health = wait_for(lambda: client.get("/healthz").json(),
                      lambda h: (h["candidate"] or {}).get("state") == "refused", timeout=5)  # fmt: skip
    assert (health["candidate"]["state"], health["candidate"]["kind"]) == ("refused", "checksum_mismatch")
    assert "hailo_sidecar_device_reopens_total 0.0" in client.get("/metrics").text
    assert client.app.state.service.active.backend is backend_before
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200


def test_a_request_failing_on_the_old_model_during_a_reopen_leaves_no_stale_error_nor_fallback(
    make_client: ClientFactory, root: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-call side of a device error racing a reopen: a request took the old model before the
    reopen and fails on the device (87) while the reopen waits behind it; the reopen then makes the
    candidate serve. Health must not keep the old error (reason, kind, a retry pending) and no
    fallback may be loaded beside the model that serves (FALLBACK_MODE=stub)."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(hailo, "MAX_CORE_OPS", 1)
    a = copied(root, compiled)
    (b,) = recompiled(root, a, 1)
    point(root, a)
    client = make_client(INFER_MODE="hailo", FALLBACK_MODE="stub", RELEASE_POINTER=str(root / "current.json"),
                         RELEASE_POLL_S=POLL)  # fmt: skip
    window = {"x": [[0.1] * 9] * 100}
    standin.CONTROL.update(fail_frames=1, fail_status=87, delay_s=0.5)
    with ThreadPoolExecutor(1) as pool:
        failing = pool.submit(client.post, "/infer", json=window)
        time.sleep(0.1)  # the request sits in run_async on the backend thread for 0.5 s
        point(root, b)  # the reopen is queued behind it
        time.sleep(0.2)
        standin.CONTROL["delay_s"] = 0
        assert failing.result().status_code == 503
    wait_for(lambda: client.get("/healthz").json(), settled)
    time.sleep(0.3)  # what the failed request queued after the reopen (its close, a fallback) has run
    health = client.get("/healthz").json()
    assert (health["candidate"]["state"], health["candidate"]["device"]) == ("active", "reopened")
    assert (health["status"], health["serving_mode"]) == ("ok", "hailo")
    assert health["release"]["folder"] == b["folder"]
    assert health["reason"] is None, health["reason"]
    service = client.app.state.service
    assert (service.error_kind, service._fallback) == (None, None)
    assert 'hailo_sidecar_backend_errors_total{kind="driver_timeout"} 1.0' in client.get("/metrics").text
    assert client.post("/infer", json=window).status_code == 200

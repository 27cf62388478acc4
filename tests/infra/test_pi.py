"""Pi: HailoRT as the hailort role's verify phase judges it (its state reader's JSON, its verdicts:
plugins/filter/hailort.py), the device given to the hailo group when the host has one, the
sidecar container non-root on a read-only root with /models read-only, serving the deployed
release (health: its sha256 and config version) with live metrics."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import in_group, var

testinfra_hosts = ["ansible://pi"]
# The hailort role installs its state reader here (roles/hailort/vars/main.yml) and judges its
# output with these filters; the same verdicts here.
STATE_READER = "/usr/local/libexec/hailo-state"
_spec = importlib.util.spec_from_file_location(
    "hailort_filter", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "hailort.py"
)
assert _spec and _spec.loader
hailort: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hailort)
HEALTHZ_COUNT = re.compile(
    r'^hailo_sidecar_requests_total\{code="200",endpoint="/healthz",method="GET"\} (\S+)$', re.M
)


@pytest.fixture(autouse=True)
def _pi(host):
    in_group(host, "pi")


@pytest.fixture
def hailort_state(host) -> dict[str, Any]:
    """The reader's JSON (without the holders: the sidecar holds the device, and only root sees
    every process)."""
    args = [
        "--device",
        var(host, "hailort_device"),
        "--driver-version-file",
        var(host, "hailort_driver_version_file"),
    ]
    out = host.check_output(f"python3 {STATE_READER} {shlex.join(args)} --skip holders")
    state: dict[str, Any] = json.loads(out)
    return state


def test_hailort_as_the_role_verified_it(host, hailort_state):
    """No problem the hailort role stops a host for: hailortcli, the Python binding and the hailort
    package at one version, the hailo-dkms package when installed (hailo-all on bookworm may take
    the driver from the kernel) and the module for the running kernel a DKMS build at that
    version, the loaded driver at it (HailoRT compares major.minor.revision), no package left
    half-configured; with a device, identify answers with the driver's firmware of the library's
    major.minor. The role refuses a mismatch; this proves it still holds."""
    name = host.backend.get_hostname()
    problems = hailort.hailort_problems(
        hailort_state, name, var(host, "hailort_device_required") is not False
    )
    assert problems == [], "\n".join(p["message"] for p in problems)


def test_device_node_given_to_the_hailo_group(host, stack, hailort_state):
    device = hailort_state["device"]
    if var(host, "hailort_device_required") is False and not device["present"]:
        # Declared device-less (e.g. the lab): the sidecar must not claim the device either.
        assert stack.profile != "real", f"{device['path']} is absent but the real profile is deployed"
        return
    assert device["char"], f"{device['path']} missing: see hailort_device_required"
    assert device["group"] == var(host, "sidecar_stack_hailo_group") and device["mode"] == "0660", device
    # With no device listed (no driver, or the device did not come up) identify prints nothing.
    assert hailort_state["firmware"]["version"], hailort_state["firmware"]


def test_sidecar_non_root_read_only_with_models_read_only(host, stack):
    state = stack.container()
    assert state["State"]["Health"]["Status"] == "healthy"
    assert state["Config"]["User"] not in ("", "0", "root", "0:0")
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    (models,) = [m for m in state["Mounts"] if m["Destination"] == "/models"]
    assert models["RW"] is False
    # The models root: every release folder and current.json, the release the sidecar serves.
    assert stack.current["model"]["path"].startswith(models["Source"].rstrip("/") + "/")
    assert state["Config"]["Image"] == stack.current["image"]


def test_health_reports_the_deployed_model_and_config(host, stack):
    model = stack.current["model"]
    assert host.file(f"{model['path']}/{model['file']}").sha256sum == model["sha256"]
    health = json.loads(stack.get("/healthz"))
    assert health["status"] == "ok" and health["ready"] is True
    assert health["model_sha256"] == model["sha256"]
    assert health["model_kind"] == {"real": "hef", "onnx": "onnx"}[stack.profile]
    assert health["config_version"] == stack.current["config_version"]
    assert health["serving_mode"] == {"real": "hailo", "onnx": "onnx"}[stack.profile]
    # The release the host made current, and no candidate refused since.
    assert health["release"]["sha256"] == model["sha256"] and health["release"]["version"] == model["version"]
    assert (health["candidate"] or {}).get("state") != "refused", health["candidate"]


def _healthz_count(metrics: str) -> float:
    m = HEALTHZ_COUNT.search(metrics)
    return float(m.group(1)) if m else 0.0


def test_metrics_live_and_name_the_model(host, stack):
    before = _healthz_count(stack.get("/metrics"))
    stack.get("/healthz")
    after = stack.get("/metrics")
    assert _healthz_count(after) >= before + 1, "the request counter did not move"
    sha, config = stack.current["model"]["sha256"], stack.current["config_version"]
    info = [line for line in after.splitlines() if line.startswith("hailo_sidecar_model_info{")]
    assert len(info) == 1 and f'model_sha256="{sha}"' in info[0] and f'config_version="{config}"' in info[0]
    assert info[0].endswith(" 1.0")
    assert re.search(r"^hailo_sidecar_ready 1\.0$", after, re.M)

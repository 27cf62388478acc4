"""Pi: HailoRT's parts at one version (and the device given to the hailo group, when the host
has one), the sidecar container non-root on a read-only root with /models read-only, serving
the deployed release (health: its sha256 and config version) with live metrics."""

from __future__ import annotations

import json
import re

import pytest
from conftest import in_group, var

testinfra_hosts = ["ansible://pi"]
BINDING_VERSION = "import hailo_platform; print(hailo_platform.__version__)"
HEALTHZ_COUNT = re.compile(
    r'^hailo_sidecar_requests_total\{code="200",endpoint="/healthz",method="GET"\} (\S+)$', re.M
)


@pytest.fixture(autouse=True)
def _pi(host):
    in_group(host, "pi")


def _xyz(text: str) -> str:
    m = re.search(r"(\d+\.\d+\.\d+)", text)
    assert m, f"no version in {text!r}"
    return m.group(1)


def test_hailort_parts_at_one_version(host):
    """hailortcli, the Python binding and the hailort package agree; the hailo-dkms package when it
    is installed (hailo-all on bookworm may take the driver from the kernel); with a loaded driver,
    its version (HailoRT compares major.minor.revision); with a device, the firmware's major.minor
    (below). The hailort role refuses a mismatch; this proves it still holds."""
    versions = {
        "hailortcli": _xyz(host.check_output("hailortcli --version")),
        "hailo_platform": _xyz(host.check_output(f"python3 -c {BINDING_VERSION!r}")),
        "hailort package": _xyz(host.package("hailort").version),
    }
    if host.package("hailo-dkms").is_installed:
        versions["hailo-dkms package"] = _xyz(host.package("hailo-dkms").version)
    driver = host.file("/sys/module/hailo_pci/version")
    if driver.exists:
        versions["hailo_pci driver"] = _xyz(driver.content_string)
    assert len(set(versions.values())) == 1, versions


def test_device_node_given_to_the_hailo_group(host, stack):
    device = var(host, "sidecar_stack_hailo_device")
    node = host.file(device)
    if var(host, "hailort_device_required") is False and not node.exists:
        # Declared device-less (e.g. the lab): the sidecar must not claim the device either.
        assert stack.profile != "real", f"{device} is absent but the real profile is deployed"
        return
    # testinfra's File has no character-device check: test(1) has.
    assert host.run(f"test -c {device}").rc == 0, f"{device} missing: see hailort_device_required"
    assert node.group == var(host, "sidecar_stack_hailo_group") and node.mode == 0o660
    identify = host.run("hailortcli fw-control identify")
    assert identify.rc == 0, identify.stdout + identify.stderr
    # With no device listed (no driver, or the device did not come up) it prints nothing, exit 0.
    assert "Firmware Version:" in identify.stdout, (
        "fw-control identify found no device (`dkms status`, `lspci`)"
    )
    assert (
        _xyz(identify.stdout.split("Firmware Version:")[1]).rsplit(".", 1)[0]
        == _xyz(host.check_output("hailortcli --version")).rsplit(".", 1)[0]
    )


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

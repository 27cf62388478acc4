"""The Pi playbook and the hailort role run again from the controller: the device-absent and
device-present paths, version mismatches (stand-in packages of another version), bad variables
and a damaged release stop before any change, naming the variable or the fix."""

from __future__ import annotations

import json
import shutil

import pytest
from labplay import EPHEMERAL, play

# Some tests run two playbooks in a row (the failure, then the repair).
pytestmark = pytest.mark.timeout(900)

HOST = "pi-trixie"
GOOD = {"hailort": "4.23.0-1", "hailo-dkms": "4.23.0-1", "python3-hailort": "4.23.0-1", "hailofw": "4.23.0-1"}


def snapshot(host) -> str:
    return host.run("find /etc /opt /srv /boot -newer /etc/hostname -printf '%p %T@\\n' | sort").stdout


@pytest.fixture
def trixie(host):
    if host.backend.get_hostname() != HOST:
        pytest.skip(f"runs once, against {HOST}")
    return host


def test_device_absent_is_reported_and_required_device_stops_the_host(trixie):
    ok = play("molecule/resources/hailort.yml", "--limit", HOST)
    assert ok.rc == 0, ok.out[-3000:]
    assert "device absent: hailort_device_required is false" in ok.text
    assert "reboot pending (hailort_reboot_allowed is false)" in ok.text
    assert ok.changed(HOST) == 0
    required = play("molecule/resources/hailort.yml", "--limit", HOST, "-e", "hailort_device_required=true")
    assert required.rc != 0
    assert "No /dev/hailo0 on pi-trixie (a reboot is pending" in required.text
    assert "lspci | grep -i hailo" in required.text and "hailort_device_required: false" in required.text
    assert required.changed(HOST) == 0


def test_version_mismatch_stops_the_host_and_names_the_fix(trixie):
    bad = play("molecule/resources/hailort.yml", "--limit", HOST,
               extra={"hailort_version_set": {**GOOD, "hailo-dkms": "4.22.0-1"}})  # fmt: skip
    assert bad.rc != 0
    assert "HailoRT parts differ on pi-trixie" in bad.text
    assert "driver package (hailo-dkms) 4.22.0" in bad.text and "Install one matching set" in bad.text
    assert trixie.package("hailo-dkms").version == "4.22.0-1", "the pinned (older) set was installed"
    assert "hailo-dkms" in trixie.run("apt-mark showhold").stdout
    # The qualified set again: downgrade/upgrade through the hold, checks pass.
    fixed = play("molecule/resources/hailort.yml", "--limit", HOST)
    assert fixed.rc == 0, fixed.out[-3000:]
    assert trixie.package("hailo-dkms").version == "4.23.0-1"


def test_device_present_group_access_and_driver_mismatch(trixie):
    """A character node at /dev/hailo0 (the stand-in hailortcli answers for it) and the driver's
    version file: the role gives the node to the group, identifies the firmware, and stops on a
    loaded driver of another version (status 76)."""
    trixie.run("mknod -m 0666 /dev/hailo0 c 1 3 && echo 4.23.0 > /run/hailo_pci_version")
    try:
        args = ("--limit", HOST, "-e", "hailort_device_required=true",
                "-e", "hailort_driver_version_file=/run/hailo_pci_version")  # fmt: skip
        ok = play("molecule/resources/hailort.yml", *args)
        assert ok.rc == 0, ok.out[-3000:]
        assert "driver 4.23.0, firmware 4.23.0" in ok.text and "device /dev/hailo0" in ok.text
        node = trixie.file("/dev/hailo0")
        assert node.group == "hailo" and node.mode == 0o660
        trixie.run("echo 4.22.0 > /run/hailo_pci_version")
        stale = play("molecule/resources/hailort.yml", *args)
        assert stale.rc != 0
        assert "loaded hailo_pci driver is 4.22.0" in stale.text and "status 76" in stale.text
    finally:
        trixie.run("rm -f /dev/hailo0 /run/hailo_pci_version")


TAG = "127.0.0.1:5000/hailo/sidecar:0.1.0"
BAD = {
    "version set without the driver": (
        {"hailort_version_set": {"hailort": "4.23.0-1", "python3-hailort": "4.23.0-1"}},
        "hailort_version_set",
    ),
    "device mode not octal": ({"hailort_device_mode": "666"}, "hailort_device_mode"),
    "tag instead of digest": ({"sidecar_stack_image": TAG}, "sidecar_stack_image"),
    "unknown profile": ({"pi_sidecar_profile": "gpu"}, "sidecar_stack_profile"),
    "release folder missing": (
        {"sidecar_stack_release_dir": "/nonexistent/1.0.0"},
        "sidecar_stack_release_dir",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_variable_fails_in_preflight_before_any_change(trixie, case):
    extra, name = BAD[case]
    before = snapshot(trixie)
    run = play("playbooks/pi.yml", "--limit", HOST, extra=extra)
    assert run.rc != 0
    assert name in run.text, f"the message does not name {name}"
    assert "Roll out to the Pi fleet" not in run.text, "the rollout play started"
    assert snapshot(trixie) == before


def test_damaged_release_is_refused_before_the_stack_is_touched(trixie, tmp_path):
    release = tmp_path / "1.0.0"
    shutil.copytree(EPHEMERAL / "releases" / "imu-encoder" / "1.0.0", release)
    (release / "model.onnx").write_bytes((release / "model.onnx").read_bytes() + b"\0")
    before = snapshot(trixie)
    record = trixie.file("/opt/hailo-sidecar/release.json").content_string
    run = play("playbooks/pi.yml", "--limit", HOST, extra={"sidecar_stack_release_dir": str(release)})
    assert run.rc != 0
    assert "the release is damaged or was modified" in run.text
    assert snapshot(trixie) == before
    assert trixie.file("/opt/hailo-sidecar/release.json").content_string == record
    assert json.loads(record)["current"]["config_version"] == "lab-A"

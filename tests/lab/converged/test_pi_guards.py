"""playbooks/pi.yml and the hailort role run again on a lab Pi: the device-absent and
device-present paths, version mismatches (stand-in packages of another version), the field failures
Pi users report most (each reproduced by a stand-in condition, each stopping the host with its fix
named and nothing else changed), bad variables and a damaged release, all before any change."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from labplay import PIS, RELEASE_A, BadRuns, bad_variable_runs, host, image_record, play, snapshot

# Some tests run two playbooks in a row (the failure, then the repair).
pytestmark = pytest.mark.timeout(900)

HOST = PIS[0]  # lab-pi-trixie
HAILORT = "lab/playbooks/hailort.yml"
GOOD = {"hailort": "4.23.0-1", "hailo-dkms": "4.23.0-1", "python3-hailort": "4.23.0-1", "hailofw": "4.23.0-1"}
DEVICE = ("-e", "hailort_device_required=true", "-e", "hailort_driver_version_file=/run/hailo_pci_version")
# The field failures are found by the role's verify phase, which runs alone on a converged host
# (and is what stops a rollout): these runs take seconds instead of the whole role's minute.
VERIFY = ("--tags", "hailort_preflight,hailort_verify")
# A version set that changes: installed, then checked (the configuration stays as it is).
INSTALL = ("--tags", "hailort_preflight,hailort_install,hailort_verify")


@pytest.fixture(scope="module")
def pi():
    return host(HOST)


@pytest.fixture
def device(pi) -> Iterator[None]:
    """A character node at /dev/hailo0 (the stand-in hailortcli answers for it) and the loaded
    driver's version file, as a Pi 5 with the AI Kit shows them."""
    pi.run("mknod -m 0666 /dev/hailo0 c 1 3 && echo 4.23.0 > /run/hailo_pci_version")
    yield
    pi.run("rm -f /dev/hailo0 /run/hailo_pci_version && rm -rf /run/hailo-standin")


def test_device_absent_is_reported_and_required_device_stops_the_host(pi):
    ok = play(HAILORT, "--limit", HOST, *VERIFY)
    assert ok.rc == 0, ok.out[-3000:]
    assert "device absent: hailort_device_required is false" in ok.text
    assert "reboot pending (hailort_reboot_allowed is false)" in ok.text
    assert ok.changed(HOST) == 0
    required = play(HAILORT, "--limit", HOST, *VERIFY, "-e", "hailort_device_required=true")
    assert required.rc != 0
    assert f"No /dev/hailo0 on {HOST} (a reboot is pending" in required.text
    assert "lspci | grep -i hailo" in required.text and "hailort_device_required: false" in required.text
    assert required.changed(HOST) == 0


def test_version_mismatch_stops_the_host_and_names_the_fix(pi):
    bad = play(
        HAILORT, "--limit", HOST, *INSTALL, extra={"hailort_version_set": {**GOOD, "hailo-dkms": "4.22.0-1"}}
    )
    assert bad.rc != 0
    assert f"HailoRT parts differ on {HOST}" in bad.text
    assert "driver package (hailo-dkms) 4.22.0" in bad.text and "Install one matching set" in bad.text
    assert pi.package("hailo-dkms").version == "4.22.0-1", "the pinned (older) set was installed"
    assert "hailo-dkms" in pi.run("apt-mark showhold").stdout
    # The qualified set again: downgrade/upgrade through the hold, checks pass.
    fixed = play(HAILORT, "--limit", HOST, *INSTALL)
    assert fixed.rc == 0, fixed.out[-3000:]
    assert pi.package("hailo-dkms").version == "4.23.0-1"


def test_device_present_group_access_and_driver_mismatch(pi, device):
    """The role gives the node to the group, identifies the firmware, and stops on a loaded driver
    of another version (status 76)."""
    ok = play(HAILORT, "--limit", HOST, "--tags", "hailort_configure,hailort_verify", *DEVICE)
    assert ok.rc == 0, ok.out[-3000:]
    assert "driver 4.23.0, firmware 4.23.0" in ok.text and "device /dev/hailo0" in ok.text
    node = pi.file("/dev/hailo0")
    assert node.group == "hailo" and node.mode == 0o660
    pi.run("echo 4.22.0 > /run/hailo_pci_version")
    stale = play(HAILORT, "--limit", HOST, *VERIFY, *DEVICE)
    assert stale.rc != 0
    assert "loaded hailo_pci driver is 4.22.0" in stale.text and "status 76" in stale.text


# --- the field failures Pi users report most ----------------------------------------------------


def test_firmware_of_another_version_than_the_driver_asks_for_a_reboot(pi, device):
    """HailoRT upgraded without a reboot: the device still runs the firmware loaded at boot."""
    # The node as the role left it on this host (group hailo, 0660), so only the failure is new.
    pi.run("chgrp hailo /dev/hailo0 && chmod 0660 /dev/hailo0")
    pi.run("mkdir -p /run/hailo-standin && echo 4.22.0 > /run/hailo-standin/firmware")
    before = snapshot(pi)
    run = play(HAILORT, "--limit", HOST, *VERIFY, *DEVICE)
    assert run.rc != 0
    assert "runs firmware 4.22.0, the loaded driver is 4.23.0" in run.text
    assert "Reboot the Pi (or reset the PCIe device)" in run.text
    assert snapshot(pi) == before and run.changed(HOST) == 0


DKMS_STATES = ["not built for the running kernel", "the kernel's own module without a DKMS build",
               "the kernel's own module beside the DKMS build"]  # fmt: skip


@pytest.mark.parametrize("state", DKMS_STATES)
def test_dkms_module_problems_for_the_running_kernel(pi, state):
    """DKMS installs hailo_pci under updates/dkms, which depmod prefers: the kernel's own (older)
    module is chosen only when DKMS has no build for the running kernel, and the fix is to build
    it (`dkms autoinstall`), not a depmod override."""
    kernel = pi.check_output("uname -r")
    dkms = f"/lib/modules/{kernel}/updates/dkms/hailo_pci.ko"
    in_tree = f"/lib/modules/{kernel}/kernel/drivers/misc/hailo_pci.ko"
    if state != "not built for the running kernel":
        # Raspberry Pi OS bookworm kernels carry an in-tree hailo_pci of their own.
        pi.run(f"mkdir -p {in_tree.rsplit('/', 1)[0]} && cp {dkms} {in_tree}")
    if state != "the kernel's own module beside the DKMS build":
        # A kernel upgrade the DKMS driver was not built for: no DKMS build for the running kernel.
        pi.run(f"mv {dkms} /root/hailo_pci.ko.away")
    pi.run("depmod -a")
    expected = {
        "not built for the running kernel": [f"no hailo_pci module for the running kernel {kernel}"],
        "the kernel's own module without a DKMS build": [
            f"The running kernel's own hailo_pci ({in_tree}",
            f"DKMS has no build of hailo-dkms 4.23.0 for the running kernel {kernel}",
        ],
        "the kernel's own module beside the DKMS build": [],
    }[state]
    try:
        before = snapshot(pi)
        run = play(HAILORT, "--limit", HOST, *VERIFY)
        if not expected:
            # depmod prefers updates/: the DKMS build is chosen, nothing to report.
            assert pi.check_output("modinfo -F filename hailo_pci") == dkms
            assert run.rc == 0, run.out[-3000:]
        else:
            assert run.rc != 0
            for text in [*expected, f"dkms autoinstall -k {kernel}", "hailort_hold_kernel"]:
                assert text in run.text, run.text[-2000:]
            assert "override hailo_pci" not in run.text
        assert snapshot(pi) == before and run.changed(HOST) == 0
    finally:
        pi.run(
            f"mv /root/hailo_pci.ko.away {dkms} 2>/dev/null; rm -rf /lib/modules/{kernel}/kernel; depmod -a"
        )
    assert play(HAILORT, "--limit", HOST, *VERIFY).rc == 0


def test_a_stale_container_holding_the_device_is_named_before_deploying(pi, device):
    """An orphaned container keeps /dev/hailo0 open: the sidecar would fail with status 74."""
    image = image_record()["ref"]
    pi.run(
        f"docker run -d --name stale-sidecar --device /dev/hailo0 --entrypoint /bin/sh {image} "
        "-c 'exec 3<>/dev/hailo0; exec sleep 600'"
    )
    try:
        before = snapshot(pi)
        # The holder check is the hailort role's verify phase, which pi.yml runs before the stack.
        run = play(HAILORT, "--limit", HOST, *VERIFY, *DEVICE)
        assert run.rc != 0
        assert "/dev/hailo0 on lab-pi-trixie is held by PID" in run.text
        assert "container stale-sidecar" in run.text and "docker rm -f stale-sidecar" in run.text
        assert "status 74" in run.text
        assert snapshot(pi) == before
    finally:
        pi.run("docker rm -f stale-sidecar")


def test_too_little_disk_for_the_release_stops_before_any_download(pi, tmp_path):
    """Checked before the image pull and the release copy (the stand-in condition: a reserve no
    disk has)."""
    release = tmp_path / "1.0.1"
    shutil.copytree(RELEASE_A, release)
    before = snapshot(pi)
    run = play("playbooks/pi.yml", "--limit", HOST,
               extra={"sidecar_stack_release_dir": str(release),
                      "sidecar_stack_min_free_mb": 100_000_000})  # fmt: skip
    assert run.rc != 0
    assert f"Too little free disk on {HOST}" in run.text and "sidecar_stack_min_free_mb" in run.text
    assert snapshot(pi) == before


def test_kernel_packages_held_with_the_set_on_request():
    """On lab-pi-bookworm, whose Raspberry Pi OS archive has the kernel metapackage (lab-pi-trixie
    installs from GPUSrv's mirror, which keeps the HailoRT sets only)."""
    bookworm = host(PIS[1])
    bookworm.run("apt-get install -y linux-image-rpi-2712")
    try:
        run = play(HAILORT, "--limit", PIS[1], "--tags", "hailort_preflight,hailort_install", "-e",
                   "hailort_hold_kernel=true")  # fmt: skip
        assert run.rc == 0, run.out[-3000:]
        assert "linux-image-rpi-2712" in bookworm.run("apt-mark showhold").stdout
    finally:
        bookworm.run("apt-mark unhold linux-image-rpi-2712 && apt-get purge -y linux-image-rpi-2712")


# Pull mode (pull_agent) as a site would enable it, each bad case changing one variable.
PULL = {"pull_agent_enabled": True, "pull_agent_repo_url": "http://gpusrv:8082/fleet.git",
        "pull_agent_reports_url": "http://gpusrv:8082/reports",
        "pull_agent_allowed_signers": 'release namespaces="git" ssh-ed25519 AAAAC3Nza',
        "pull_agent_reports_secret": "a-reports-secret-for-the-guards"}  # fmt: skip
BAD = {
    "version set without the library": (
        {"hailort_version_set": {"hailo-dkms": "4.23.0-1", "python3-hailort": "4.23.0-1"}},
        "hailort_version_set",
    ),
    "device mode not octal": ({"hailort_device_mode": "666"}, "hailort_device_mode"),
    "unknown archive mode": ({"hailort_apt_repository": "maybe"}, "hailort_apt_repository"),
    "tag instead of digest": (
        {"sidecar_stack_image": "127.0.0.1:5000/hailo/sidecar:1.2.3"},
        "sidecar_stack_image",
    ),
    "unknown profile": ({"pi_sidecar_profile": "gpu"}, "sidecar_stack_profile"),
    # Ansible itself would stop with a traceback on these ("invalid literal for int()").
    "batches not a list": ({"pi_rollout_batches": "banana"}, "pi_rollout_batches"),
    "batch of no hosts": ({"pi_rollout_batches": [1, "0%"]}, "pi_rollout_batches"),
    "release folder missing": (
        {"sidecar_stack_release_dir": "/nonexistent/1.0.0"},
        "sidecar_stack_release_dir",
    ),
    "pull waves not minutes": ({**PULL, "pull_agent_wave_delays": [0, "30m"]}, "pull_agent_wave_delays"),
    "pull reports over ssh": (
        {**PULL, "pull_agent_reports_url": "ssh://gpusrv/reports"},
        "pull_agent_reports_url must",
    ),
    # The URL carries a credential: the message shows the URL without it.
    "pull repository over ftp, with a credential": (
        {**PULL, "pull_agent_repo_url": "ftp://fleet:hunter2-of-the-fleet@gpusrv/fleet.git"},
        "pull_agent_repo_url must",
    ),
    "pull wave without canaries": ({**PULL, "pull_agent_wave": 1}, "pull_agent_canaries"),
}


@pytest.fixture(scope="module")
def bad_runs(pi) -> BadRuns:
    cases = {case: extra for case, (extra, _) in BAD.items()}
    return bad_variable_runs(pi, "playbooks/pi.yml", cases, "--limit", HOST)


def test_bad_variables_change_nothing_on_the_host(bad_runs):
    assert bad_runs.changed == [], "a bad-variable run changed the host"


def test_a_credential_in_a_refused_url_stays_out_of_the_output(bad_runs):
    run = bad_runs.runs["pull repository over ftp, with a credential"]
    assert "ftp://***@gpusrv/fleet.git" in run.text and "hunter2" not in run.out


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_variable_fails_in_preflight_before_any_change(bad_runs, case):
    name = BAD[case][1]
    run = bad_runs.runs[case]
    assert run.rc != 0
    assert name in run.text, f"the message does not name {name}"
    assert "Unexpected Exception" not in run.text and "Traceback" not in run.text
    assert "Roll out to the Pi fleet" not in run.text, "the rollout play started"


def test_damaged_release_is_refused_before_the_stack_is_touched(pi, tmp_path):
    release = tmp_path / "1.0.0"
    shutil.copytree(RELEASE_A, release)
    (release / "model.onnx").write_bytes((release / "model.onnx").read_bytes() + b"\0")
    before = snapshot(pi)
    record = pi.file("/opt/hailo-sidecar/release.json").content_string
    run = play("playbooks/pi.yml", "--limit", HOST, extra={"sidecar_stack_release_dir": str(release)})
    assert run.rc != 0
    assert "the release is damaged or was modified" in run.text
    assert snapshot(pi) == before
    assert pi.file("/opt/hailo-sidecar/release.json").content_string == record

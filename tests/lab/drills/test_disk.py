"""An SD card that fills up while a release is copied onto the Pi.

The drill mounts a small file system (tmpfs, with the releases copied in) where the releases go on
lab-pi-bookworm, sized so the preflight's free-disk check passes, then fills it while the run
copies the release (other writers fill a real card the same way: logs, images). The sidecar keeps
serving from the folder it mounted at start (a mount on the host does not reach its container),
as it would from the card. The release copied is B (1.1.0), which has never been on this Pi: it
is older than what the Pi serves (C, or D after the power drills), so the run is the operator's
rollback to it (sidecar_stack_allow_downgrade, for one run); without it the verifier refuses B
before any copy ("is older than ..., which this host serves"), and the disk never fills under a
copy. Not faithful: a real card slows down before it is full, and the lab's other file systems
(the stage in /tmp, Docker's) never fill."""

from __future__ import annotations

import json
import re

import pytest
from drill import PORTS, Load, complete_release, note, play_at, wait_serving
from labplay import LAB, host

pytestmark = pytest.mark.timeout(1200)
PI = "lab-pi-bookworm"
MODELS = "/opt/hailo-sidecar/models"
FULL = "/run/drill-full"


@pytest.fixture
def small_disk():
    pi = host(PI)
    used_kb = int(pi.check_output(f"du -sk {MODELS}").split()[0])
    # What is there, the release (about 1 MB) and a margin: the preflight sees room for it.
    pi.run_expect([0], f"mkdir -p {FULL} && mount -t tmpfs -o size={used_kb + 4096}k drill-full {FULL} "
                f"&& cp -a {MODELS}/. {FULL}/ && mount --move {FULL} {MODELS}")  # fmt: skip
    try:
        yield pi
    finally:
        pi.run(f"umount {MODELS}")
    assert "drill-full" not in pi.check_output("cat /proc/mounts")


def test_disk_full_during_the_release_copy(small_disk, releases, timed):
    pi = small_disk
    before = complete_release(PI)["release"]["config_version"]
    record = pi.file("/opt/hailo-sidecar/release.json").content_string
    listing = pi.check_output(f"ls -A {MODELS}")
    # Release B has never been on this Pi: it is copied (the drill never lets it be served).
    extra = {"sidecar_stack_release_dir": str(releases["1.1.0"]), "sidecar_stack_min_free_mb": 0,
             "sidecar_stack_allow_downgrade": True,
             "pi_rollout_report": str(LAB / "drill-disk.json")}  # fmt: skip
    # Filled while the release is copied to the run's stage (in /tmp): before it is copied over.
    fill = lambda: pi.run(f"dd if=/dev/zero of={MODELS}/drill-filler bs=64k")  # noqa: E731
    with Load(PORTS[PI]) as load:
        run, filled = play_at("playbooks/pi.yml", "Copy the release files to the stage", fill, "--limit", PI,
                              "--tags", "sidecar_stack", extra=extra)  # fmt: skip
    assert filled, run.out[-3000:]
    assert run.rc != 0
    assert "Release imu-encoder-1.1.0-" in run.text and f"refused on {PI}" in run.text
    assert "is older than" not in run.text, "refused before the copy: the disk was never full under it"
    assert "No space left on device" in run.text
    # The free space named, as df gives it after the copy was removed (a full tmpfs: 0 KB).
    free = re.search(
        rf"The disk is full: (\d+) KB free on {MODELS} \(the release needs about (\d+) KB\)", run.text
    )
    assert free, run.text[-2000:]
    assert int(free[1]) < int(free[2]), "named more room than the release needs"
    assert "nothing was left of the copy" in run.text
    # Nothing of B: no folder, no hidden copy; the pointer, the record and what is served unchanged.
    assert pi.check_output(f"ls -A {MODELS} | grep -v '^drill-filler$'") == listing
    assert pi.file("/opt/hailo-sidecar/release.json").content_string == record
    assert complete_release(PI)["release"]["config_version"] == before
    report = json.loads((LAB / "drill-disk.json").read_text())[PI]
    assert report["result"] is None and "No space left" in report["error"]
    assert load.failed == 0, "the sidecar stopped serving"
    wait_serving(PI)
    note("disk full during the release copy", serving=before, **load.figures())

"""Power lost in the middle of pi.yml on a Pi, at three points, and a reboot.

The lab's power cut is `docker kill` of the Pi's container: every process ends at once, /run and
/tmp (tmpfs) are gone, the disk (the container's layer, its Docker's volume) keeps what was
written, and `docker start` boots it again (systemd, Docker, the sidecar by its restart policy).
Not faithful: a real SD card can lose writes its controller had acknowledged, and a file system
without a journal replay can come back damaged; the kernel here is the machine's and never stops.
What the drill proves is the order of writes: each one the role makes is a rename (a file, the
pointer, a release folder, the last good state), so a cut between any two leaves the old state or
the new, never a mix, and the next run completes.

One chain on lab-pi-bookworm under a load, each run starting where the cut before left it:
  1. release D, power lost after the release was copied next to the models, before the rename
     that puts it in place: it comes back serving C, and the next run removes the copy;
  2. release D again, power lost after the pointer names D, before the sidecar swapped: it comes
     back serving C or D, whole;
  3. release D and another image, power lost while the image is pulled (before any file changed):
     it comes back serving what it served, on the image it ran;
  4. the same run again completes: D on the new image;
then a reboot: the Pi comes back serving D, and the hailort role's checks of the driver pass
without the reboot they asked for before (/run/reboot-required is gone with /run)."""

from __future__ import annotations

import json

import pytest
from drill import PORTS, Load, complete_release, kill, note, play_at, power_cycle
from labplay import LAB, host, play

pytestmark = pytest.mark.timeout(2400)
PI = "lab-pi-bookworm"
STACK_ONLY = ("--limit", PI, "--tags", "sidecar_stack")


def serves(name: str) -> tuple[str, str]:
    h = complete_release(name)
    image = host(name).check_output(
        "docker inspect --format '{{.Config.Image}}' hailo-hailo-inference-onnx-1"
    )
    return h["release"]["config_version"], image


def test_power_lost_at_three_points_of_a_rollout(releases, drill_image, timed):
    before = serves(PI)
    assert before[0] == "lab-C", "the drills start where the rollout tests leave the Pis"
    d = {"sidecar_stack_release_dir": str(releases["1.5.0"])}
    points = [
        ("the release copy", "Put the verified release in place", d, 0.0),
        ("between the pointer and the swap", "Bring the stack up", d, 0.0),
        (
            "the image pull",
            "Pull the image (nothing else changes",
            {**d, "sidecar_stack_image": drill_image},
            1.0,
        ),
    ]
    for what, task, extra, after in points:
        with Load(PORTS[PI]) as load:
            run, killed = play_at("playbooks/pi.yml", task, kill(PI), *STACK_ONLY, extra=extra, after_s=after)
            assert killed, f"the run never reached '{task}':\n{run.out[-3000:]}"
            seconds = power_cycle(PI, killed=True)
            now = serves(PI)
        note(f"power lost during {what}", serving=now[0], image_changed=now[1] != before[1],
             seconds_to_serve=seconds, **load.figures())  # fmt: skip
        # The records are whole (each written by a rename): the release one, the last good state.
        pi = host(PI)
        for record in ("/opt/hailo-sidecar/release.json", "/opt/hailo-sidecar/last-good.json"):
            json.loads(pi.file(record).content_string)
        if what == "the release copy":
            assert now == before, "a release half-copied became the served one"
            left = host(PI).run("ls -A /opt/hailo-sidecar/models").stdout.split()
            assert not [f for f in left if f.startswith("imu-encoder-1.5.0")], (
                "a release folder before the rename"
            )
            note(f"power lost during {what}", partial_copy_left=any(f.endswith(".partial") for f in left))
        elif what == "between the pointer and the swap":
            assert now[0] in ("lab-C", "lab-D") and now[1] == before[1]
        else:
            assert now[1] == before[1], "the image changed although the run stopped in its pull"
        before = now
    with Load(PORTS[PI]) as load:
        last = play("playbooks/pi.yml", *STACK_ONLY,
                    extra={**d, "sidecar_stack_image": drill_image,
                           "pi_rollout_report": str(LAB / "drill-power.json")})  # fmt: skip
    assert last.rc == 0, last.out[-3000:]
    assert serves(PI) == ("lab-D", drill_image)
    assert ".partial" not in host(PI).run("ls -A /opt/hailo-sidecar/models").stdout
    note("power lost: the next pi.yml", seconds=round(last.seconds), **load.figures())


def test_reboot_comes_back_serving_with_the_driver_checked(timed):
    release = complete_release(PI)["release"]["config_version"]
    with Load(PORTS[PI]) as load:
        seconds = power_cycle(PI, graceful=True)
    assert complete_release(PI)["release"]["config_version"] == release
    record = json.loads(host(PI).file("/opt/hailo-sidecar/release.json").content_string)
    assert record["current"]["config_version"] == release
    checked = play("lab/playbooks/hailort.yml", "--limit", PI, "--tags", "hailort_preflight,hailort_verify")
    assert checked.rc == 0, checked.out[-3000:]
    assert "reboot pending" not in checked.text, "/run/reboot-required outlived the reboot"
    assert checked.changed(PI) == 0
    note("reboot", serving=release, seconds_to_serve=seconds, **load.figures())

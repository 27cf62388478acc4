"""Changes that must not take a Pi down, on lab-pi-bookworm.

Out-of-range settings (the issue's `-e sidecar_stack_max_batch=0`, and every other bound at once)
and a clock far off stop in preflight, naming what is wrong, before anything changes. The clock
drill runs the Pi's Python for Ansible under libfaketime (Debian's faketime; LD_PRELOAD reaches
every command the modules start, the role's `date +%s` and ssh-keygen included): the Pi's programs
see the wrong time, as on a Pi 5 that booted without its battery and without network time. That
Python is the Pi's alone: it is set in an inventory of the drill's own next to the lab's (the Pi's
host variable), never with -e, which would give it to the tasks the role delegates to the
controller too (they would fail to start it there: "/bin/sh: ...python3-behind: not found"). The
controller keeps the right time, as a site's does. Not faithful: the kernel's clock (which the
machine shares with the lab; setting it needs CAP_SYS_TIME and would move every container's) and
Docker keep the right time, and so does a program a module does not start (systemd's timers).

A change that passes preflight but does not come up (a memory limit the sidecar cannot start in)
is rolled back within the run, under a load: the Pi serves again, the play says what was put back
and why."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from drill import PORTS, Load, complete_release, note
from labplay import LAB, BadRuns, host, play, refused_runs

pytestmark = pytest.mark.timeout(1800)
PI = "lab-pi-bookworm"
# Each value the sidecar (or Docker) would refuse, of the right type: each is named with its range.
OUT_OF_RANGE = {
    "sidecar_stack_max_batch": 5000, "sidecar_stack_port": 70000, "sidecar_stack_num_motifs": 0,
    "sidecar_stack_release_poll_s": 0, "sidecar_stack_device_poll_s": -1,
    "sidecar_stack_device_retry_max_s": 0,
    "sidecar_stack_unready_exit_s": 100000, "sidecar_stack_mem_limit": "4m", "sidecar_stack_pids_limit": 0,
    "sidecar_stack_health_timeout": "0s", "sidecar_stack_health_interval": "soon",
    "sidecar_stack_wait_timeout": 0,
    "sidecar_stack_swap_timeout": 0, "sidecar_stack_config_version": "x" * 129,
}  # fmt: skip
# Settings with choices are refused one step earlier, by the role's argument specs (the same list).
CHOICES = {
    "sidecar_stack_log_level": "loud",
    "sidecar_stack_log_format": "xml",
    "sidecar_stack_fallback_mode": "gpu",
}


def faketime(pi, name: str, offset: str) -> str:
    """A Python for Ansible on the Pi that runs with the clock OFFSET (libfaketime's +/-Nh, Nd)."""
    path = f"/usr/local/bin/python3-{name}"
    pi.run_expect(
        [0],
        f"printf '#!/bin/sh\\nexec faketime -f {offset} /usr/bin/python3 \"$@\"\\n' > {path}"
        f" && chmod 0755 {path}",
    )
    return path


def pi_python(name: str, python: str) -> str:
    """An inventory of the drill's own, read after the lab's (-i twice), that gives the Pi alone the
    Python PYTHON: the tasks the role delegates to the controller keep the controller's."""
    overlay = LAB / f"drill-clock-{name}.yml"
    overlay.write_text(json.dumps({"all": {"hosts": {PI: {"ansible_python_interpreter": python}}}}) + "\n")
    return str(overlay)


@pytest.fixture(scope="module")
def refused() -> BadRuns:
    pi = host(PI)
    if pi.run("command -v faketime").rc != 0:
        pi.run_expect([0], "apt-get install -y --no-install-recommends faketime || "
                    "(apt-get update && apt-get install -y --no-install-recommends faketime)")  # fmt: skip
    behind, ahead = faketime(pi, "behind", "-10h"), faketime(pi, "ahead", "+40d")
    skew = int(pi.check_output(f"{behind} -c 'import time; print(int(time.time()))'")) - int(
        pi.check_output("date +%s")
    )
    assert abs(skew + 36000) < 60, f"faketime did not move the clock 10 h back ({skew} s)"
    # The lab's key with the validity window a site would give it: from an hour ago for a month.
    now = datetime.now(UTC)
    key = (
        (LAB / "allowed_signers")
        .read_text()
        .strip()
        .replace(
            'namespaces="hailo-pipeline-release"',
            f'namespaces="hailo-pipeline-release",valid-after="{now - timedelta(hours=1):%Y%m%d%H%M}",'
            f'valid-before="{now + timedelta(days=30):%Y%m%d%H%M}"',
        )
    )
    limit = ("--limit", PI)
    cases = {
        "max_batch=0": lambda: play("playbooks/pi.yml", *limit, "-e", "sidecar_stack_max_batch=0"),
        "every bound": lambda: play("playbooks/pi.yml", *limit, extra=OUT_OF_RANGE),
        "choices": lambda: play("playbooks/pi.yml", *limit, extra=CHOICES),
        "clock behind": lambda: play("playbooks/pi.yml", *limit, "-i", pi_python("behind", behind),
                                     extra={"sidecar_stack_allowed_signers": key}),
        "clock ahead": lambda: play("playbooks/pi.yml", *limit, "-i", pi_python("ahead", ahead),
                                    extra={"sidecar_stack_allowed_signers": key}),
    }  # fmt: skip
    t0 = time.monotonic()
    runs = refused_runs(pi, cases, workers=len(cases))
    note("bad settings and a wrong clock, refused in preflight", ci_seconds=round(time.monotonic() - t0),
         **{f"{c}_s": round(r.seconds) for c, r in runs.runs.items()})  # fmt: skip
    return runs


def test_refused_runs_change_nothing(refused):
    assert refused.changed == [], "a refused run changed the Pi"


def test_the_issues_max_batch_0_stops_in_preflight_naming_the_range(refused):
    run = refused.runs["max_batch=0"]
    assert run.rc != 0 and "Roll out to the Pi fleet" not in run.text
    assert (
        "sidecar_stack_max_batch is 0: it must be an integer from 1 to 4096 (the sidecar's MAX_BATCH)"
        in run.text
    )
    assert f"Nothing was changed on {PI}" in run.text


def test_every_out_of_range_setting_is_named_with_its_range(refused):
    run = refused.runs["every bound"]
    assert run.rc != 0 and "Roll out to the Pi fleet" not in run.text
    for var, value in OUT_OF_RANGE.items():
        assert f"{var} is {value}: it must be" in run.text, var
    assert "it must be an integer from 1 to 65535 (the sidecar's PORT)" in run.text
    assert "sidecar_stack_config_version is " + "x" * 129 + ": it must be 1 to 128 characters" in run.text
    assert "sidecar_stack_mem_limit is 4m: it must be a size (512m, 1g) at least 6m" in run.text
    choices = refused.runs["choices"]
    assert choices.rc != 0 and "Roll out to the Pi fleet" not in choices.text
    for var, value in CHOICES.items():
        assert f"value of {var} must be one of" in choices.text and f"got: {value}" in choices.text, var


@pytest.mark.parametrize(("case", "words"), [
    # -10 h: before the release was made too (make lab made it minutes ago), and before valid-after.
    ("clock behind", ["10.0 hours behind the controller's", "is earlier than the release was made",
                      "at its time no release key is valid (keys: valid-after"]),
    ("clock ahead", ["960.0 hours ahead of the controller's", "at its time no release key is valid",
                     "valid-before"]),
])  # fmt: skip
def test_a_clock_far_off_is_named_before_any_signature_is_checked(refused, case, words):
    run = refused.runs[case]
    assert run.rc != 0
    assert f"The clock of {PI} cannot check a release signature:" in run.text, run.text[-2000:]
    for w in words:
        assert w in run.text, w
    assert "timedatectl set-ntp true" in run.text
    # Not the verifier's refusal: no signature was checked (ssh-keygen's words for a key out of time).
    assert "Roll out to the Pi fleet" not in run.text and "refused on" not in run.text


def test_a_change_that_does_not_come_up_is_rolled_back_within_the_run(releases, timed):
    """24 MB: the sidecar (Python, numpy, ONNX Runtime; the arm64 image under QEMU here) is
    killed for memory before it serves, over and over: Compose's wait sees it, the role puts the
    last good .env back and Compose starts that one."""
    pi = host(PI)
    before = complete_release(PI)["release"]["config_version"]
    report = LAB / "drill-rollback.json"
    # Release C, which the Pi serves: only the memory limit changes.
    extra = {"sidecar_stack_release_dir": str(releases["1.2.0"]), "sidecar_stack_mem_limit": "24m",
             "pi_rollout_report": str(report)}  # fmt: skip
    with Load(PORTS[PI]) as load:
        run = play("playbooks/pi.yml", "--limit", PI, "--tags", "sidecar_stack", extra=extra)
    assert run.rc != 0, "the host must fail: the change did not go through"
    assert f"Release {before} (" in run.text and f"failed on {PI}" in run.text
    assert "last with status 137 (SIGKILL" in run.text, run.text[-3000:]
    assert (f"Rolled back to {before}, which passes the smoke again (the last good state put back: "
            "SIDECAR_MEM_LIMIT 24m -> 512m)") in run.text  # fmt: skip
    result = json.loads(report.read_text())[PI]["result"]
    assert (
        result["rolled_back"]
        and result["healthy"]
        and result["restored"] == ["SIDECAR_MEM_LIMIT 24m -> 512m"]
    )
    assert f"{PI}: rolled back from {before} (put back: SIDECAR_MEM_LIMIT 24m -> 512m), healthy" in run.text
    assert complete_release(PI)["release"]["config_version"] == before
    limit = pi.check_output("docker inspect --format '{{.HostConfig.Memory}}' hailo-hailo-inference-onnx-1")
    assert limit == str(512 * 2**20)
    assert "SIDECAR_MEM_LIMIT=512m" in pi.file("/opt/hailo-sidecar/.env").content_string
    note("a change that does not come up (memory limit 24m)", outcome="rolled back, serving " + before,
         run_s=round(run.seconds), **load.figures())  # fmt: skip

"""The sidecar_stack role's decisions (plugins/filter/stack.py) on recorded inputs: the clock check
before any signature, what a rollback puts back, and why a container does not serve (docker
inspect's State as moby writes it: api/types/container State, Health)."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("stack", ROOT / "plugins" / "filter" / "stack.py")
assert _spec and _spec.loader
stack: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stack)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
NS = 'namespaces="hailo-pipeline-release"'
KEY = f'release {NS},valid-after="20261101",valid-before="20270601" ssh-ed25519 AAAA'


def test_a_clock_in_step_with_the_controller_and_a_valid_key_passes():
    assert stack.clock_problems(str(int(NOW + 20)), NOW, 300, KEY) == []
    assert stack.clock_problems(NOW, NOW, 300, "") == [], "no key lines: nothing to compare"


def test_a_pi_that_booted_without_time_is_hours_behind_and_before_the_keys_validity():
    """A Pi 5 without its battery starts where its clock stopped (fake-hwclock's last save)."""
    problems = stack.clock_problems(NOW - 40 * 86400, NOW, 300, KEY, "2026-12-01T08:00:00Z")
    assert problems == [
        "its clock is 960.0 hours behind the controller's (host 2026-10-28 12:00:00 UTC, controller "
        "2026-12-07 12:00:00 UTC; sidecar_stack_max_clock_skew_s 300)",
        "its clock (2026-10-28 12:00:00 UTC) is earlier than the release was made (2026-12-01T08:00:00Z)",
        "at its time no release key is valid (keys: valid-after 2026-11-01 00:00 "
        "valid-before 2027-06-01 00:00 UTC)",
    ]


def test_a_clock_ahead_past_valid_before_and_a_small_skew():
    (ahead, expired) = stack.clock_problems(NOW + 200 * 86400, NOW, 300, KEY)
    assert "ahead of the controller's" in ahead and "valid-before 2027-06-01" in expired
    (skew,) = stack.clock_problems(NOW + 900, NOW, 300, KEY)
    assert skew.startswith("its clock is 900 seconds ahead")


def test_pull_mode_the_host_is_the_controller_the_release_date_remains():
    made = "2026-12-07T11:00:00Z"
    (before, keys) = stack.clock_problems(NOW - 40 * 86400, NOW - 40 * 86400, 300, KEY, made)
    assert before.startswith("its clock (2026-10-28 12:00:00 UTC) is earlier than the release was made")
    assert keys.startswith("at its time no release key is valid")
    assert stack.clock_problems(NOW, NOW, 300, KEY, made) == []
    assert stack.clock_problems(NOW, NOW, 300, KEY, "not a time") == []


def test_pull_mode_a_clock_ahead_past_every_keys_valid_before_is_refused_on_its_own():
    """ansible-pull on a Pi whose clock is 40 days ahead: it is its own controller (no skew) and
    later than the release was made, so only the key window can tell; before, it passed and the
    signature check said "signature refused"."""
    key = f'gpusrv {NS},valid-before="20261217" ssh-ed25519 AAAA'
    ahead = NOW + 40 * 86400
    (problem,) = stack.clock_problems(ahead, ahead, 300, key, "2026-12-06T12:00:00Z")
    assert problem == (
        "at its time no release key is valid (keys: valid-before 2026-12-17 00:00 UTC); either its clock "
        "(2027-01-16 12:00:00 UTC) is wrong or every release key has expired or is not valid yet (then "
        "renew sidecar_stack_allowed_signers)"
    )


def test_an_expired_key_at_a_right_clock_is_refused_before_the_signature_naming_both_causes():
    expired = f'old {NS},valid-before="20240101" ssh-ed25519 AAAA'
    (problem,) = stack.clock_problems(NOW, NOW + 5, 300, expired, "2026-12-07T09:00:00Z")
    assert "every release key has expired" in problem and "valid-before 2024-01-01" in problem
    assert stack.clock_problems(NOW, NOW + 5, 300, f"{expired}\n{KEY}") == [], "one valid key is enough"


def test_env_changes_name_what_a_rollback_puts_back():
    failed = "# managed\nSIDECAR_IMAGE=r/s@sha256:1\nSIDECAR_MEM_LIMIT=24m\nMAX_BATCH=64\nNEW=1\n"
    good = "# managed\nSIDECAR_IMAGE=r/s@sha256:0\nSIDECAR_MEM_LIMIT=512m\nMAX_BATCH=64\n"
    assert stack.env_changes(failed, good) == [
        "SIDECAR_IMAGE r/s@sha256:1 -> r/s@sha256:0",
        "SIDECAR_MEM_LIMIT 24m -> 512m",
        "NEW 1 -> (unset)",
    ]
    assert stack.env_changes(good, good) == []


def test_rollback_plan_says_what_a_failed_change_does_next():
    """From the on-call engineer's side: a host with a last good state gets it back; the first
    deploy on a host (no last-good.json) is stopped rather than left crash-looping; with
    sidecar_stack_rollback off nothing is done, whatever the host holds."""
    last_good = {"env": "MAX_BATCH=64\n", "compose": "services: {}\n", "pointer": "p", "release": {}}
    assert stack.rollback_plan(True, last_good) == "restore"
    assert stack.rollback_plan(True, None) == "stop"
    assert stack.rollback_plan(False, last_good) == "none"
    assert stack.rollback_plan(False, None) == "none"
    # An empty last good state is still one (a file was read): put it back, never stop.
    assert stack.rollback_plan(True, {}) == "restore"


def test_rollback_tasks_run_on_the_plan_one_branch_each():
    """rollback.yml puts the last good state back or stops the stack on the plan's two values, so
    the two can never both run nor both be skipped when rollback is on."""
    tasks = yaml.safe_load((ROOT / "roles" / "sidecar_stack" / "tasks" / "rollback.yml").read_text())
    whens = [str(t.get("when", "")) for t in tasks]
    plan = [w for w in whens if "_sidecar_stack_rollback_plan" in w]
    values = sorted(w.split("==")[1].strip().strip("'\"") for w in plan)
    assert values == sorted({stack.rollback_plan(True, {}), stack.rollback_plan(True, None)})
    rolevars = yaml.safe_load((ROOT / "roles" / "sidecar_stack" / "vars" / "main.yml").read_text())
    assert "rollback_plan(__sidecar_stack_last_good)" in rolevars["_sidecar_stack_rollback_plan"]
    assert "sidecar_stack_rollback" in rolevars["_sidecar_stack_rollback_plan"].split("|")[0]


def test_container_failure_from_dockers_state_and_events():
    """A crash loop: Docker restarted the container, so its state says running; its die events
    (docker events --filter event=die) keep the exit statuses."""
    running = json.dumps({"Status": "running", "OOMKilled": False, "ExitCode": 0,
                          "Health": {"Status": "starting", "Log": []}})  # fmt: skip
    assert stack.container_failure(running, "", "137\n137\n137\n") == (
        "the container is running, it exited 3 times in the last 10 minutes, last with status 137 (SIGKILL: "
        "the kernel ends a container that uses more memory than its limit, sidecar_stack_mem_limit), "
        "health starting"
    )
    oom = json.dumps({"Status": "exited", "OOMKilled": True, "ExitCode": 137})
    assert "killed for using more memory than its limit" in stack.container_failure(oom)
    config = json.dumps({"Status": "exited", "ExitCode": 2})
    last = "hailo-sidecar: invalid configuration: MAX_BATCH: Input should be greater than or equal to 1"
    assert stack.container_failure(config, f"starting\n{last}\n", "2") == (
        "the container is exited, it exited 1 times in the last 10 minutes, last with status 2 (the sidecar "
        f"refused its settings), its last log line: {last}"
    )
    health = {
        "Status": "unhealthy",
        "FailingStreak": 3,
        "Log": [{"ExitCode": 1, "Output": "503 not ready\n"}],
    }
    unhealthy = json.dumps({"Status": "running", "ExitCode": 0, "Health": health})
    assert stack.container_failure(unhealthy) == (
        "the container is running, health unhealthy (last probe: 503 not ready)"
    )
    assert stack.container_failure("", "Error: No such object: hailo-x-1") == ""

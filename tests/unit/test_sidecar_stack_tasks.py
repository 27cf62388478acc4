"""The sidecar_stack role's order of writes, read from its task files as Ansible runs them, from the
on-call engineer's side: what the disk holds after a power cut at any point, which files a failed
image pull leaves as they were, and two runs at once on one host (files/release-lock.py run as the
host runs it). (The power cut itself needs the lab: tests/lab/drills.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

TASKS = Path(__file__).resolve().parents[2] / "roles" / "sidecar_stack" / "tasks"


def load(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((TASKS / name).read_text())


def flat(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks in the order they run (blocks opened; rescue and always left out)."""
    out = []
    for t in tasks:
        out += flat(t["block"]) if "block" in t else [t]
    return out


def argv(task: dict[str, Any]) -> list[str]:
    return [str(a) for a in (task.get("ansible.builtin.command") or {}).get("argv", [])]


def index(tasks: list[dict[str, Any]], pattern: str) -> int:
    (i,) = [i for i, t in enumerate(tasks) if re.search(pattern, t.get("name", ""))]
    return i


def test_the_release_copy_reaches_the_disk_before_its_rename_and_the_rename_before_the_pointer():
    """cp -a leaves the files in the page cache; mv gives the folder a new name (not a replace, so
    ext4's auto_da_alloc flushes nothing) and the pointer names it next: a power cut after the
    rename could leave a folder of the right name with an empty model.hef."""
    tasks = flat(load("release.yml"))
    copy, move = (
        index(tasks, "^Copy the verified release"),
        index(tasks, "^Put the verified release in place"),
    )
    syncs = [i for i, t in enumerate(tasks) if argv(t)[:1] == ["sync"]]
    assert any(copy < i < move for i in syncs), "no sync between the copy and the rename"
    assert any(i > move for i in syncs), "no sync after the rename (the pointer names the folder next)"
    for i in syncs:
        assert "--file-system" in argv(tasks[i]) and tasks[i].get("changed_when") is False


def test_the_pointer_env_and_compose_yml_are_synced_when_written_and_before_compose_up():
    tasks = load("up.yml")
    (sync,) = [i for i, t in enumerate(tasks) if argv(t)[:1] == ["sync"]]
    written = {
        index(tasks, p) for p in ("^Install compose.yml", r"^Write the stack's \.env", r"^Point the sidecar")
    }
    assert max(written) < sync < index(tasks, "^Bring the stack up")
    assert {"{{ sidecar_stack_dir }}/compose.yml", "{{ sidecar_stack_dir }}/.env"} <= set(argv(tasks[sync]))
    assert "not ansible_check_mode" in tasks[sync]["when"], "a command does not run in check mode"


def test_compose_yml_changes_only_after_the_pull_and_the_last_good_snapshot():
    """A registry that is down must leave every file of the running stack as it was ("Nothing was
    changed"), and keep-running.yml must keep the running stack's compose.yml as the last good
    one, not the incoming one (a pair of files that never ran together)."""
    writes = {
        name for name in [p.name for p in TASKS.glob("*.yml")]
        for t in flat(load(name)) if (t.get("ansible.builtin.copy") or {}).get("src") == "compose.yml"
    }  # fmt: skip
    assert writes == {"up.yml"}
    deploy = load("deploy.yml")
    pull = index(deploy, "^Pull the image")
    keep = index(deploy, "^Keep the running stack")
    start = index(deploy, "^Start release")
    assert keep < pull < start
    (install,) = [t for t in load("up.yml") if t["name"] == "Install compose.yml"]
    assert "_restore" in install["when"], "a rollback puts back the last good compose.yml, not the role's"


# --- one run at a time (files/release-lock.py) -----------------------------------------------------

LOCK_SCRIPT = TASKS.parent / "files" / "release-lock.py"


def lock(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LOCK_SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_a_second_run_waits_for_the_first_and_is_refused_naming_it(tmp_path):
    """An operator's push while the pull agent's run places a release: the second waits, then is
    refused, and never removes the first's lock (nor, in release.yml, its hidden copy)."""
    path = tmp_path / ".release.lock"
    assert lock("take", path, "pull-agent:1", 0, 900).returncode == 0
    second = lock("take", path, "operator:2", 1, 900)
    assert second.returncode == 1
    assert "another run (pull-agent:1) is placing a release" in second.stderr and str(path) in second.stderr
    assert lock("release", path, "operator:2").returncode == 0 and path.exists(), "not its lock to give back"
    assert lock("release", path, "pull-agent:1").returncode == 0 and not path.exists()
    assert lock("take", path, "operator:2", 0, 900).returncode == 0


@pytest.mark.parametrize(
    "left",
    [
        {"run": "before-the-power-cut", "boot_id": "another-boot", "at": time.time()},
        {"run": "controller-gone", "boot_id": "SAME", "at": time.time() - 901},
        "{cut short",
    ],
)
def test_a_lock_of_an_earlier_boot_an_old_one_or_a_torn_one_is_taken_over(tmp_path, left):
    """Power lost mid-run (a new boot), a controller that went away (older than the stale time),
    a lock file cut short by a power cut: none may stop every later run."""
    path = tmp_path / ".release.lock"
    if isinstance(left, dict) and left["boot_id"] == "SAME":
        left["boot_id"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    path.write_text(left if isinstance(left, str) else json.dumps(left))
    taken = lock("take", path, "next", 0, 900)
    assert taken.returncode == 0 and "taking over a stale lock" in taken.stdout
    assert json.loads(path.read_text())["run"] == "next"


def test_release_yml_takes_the_lock_before_it_touches_the_hidden_copy_and_gives_it_back():
    (outer,) = [t for t in load("release.yml") if t.get("name") == "Verify the release, then put it in place"]
    body = flat(outer["block"])
    take = index(body, "^Take the release lock")
    assert (
        take
        < index(body, "^Remove a release copy an interrupted run left")
        < index(body, "^Look for release")
    )
    assert all("Remove a release copy" not in t.get("name", "") for t in load("release.yml")), (
        "outside the lock"
    )
    (give,) = [t for t in outer["always"] if "release-lock.py release" in str(t)]
    (cleanup,) = [t for t in outer["rescue"] if t["name"] == "Remove the part of the release copied"]
    assert cleanup["when"] == "__sidecar_stack_lock is succeeded", "a refused run must leave the other's copy"
    assert give["changed_when"] is False and body[take]["changed_when"] is False, "a rerun stays changed=0"
    assert outer["when"] == "not ansible_check_mode"

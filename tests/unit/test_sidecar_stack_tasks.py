"""The sidecar_stack role's order of writes, read from its task files as Ansible runs them, from the
on-call engineer's side: what the disk holds after a power cut at any point, and which files a
failed image pull leaves as they were. (The power cut itself needs the lab: tests/lab/drills.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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

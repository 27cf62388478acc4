"""ci_runner's removal resets the connection before userdel (Mitogen for Ansible keeps the runner
account's interpreter alive). Ansible does not honour `when` on `meta: reset_connection`
(ansible/plugins/strategy/__init__.py, _execute_meta: it warns and resets), so a `when` inherited
from an import would reset every run's connection; the phase is included, where the `when` is the
include's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1].parent
MAIN = ROOT / "roles" / "ci_runner" / "tasks" / "main.yml"


def test_the_removal_that_resets_the_connection_is_included_under_its_condition() -> None:
    removes = yaml.safe_load((ROOT / "roles" / "ci_runner" / "tasks" / "remove.yml").read_text())
    assert any(t.get("ansible.builtin.meta") == "reset_connection" for t in removes)
    (task,) = [t for t in yaml.safe_load(MAIN.read_text()) if t["name"] == "Remove"]
    assert task["ansible.builtin.include_tasks"]["file"] == "remove.yml"
    assert task["when"] == "ci_runner_state == 'absent'"


@pytest.mark.parametrize(("how", "resets"), [("import_tasks", True), ("include_tasks", False)])
def test_ansible_resets_under_a_false_when_only_through_an_import(
    tmp_path: Path, how: str, resets: bool
) -> None:
    (tmp_path / "remove.yml").write_text("- name: Reset\n  ansible.builtin.meta: reset_connection\n")
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": {"state": "present"},
        "tasks": [{f"ansible.builtin.{how}": "remove.yml", "when": "state == 'absent'"}]}]))  # fmt: skip
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    run = subprocess.run([playbook, "-i", "localhost,", "-c", "local", "-v", "play.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert ("does not support when conditional" in out) is resets, out


def _wait_task(retries: int) -> dict:
    """remove.yml's wait before userdel, with fewer and shorter retries for the test."""
    removes = yaml.safe_load((ROOT / "roles" / "ci_runner" / "tasks" / "remove.yml").read_text())
    (task,) = [t for t in removes if t["name"] == "Wait for the account's processes to end"]
    return {**task, "retries": retries, "delay": 0}


# Accounts by number (pgrep takes either), none of them in use on a test machine.
@pytest.mark.parametrize(("user", "running", "fails"), [
    ("hailo-no-such-account", False, False),  # a second run: the account is gone already
    ("64998", False, False),                  # nothing runs as it: userdel may go on
    ("64999", True, True),                    # a process outlives the retries: named, and stopped
])  # fmt: skip
def test_the_removal_waits_for_the_accounts_processes_with_real_pgrep(
    tmp_path: Path, user: str, running: bool, fails: bool
) -> None:
    """Against procps' pgrep here (exit 1: no process; 2: an unknown account): userdel refuses an
    account a process still runs as (shadow's userdel.c, user_busy), so the wait stops the run
    while one is left, and lists it."""
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": {"ci_runner_user": user},
        "tasks": [_wait_task(retries=2)]}]))  # fmt: skip
    sleeper = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                                "sleep", "60"]) if running else None  # fmt: skip
    try:
        playbook = str(Path(sys.executable).parent / "ansible-playbook")
        run = subprocess.run([playbook, "-i", "localhost,", "-c", "local", "play.yml",
                              "-e", f"ansible_python_interpreter={sys.executable}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})  # fmt: skip
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
    out = run.stdout + run.stderr
    assert (run.returncode != 0) is fails, out
    if fails:
        assert "sleep 60" in out, out

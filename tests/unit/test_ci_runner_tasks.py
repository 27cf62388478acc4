"""ci_runner's removal resets the connection before userdel (Mitogen for Ansible keeps the runner
account's interpreter alive) and tries userdel again while such a process is still ending.
Ansible does not honour `when` on `meta: reset_connection` (ansible/plugins/strategy/__init__.py,
_execute_meta: it warns and resets), so a `when` inherited from an import would reset every run's
connection; the phase is included, where the `when` is the include's own."""

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


def _removal_task(retries: int) -> dict:
    """remove.yml's account removal, with fewer retries for the test."""
    removes = yaml.safe_load((ROOT / "roles" / "ci_runner" / "tasks" / "remove.yml").read_text())
    (task,) = [t for t in removes if t["name"] == "Remove the runner account"]
    return {**task, "retries": retries}


@pytest.mark.parametrize(("process_seconds", "retries", "fails"), [
    (None, 2, False),  # nothing runs as the account
    (3, 15, False),    # the interpreter a reset ends a moment later (Mitogen): waited for
    (120, 2, True),    # a process that stays: userdel's own refusal, naming it
])  # fmt: skip
def test_the_account_removal_waits_out_what_userdel_refuses(
    tmp_path: Path, process_seconds: int | None, retries: int, fails: bool
) -> None:
    """Against this machine's shadow userdel (user_busy: a process of the account, in this root,
    makes it refuse with "user ... is currently used by process N"), through Ansible's user module."""
    user = f"hailo-rm-{os.getpid()}"
    subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    sleeper = None
    try:
        if process_seconds:
            sleeper = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                                        "sleep", str(process_seconds)])  # fmt: skip
        (tmp_path / "play.yml").write_text(yaml.safe_dump([{
            "hosts": "localhost", "gather_facts": False, "vars": {"ci_runner_user": user},
            "tasks": [_removal_task(retries)]}]))  # fmt: skip
        playbook = str(Path(sys.executable).parent / "ansible-playbook")
        run = subprocess.run([playbook, "-i", "localhost,", "-c", "local", "play.yml",
                              "-e", f"ansible_python_interpreter={sys.executable}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})  # fmt: skip
        out = run.stdout + run.stderr
        assert (run.returncode != 0) is fails, out
        if fails:
            assert f"user {user} is currently used by process {sleeper.pid}" in out, out
        else:
            assert subprocess.run(["getent", "passwd", user], capture_output=True).returncode == 2
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)

"""ci_runner's removal leaves no process of the runner's account behind for userdel: no task there
becomes the account (under Mitogen for Ansible a become_user keeps an interpreter as that account for
the rest of the run, and a `meta: reset_connection` did not end it on the lab); the unregistration
runs through runuser, and userdel is tried again while a process of the account is still ending."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1].parent


def _removes() -> list[dict]:
    return yaml.safe_load((ROOT / "roles" / "ci_runner" / "tasks" / "remove.yml").read_text())


def test_no_task_of_the_removal_becomes_the_runners_account() -> None:
    removes = _removes()
    assert not [t["name"] for t in removes if "become_user" in t]
    (unregister,) = [t for t in removes if t["name"] == "Unregister the runner"]
    assert unregister["ansible.builtin.command"]["argv"].startswith(
        "{{ ['runuser', '-u', ci_runner_user, '--'"
    )


def _removal_task(retries: int) -> dict:
    """remove.yml's account removal, with fewer retries for the test."""
    (task,) = [t for t in _removes() if t["name"] == "Remove the runner account"]
    return {**task, "retries": retries}


@pytest.mark.parametrize(("process_seconds", "retries", "fails"), [
    (None, 2, False),  # nothing runs as the account
    (3, 15, False),    # a process that ends a moment later: waited for
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

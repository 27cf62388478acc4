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

"""sidecar_stack's refusal of a release names the verifier's reason whatever the connection does
with a script's output. Without a terminal (the lab's docker connection) the reason is the script's
stderr. With one (Ansible's ssh connection runs a script with `-tt`: ansible/plugins/connection/ssh.py,
use_tty; Mitogen emulates it: ansible_mitogen/connection.py, exec_command) the terminal merges stderr
into stdout with CRLF line ends, and stderr holds only OpenSSH's "Shared connection to HOST closed."
(clientloop.c): seen on the lab under Mitogen, where the refusal read "Shared connection to
lab-pi-trixie closed."."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REASON = "release imu-encoder-1.1.0-51c91d81830c: signed by a key that is not in the allowed signers"


def _error_expression() -> str:
    tasks = yaml.safe_load((ROOT / "roles" / "sidecar_stack" / "tasks" / "release.yml").read_text())
    (block,) = [t for t in tasks if "rescue" in t]
    (stop,) = [t for t in block["rescue"] if t["name"].startswith("Stop here")]
    return str(stop["vars"]["_error"])


@pytest.mark.parametrize(("result", "expected"), [
    ({"rc": 1, "stderr": REASON + "\n", "stderr_lines": [REASON], "stdout": "", "stdout_lines": [],
      "msg": "non-zero return code"}, REASON),
    ({"rc": 1, "stderr": "Shared connection to pi-17.fleet.example closed.\r\n",
      "stderr_lines": ["Shared connection to pi-17.fleet.example closed.\r"],
      "stdout": REASON + "\r\n", "stdout_lines": [REASON + "\r"], "msg": "non-zero return code"}, REASON),
    ({"msg": "Destination /opt/hailo-sidecar/models not writable: No space left on device"},
     "Destination /opt/hailo-sidecar/models not writable: No space left on device"),
    ({"rc": 1, "stderr": "Connection to 10.0.4.17 closed.\r\n",
      "stderr_lines": ["Connection to 10.0.4.17 closed.\r"], "stdout": REASON + "\r\n",
      "stdout_lines": [REASON + "\r"], "msg": "non-zero return code"}, REASON),
], ids=["no terminal", "a terminal (ssh -tt, Mitogen)", "a module's failure",
        "ssh -tt, no shared connection"])  # fmt: skip
def test_the_refusal_names_the_verifiers_reason(tmp_path: Path, result: dict, expected: str) -> None:
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.copy": {"content": "{{ _error }}", "dest": str(tmp_path / "out")},
                   "vars": {"ansible_failed_result": result, "_error": _error_expression()}}]}]))  # fmt: skip
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    run = subprocess.run([playbook, "-i", "localhost,", "-c", "local", "play.yml",
                          "-e", f"ansible_python_interpreter={sys.executable}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out").read_text() == expected, json.dumps(result)

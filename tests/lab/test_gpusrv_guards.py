"""The playbook run again from the controller: bad variables stop it in preflight before any
change, naming the variable; the runner token never reaches Ansible's output, even at -vvv."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
PLAYBOOK = ROOT / "playbooks" / "gpusrv.yml"
TOKEN = "lab-secret-token-d41d8cd98f00b204"


def play(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    if token is not None:
        env["HAILO_RUNNER_TOKEN"] = token
    cmd = ["ansible-playbook", str(PLAYBOOK), "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def recap_changed(out: str) -> int:
    line = next(ln for ln in out.splitlines() if ln.startswith("gpusrv-lab") and "changed=" in ln)
    return int(line.split("changed=")[1].split()[0])


BAD = {
    "unknown runner state": ({"ci_runner_state": "paused"}, "ci_runner_state"),
    "string for a dict": (
        {"docker_engine_daemon_options": "log-driver=json-file"},
        "docker_engine_daemon_options",
    ),
    "list for a dict": ({"docker_engine_daemon_options": ["log-driver"]}, "docker_engine_daemon_options"),
    "string for a bool": ({"ci_runner_docker_access": "sometimes"}, "ci_runner_docker_access"),
    "labels not a list of names": ({"ci_runner_labels": ["ok", "bad label"]}, "ci_runner_labels"),
    "missing scope": ({"ci_runner_scope_url": ""}, "ci_runner_scope_url"),
    "unknown driver": ({"buildx_qemu_builder_driver": "kubernetes"}, "buildx_qemu_builder_driver"),
    "missing registry": ({"sidecar_image_registry": ""}, "sidecar_image_registry"),
    "model without a version": (
        {"hef_compile_models": [{"name": "m", "onnx": "a.onnx", "calib": "c.npy", "config_version": "c"}]},
        "hef_compile_models",
    ),
    "insecure registry with scheme": (
        {"docker_engine_insecure_registries": ["http://10.0.0.5:5000"]},
        "docker_engine_insecure_registries",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_variable_fails_in_preflight_before_any_change(host, case):
    extra, name = BAD[case]
    before = host.run("find /etc /opt /srv -newer /etc/hostname -printf '%p %T@\\n' | sort").stdout
    out = play("-e", json.dumps(extra))
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert name in text, f"the message does not name {name}"
    assert recap_changed(out.stdout) == 0
    # Nothing after the preflight play ran.
    assert "Provision GPUSrv" not in out.stdout
    assert host.run("find /etc /opt /srv -newer /etc/hostname -printf '%p %T@\\n' | sort").stdout == before


def test_runner_token_never_reaches_the_output_even_at_vvv(host):
    """Unregister and register again with a known token at -vvv: it is used, and never printed
    by Ansible, nor logged on the host (sudo logs command lines to the journal)."""
    since = host.run("date +%s").stdout.strip()
    removed = play("-vvv", "--tags", "ci_runner", "-e", "ci_runner_state=absent", token=TOKEN)
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert not host.file("/opt/actions-runner").exists
    # buildx_qemu too: the runner's builder went with its home folder.
    added = play("-vvv", "--tags", "ci_runner,buildx_qemu", token=TOKEN)
    assert added.returncode == 0, added.stdout[-3000:]
    reg = json.loads(host.file("/opt/actions-runner/.runner").content_string)
    assert reg["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest(), "the token did not arrive"
    for out in (removed, added):
        assert TOKEN not in out.stdout + out.stderr
    journal = host.run(f"journalctl --no-pager -o cat --since @{since}")
    assert journal.rc == 0 and "github-runner" in journal.stdout, "the journal was not read"
    assert TOKEN not in journal.stdout
    assert host.service("actions-runner").is_running


def test_compile_without_a_dfc_wheel_skips_with_its_message(host):
    out = play("--tags", "hef_compile", "-e", "hef_compile_dfc_wheel=")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "hef_compile skipped: no Dataflow Compiler wheel is configured" in out.stdout
    assert recap_changed(out.stdout) == 0

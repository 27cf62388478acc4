"""Runs a playbook against a Molecule scenario's hosts from its testinfra tests (lab helper)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        # Messages as one line: the callback folds long strings across lines.
        self.text = " ".join(self.out.split())
        self.seconds = seconds

    def changed(self, host: str) -> int:
        m = re.search(rf"^{re.escape(host)}\s*:.*?changed=(\d+)", self.out, re.M)
        assert m, f"no recap line for {host}"
        return int(m.group(1))


def play(playbook: str, *args: str, extra: dict[str, object] | None = None) -> Run:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    cmd = ["ansible-playbook", str(ROOT / playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    return Run(proc, time.monotonic() - start)


def manifest(version: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (EPHEMERAL / "releases" / "imu-encoder" / version / "manifest.json").read_text()
    )
    return data


def image() -> str:
    return (EPHEMERAL / "arm64-image.txt").read_text().strip()


# The simulated Pis' stack (profile onnx), as the role deploys it.
STACK = "docker compose -p hailo --project-directory /opt/hailo-sidecar --profile onnx"


def smoke(host, version: str, config: str) -> str:
    """The contract smoke in the container, expecting release VERSION's model and CONFIG; its output."""
    sha = manifest(version)["onnx_sha256"]
    run = host.run(
        f"{STACK} exec -T hailo-inference-onnx hailo-sidecar smoke --url http://127.0.0.1:9000 "
        f"--expect-sha256 {sha} --expect-config-version {config}"
    )
    assert run.rc == 0, run.stdout + run.stderr
    return str(run.stdout)

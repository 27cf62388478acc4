"""The hardware acceptance on a lab Pi with a stand-in device node, as a user runs it: the
playbook from the installed collection tarball (no tests/ or lab/ beside it), with the steps
that need a checkout around it (`make acceptance`: lab/scripts/acceptance.py runs tests/infra
first and passes its result in). The flow a real Pi gets runs end to end (the sidecar stopped
for hailortcli benchmark and the fidelity probe and started again, the sidecar benchmark), the
summary keeps hailortcli's (streaming) and (overall) lines and prints the PCIe link and dmesg,
and the host is refused for what the lab is not: it serves the onnx profile, not the HEF on a
device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from labplay import INVENTORY, LAB, PIS, ROOT, host, installed_collections_path

pytestmark = pytest.mark.timeout(900)
HOST = PIS[0]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection tarball installed into an empty collections path, as a Galaxy user has it."""
    where = tmp_path_factory.mktemp("galaxy")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(where),
                    str(ROOT)], check=True, capture_output=True)  # fmt: skip
    (tarball,) = where.glob("*.tar.gz")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(where / "c"),
                    str(tarball)], check=True, capture_output=True,
                   env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(where / "c")})  # fmt: skip
    collection = where / "c" / "ansible_collections" / "synchrony" / "hailo_pipeline"
    # A Galaxy user gets no lab and, of tests/, only ansible-test's sanity ignore files (galaxy.yml).
    shipped = sorted(str(p.relative_to(collection)) for p in (collection / "tests").rglob("*") if p.is_file())
    assert shipped == [f"tests/sanity/ignore-2.{v}.txt" for v in (17, 18, 19)], shipped
    assert not (collection / "lab").exists()
    return collection


def test_acceptance_flow_on_a_lab_pi_from_the_installed_collection(installed: Path) -> None:
    pi = host(HOST)
    pi.run("mknod -m 0660 /dev/hailo0 c 1 3 && chgrp hailo /dev/hailo0")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_FORCE_COLOR": "0",
           # The lab inventory's connection is the lab's own collection's: found after the install.
           "ANSIBLE_COLLECTIONS_PATH": installed_collections_path(installed.parents[2]),
           "ACCEPTANCE_PLAYBOOK": str(installed / "playbooks" / "acceptance.yml")}  # fmt: skip
    try:
        # The sidecar's latency here is QEMU's on a shared 2-core machine, not a Pi 5's: the
        # targets are set out of reach of the emulation (the verdict against real targets is
        # tests/unit's, acceptance_report), so the one refusal left is the one the lab must get.
        run = subprocess.run([sys.executable, "lab/scripts/acceptance.py", str(INVENTORY), HOST,
                              "-e", "acceptance_bench_seconds=5", "-e", "acceptance_p95_ms=60000",
                              "-e", "acceptance_windows_per_s=0.1"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)  # fmt: skip
    finally:
        pi.run("rm -f /dev/hailo0")
    out = " ".join((run.stdout + run.stderr).split())
    saved = LAB.parent / "acceptance" / f"{HOST}.json"
    assert saved.is_file(), f"no report: {(run.stdout + run.stderr)[-4000:]}"
    report = json.loads(saved.read_text())
    text = "\n".join(report["lines"])
    assert run.returncode != 0, "a lab Pi serving ONNX must not be accepted"
    assert report["problems"] == ["the sidecar serves the onnx profile, not the HEF on the device (real)"], (
        text
    )
    assert "testinfra: " in text and " passed" in text, "make acceptance's testinfra result is in the verdict"
    assert "(streaming)               = 3987.1" in text and "(overall)                 = 0.61 ms" in text
    assert "PCIe link (target Gen3 8GT/s, x1): not known" in text
    assert "hailo errors in dmesg: " in text
    assert "c=1" in text and "MET   p95 latency, c=1" in text, "the sidecar benchmark's figures and verdicts"
    assert "fidelity probe (hailo-sidecar fidelity): not run" in text, "the lab's image has no HailoRT"
    assert f"{HOST} is not accepted" in out
    # The sidecar was started again.
    state = pi.check_output("docker inspect --format '{{.State.Health.Status}}' hailo-hailo-inference-onnx-1")
    assert state == "healthy"

"""playbooks/acceptance.yml on a lab Pi with a stand-in device node: the flow a real Pi gets runs
end to end (testinfra, the sidecar stopped for hailortcli benchmark and the fidelity probe and
started again, the sidecar benchmark), the summary keeps hailortcli's (streaming) and (overall)
lines and prints the PCIe link and dmesg, and the host is refused for what the lab is not: it
serves the onnx profile, not the HEF on a device."""

from __future__ import annotations

import json

import pytest
from labplay import LAB, PIS, host, play

pytestmark = pytest.mark.timeout(900)
HOST = PIS[0]


def test_acceptance_flow_on_a_lab_pi():
    pi = host(HOST)
    pi.run("mknod -m 0660 /dev/hailo0 c 1 3 && chgrp hailo /dev/hailo0")
    try:
        run = play("playbooks/acceptance.yml", "--limit", HOST, "-e", "acceptance_bench_seconds=5")
    finally:
        pi.run("rm -f /dev/hailo0")
    report = json.loads((LAB.parent / "acceptance" / f"{HOST}.json").read_text())
    text = "\n".join(report["lines"])
    assert run.rc != 0, "a lab Pi serving ONNX must not be accepted"
    assert report["problems"] == ["the sidecar serves the onnx profile, not the HEF on the device (real)"], (
        text
    )
    assert "testinfra: " in text and " passed" in text
    assert "(streaming)               = 3987.1" in text and "(overall)                 = 0.61 ms" in text
    assert "PCIe link (target Gen3 8GT/s, x1): not known" in text
    assert "hailo errors in dmesg: " in text
    assert "c=1" in text and ("MET" in text or "MISS" in text), "the sidecar benchmark's figures"
    assert "fidelity probe (hailo-sidecar fidelity): not run" in text, "the lab's image has no HailoRT"
    assert f"{HOST} is not accepted" in run.text
    # The sidecar was started again.
    state = pi.check_output("docker inspect --format '{{.State.Health.Status}}' hailo-hailo-inference-onnx-1")
    assert state == "healthy"

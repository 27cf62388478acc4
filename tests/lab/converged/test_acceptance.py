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
        # The sidecar's latency here is QEMU's on a shared 2-core machine, not a Pi 5's: the
        # targets are set out of reach of the emulation (the verdict against real targets is
        # tests/unit's, acceptance_report), so the one refusal left is the one the lab must get.
        run = play("playbooks/acceptance.yml", "--limit", HOST, "-e", "acceptance_bench_seconds=5",
                   "-e", "acceptance_p95_ms=60000", "-e", "acceptance_windows_per_s=0.1")  # fmt: skip
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
    assert "c=1" in text and "MET   p95 latency, c=1" in text, "the sidecar benchmark's figures and verdicts"
    assert "fidelity probe (hailo-sidecar fidelity): not run" in text, "the lab's image has no HailoRT"
    assert f"{HOST} is not accepted" in run.text
    # The sidecar was started again.
    state = pi.check_output("docker inspect --format '{{.State.Health.Status}}' hailo-hailo-inference-onnx-1")
    assert state == "healthy"

"""The collection's report filters (plugins/filter/reports.py): what pi.yml, sidecar_stack and
acceptance.yml print."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reports", ROOT / "plugins" / "filter" / "reports.py")
assert _spec and _spec.loader
reports: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reports)

A = {"profile": "onnx", "image": "r:5000/hailo/sidecar@sha256:" + "a" * 64, "config_version": "lab-1",
     "model": {"name": "imu-encoder", "version": "1.0.0", "sha256": "b" * 64}}  # fmt: skip
B = {**A, "config_version": "lab-B", "model": {**A["model"], "version": "1.1.0"}}


def hv(name: str, **kw: Any) -> dict[str, Any]:
    return {"inventory_hostname": name, **kw}


def test_rollout_report_and_lines_for_each_outcome() -> None:
    hosts = [
        hv("pi-1", sidecar_stack_result={"release": A, "failed_release": B, "rolled_back": True,
                                         "healthy": True},
           pi_rollout_error="Release lab-B failed"),
        hv("pi-2", sidecar_stack_result={"release": B, "rolled_back": False, "healthy": True,
                                         "changed": True}),
        hv("pi-3", sidecar_stack_result={"release": A, "rolled_back": False, "healthy": True,
                                         "changed": False}),
        hv("pi-4", ansible_local={"hailo_sidecar": {"current": A}},
           pi_rollout_before={"stdout": "Up 2 hours"}),
        hv("pi-5", pi_rollout_error="HailoRT parts differ"),
        hv("pi-6"),
    ]  # fmt: skip
    report = reports.rollout_report(hosts)
    assert [report[h]["reached"] for h in report] == [True, True, True, False, True, False]
    assert report["pi-4"]["before"] == A and report["pi-4"]["before_status"] == "Up 2 hours"
    lines = reports.rollout_lines(report)
    image = "sha256:" + "a" * 12
    assert lines[0] == (
        "pi-1: rolled back from lab-B, healthy; config lab-1, onnx, imu-encoder 1.0.0 sha256 bbbbbbbbbbbb, "
        f"image {image}"
    )
    assert lines[1].startswith("pi-2: deployed, healthy; config lab-B")
    assert lines[2].startswith("pi-3: unchanged, healthy; config lab-1")
    assert lines[3].startswith("pi-4: not reached, Up 2 hours (before the run); config lab-1")
    assert lines[4] == (
        "pi-5: FAILED before the stack: HailoRT parts differ, no sidecar (before the run); "
        "no release recorded"
    )
    assert lines[5] == "pi-6: not reached, no sidecar (before the run); no release recorded"
    assert reports.rollout_lines(report, True)[0] == "check mode: no host was changed"


def test_rollback_message_says_what_was_put_back_and_why() -> None:
    args = (True, "pi-1", "/opt/hailo-sidecar")
    put_back = {
        "rolled_back": True,
        "release": A,
        "restored": ["SIDECAR_MEM_LIMIT 24m -> 512m", "release lab-B -> lab-1"],
    }
    done = reports.rollback_message(
        B, ["FAIL infer contract", "the container is restarting"], put_back, *args
    )
    assert done == (
        f"Release lab-B ({B['image']}) failed on pi-1: FAIL infer contract; the container is restarting. "
        "Rolled back to lab-1, which passes the smoke again (the last good state put back: "
        "SIDECAR_MEM_LIMIT 24m -> 512m, release lab-B -> lab-1)."
    )
    failed = {"rolled_back": False, "release": B}
    assert reports.rollback_message(B, ["x"], failed, False, "pi-1", "/d").endswith(
        "No rollback: sidecar_stack_rollback is false."
    )
    first = reports.rollback_message(B, ["x"], {**failed, "stopped": True}, *args)
    assert (
        "nothing ran on pi-1 before this change (no last good state in /opt/hailo-sidecar/last-good.json)"
        in first
    )
    assert "the stack was stopped (docker compose down)" in first
    same = reports.rollback_message(B, ["x"], failed, *args)
    assert "No rollback: this is the last good state" in same
    assert "docker compose --project-directory /opt/hailo-sidecar logs" in same


def test_a_host_gone_unreachable_is_named_in_the_summary() -> None:
    """Ansible drops an unreachable host from ansible_play_hosts without running pi.yml's rescue
    (no pi_rollout_error): the summary says so instead of "not reached"."""
    hosts = [
        hv("pi-1", sidecar_stack_result={"release": B, "healthy": True, "changed": True, "path": "swap"}),
        hv("pi-2", sidecar_stack_result={"release": A, "healthy": False},
           ansible_local={"hailo_sidecar": {"current": A}},
           pi_rollout_before={"stdout": "Up 3 hours (healthy)"}),
        hv("pi-3", pi_rollout_error="Release lab-B failed"),
        hv("pi-4"),
    ]  # fmt: skip
    report = reports.rollout_report(hosts, "hailo_sidecar", ["pi-1", "pi-4"])
    assert [report[h]["unreachable"] for h in report] == [False, True, False, False]
    lines = reports.rollout_lines(report)
    assert lines[0].startswith("pi-1: deployed (swap), healthy; config lab-B")
    assert lines[1].startswith(
        "pi-2: UNREACHABLE during this run (its state is unknown; run again when it is back), "
        "Up 3 hours (healthy) (before the run); config lab-1"
    )
    assert lines[2].startswith("pi-3: FAILED before the stack: Release lab-B failed")
    assert lines[3].startswith("pi-4: not reached")
    # As roles/sidecar_stack/tasks/rollback.yml records it (no path: the change did not go through).
    rolled = {"release": A, "failed_release": B, "rolled_back": True, "healthy": True, "stopped": False,
              "restored": ["SIDECAR_MEM_LIMIT 24m -> 512m"]}  # fmt: skip
    (line,) = reports.rollout_lines(reports.rollout_report([hv("pi-5", sidecar_stack_result=rolled)]))
    assert line.startswith("pi-5: rolled back from lab-B (put back: SIDECAR_MEM_LIMIT 24m -> 512m), healthy")


def test_a_host_the_preflight_refused_is_named_refused_not_unreachable() -> None:
    """A host that failed the preflight play (a clock 10 hours off, a setting out of range) starts
    the rollout play marked failed (ansible/executor/task_queue_manager.py marks the hosts that
    failed in earlier plays): it is in ansible_play_hosts_all, not in ansible_play_hosts, and has
    no pi_rollout_error. The on-call engineer must read why it was refused, not "state unknown"."""
    why = "The clock of pi-2 is wrong: its clock is 10.0 hours behind the controller's"
    hosts = [
        hv("pi-1", sidecar_stack_result={"release": B, "healthy": True, "changed": True, "path": "swap"}),
        hv("pi-2", pi_preflight_error=why, ansible_local={"hailo_sidecar": {"current": A}}),
    ]  # fmt: skip
    report = reports.rollout_report(hosts, "hailo_sidecar", ["pi-1"])
    assert (report["pi-2"]["unreachable"], report["pi-2"]["refused"], report["pi-2"]["reached"]) == (
        False,
        why,
        True,
    )
    lines = reports.rollout_lines(report)
    assert lines[1].startswith(
        f"pi-2: refused in preflight (nothing changed): {why}, no sidecar (before the run)"
    )
    assert "UNREACHABLE" not in " ".join(lines)
    assert reports.rollout_outcome(hosts[1]) == "unchanged", "it never reached the rollout play's record"


def test_pi_yml_records_the_preflights_refusal_under_the_name_the_report_reads() -> None:
    import yaml

    play = yaml.safe_load((ROOT / "playbooks" / "pi.yml").read_text())[0]
    (block,) = [t for t in play["tasks"] if "block" in t and "rescue" in t]
    assert "synchrony.hailo_pipeline.preflight" in str(block["block"])
    remember, refuse = block["rescue"]
    assert "pi_preflight_error" in remember["ansible.builtin.set_fact"]
    assert "ansible.builtin.fail" in refuse, "the refused host must stay failed: no change reaches it"


BENCHMARK = """Starting Measurements...
Measuring FPS in hw_only mode
=======
Summary
=======
FPS     (hw_only)                 = 4012.5
        (streaming)               = 3987.1
Latency (hw)                      = 0.42 ms
        (overall)                 = 0.61 ms
Device 0001:01:00.0:
  Power in streaming mode (average) = 1.7 W""".splitlines()
LSPCI = """0001:01:00.0 Co-processor: Hailo Technologies Ltd. Hailo-8 AI Processor (rev 01)
        LnkCap: Port #0, Speed 8GT/s, Width x4, ASPM L0s L1, Exit Latency L0s <1us, L1 <2us
        LnkSta: Speed 8GT/s, Width x1 (downgraded)"""


def acceptance(**over: Any) -> dict[str, Any]:
    real = {**A, "profile": "real", "model": {**A["model"], "path": "/opt/hailo-sidecar/models/m"}}
    d = {"host": "pi-1", "release": real, "device": "/dev/hailo0", "device_present": True,
         "targets": {"p95_ms": 50, "windows_per_s": 20},
         "testinfra": {"rc": 0, "stdout_lines": ["12 passed"]},
         "hailortcli": {"rc": 0, "stdout_lines": BENCHMARK}, "lspci": LSPCI,
         "dmesg": ["hailo_pci 0001:01:00.0: Firmware was loaded successfully",
                   "hailo_pci: DMA timeout error"],
         "bench": {"rc": 0, "stdout_lines": ["  c=1  42.0 windows/s  p95 9.1 ms  MET"]}}  # fmt: skip
    return {**d, **over}


def test_acceptance_report_keeps_the_benchmark_summary_and_link() -> None:
    r = reports.acceptance_report(acceptance())
    assert r["problems"] == []
    text = "\n".join(r["lines"])
    for line in ("FPS     (hw_only)                 = 4012.5",
                 "(streaming)               = 3987.1",
                 "Latency (hw)                      = 0.42 ms",
                 "(overall)                 = 0.61 ms"):  # fmt: skip
        assert line in text
    assert "Measuring FPS" not in text and "Power in streaming" not in text
    assert "PCIe link (target Gen3 8GT/s, x1): 8GT/s, x1" in text
    assert "hailo errors in dmesg: 1 (last: hailo_pci: DMA timeout error)" in text
    assert "c=1  42.0 windows/s  p95 9.1 ms  MET" in text


def test_acceptance_report_refuses_each_miss() -> None:
    r = reports.acceptance_report(acceptance(
        device_present=False, hailortcli=None, testinfra={"rc": 1, "stdout_lines": ["1 failed"]},
        bench={"rc": 1, "stdout_lines": ["  c=1  10.0 windows/s  p95 80.0 ms  MISS"]},
        release={**A, "model": {**A["model"], "path": "/p"}},
    ))  # fmt: skip
    assert r["problems"] == [
        "testinfra failed (see the summary)",
        "the sidecar serves the onnx profile, not the HEF on the device (real)",
        "no Hailo device at /dev/hailo0",
        "the sidecar missed a target or failed",
    ]
    assert "  not run: no /dev/hailo0 (the acceptance needs the Hailo-8)" in r["lines"]
    probe = reports.acceptance_report(
        acceptance(fidelity_probe={"rc": 1, "stderr": "x\nNo module named 'hailo_platform'"})
    )
    assert (
        "fidelity probe (hailo-sidecar fidelity): not run: No module named 'hailo_platform'" in probe["lines"]
    )


def test_acceptance_from_an_installed_collection_has_no_testinfra_and_is_not_refused_for_it() -> None:
    """playbooks/acceptance.yml passes {'skipped': true} when make acceptance did not run tests/infra
    first (an installed collection has no tests/): not run, not a failure; a run it did make counts."""
    r = reports.acceptance_report(acceptance(testinfra={"skipped": True}))
    assert r["problems"] == []
    assert "testinfra: not run (make acceptance runs tests/infra from a checkout first)" in r["lines"]
    failed = reports.acceptance_report(acceptance(testinfra={"rc": 1, "stdout_lines": [""]}))
    assert failed["problems"] == ["testinfra failed (see the summary)"]
    assert "testinfra: (no output)" in failed["lines"]


def test_rollout_outcome_names_how_a_host_ended() -> None:
    assert reports.rollout_outcome({"sidecar_stack_result": {"changed": True}}) == "deployed"
    assert reports.rollout_outcome({"sidecar_stack_result": {"changed": False}}) == "unchanged"
    rolled = {"sidecar_stack_result": {"rolled_back": True}, "pi_rollout_error": "x"}
    assert reports.rollout_outcome(rolled) == "rolled_back"
    assert reports.rollout_outcome({"pi_rollout_error": "HailoRT parts differ"}) == "failed"


def test_release_pointer_names_the_folder_to_serve() -> None:
    model = {**A["model"], "file": "model.onnx", "path": "/opt/hailo-sidecar/models/imu-encoder-1.0.0-bbbb"}
    pointer = reports.release_pointer({**A, "num_motifs": 12, "model": model})
    assert pointer == {"folder": "imu-encoder-1.0.0-bbbb", "file": "model.onnx", "sha256": "b" * 64,
                       "config_version": "lab-1", "num_motifs": 12, "model": "imu-encoder",
                       "version": "1.0.0"}  # fmt: skip
    stub = reports.release_pointer({**A, "num_motifs": "5", "model": None})
    assert (stub["folder"], stub["file"], stub["num_motifs"]) == (None, None, 5)

"""A model swap under load, through pi.yml on a lab Pi (after the other rollout tests: it serves
release C, lab-C): 4 clients send single windows to its published port for the whole playbook
run. A model change is swapped into the running sidecar: no request may fail. A change that
replaces the container (here a memory limit, as an image change would) is measured the same way,
for comparison. Prints both: requests, failed, non-200, p99 before and during. Between the two,
the Pis serve two releases and the fleet's drift alert must fire on lab-gpusrv's Prometheus."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from labplay import GPUSRV, LAB, PIS, host, play, release

from sidecar_app.tools.loadgen import RunResult, build_request, run_load

pytestmark = pytest.mark.timeout(1800)
HOST = PIS[0]
PORT = 19001  # lab/inventory: lab-pi-trixie's sidecar on the machine's 127.0.0.1
BODY = json.dumps({"x": np.full((100, 9), 0.1).round(3).tolist()}).encode()


def under_load(extra: dict[str, Any]) -> tuple[Any, RunResult, float, float]:
    """Runs pi.yml on HOST while 4 clients load its sidecar; returns the run, the load, and when
    the playbook started and ended (the load's clock)."""
    request = build_request("/infer", BODY, "application/json", f"127.0.0.1:{PORT}")
    result: list[RunResult] = []
    stop = threading.Event()

    def load() -> None:
        async def go() -> RunResult:
            res = RunResult()
            while not stop.is_set():
                part = await run_load("127.0.0.1", PORT, request, 4, 2.0, 1_000_000, retry=True)
                res.requests += part.requests
                res.errors += part.errors
                res.failed += part.failed
                res.latencies += part.latencies
                res.started += part.started
            return res

        result.append(asyncio.run(go()))

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(10)  # the baseline
    start = time.perf_counter()
    run = play("playbooks/pi.yml", "--limit", HOST, "--tags", "sidecar_stack",
               extra={"pi_rollout_batches": ["100%"], "pi_rollout_report": str(LAB / "swap-load.json"),
                      **extra})  # fmt: skip
    end = time.perf_counter()
    time.sleep(3)
    stop.set()
    worker.join()
    return run, result[0], start, end


def drift_fires(timeout: float = 120) -> bool:
    gpusrv = host(GPUSRV)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = json.loads(gpusrv.check_output("curl -fsS http://127.0.0.1:9090/api/v1/alerts"))["data"][
            "alerts"
        ]
        if any(a["labels"]["alertname"] == "HailoFleetDrift" and a["state"] == "firing" for a in alerts):
            return True
        time.sleep(3)
    return False


def figures(name: str, res: RunResult, start: float, end: float) -> str:
    during = [s for s in res.started if start <= s < end]
    return (f"{name:<34} requests {res.requests:>6}  failed {res.failed:>4}  non-200 {res.errors:>4}  "
            f"p99 before {res.p99_ms(end=start):7.1f} ms  during {res.p99_ms(start, end):7.1f} ms  "
            f"({len(during)} requests during)")  # fmt: skip


def test_swap_and_restart_under_load() -> None:
    # Back to an older release: the operator's call, for this run only.
    run, swap, s0, s1 = under_load(
        {"sidecar_stack_release_dir": str(release("1.0.0")), "sidecar_stack_allow_downgrade": True}
    )
    assert run.rc == 0, run.out[-3000:]
    report = json.loads((LAB / "swap-load.json").read_text())
    assert report[HOST]["result"]["path"] == "swap"
    # The two Pis now serve two releases (A here, C on the other), each the one it was given: a
    # staged rollout is not drift (drift is judged per host against its desired release). Past the
    # lab's scrape and evaluation intervals after the swap, it must stay quiet.
    time.sleep(30)
    assert not drift_fires(timeout=45), "HailoFleetDrift fired for Pis that serve what they were given"
    run2, restart, r0, r1 = under_load({"sidecar_stack_release_dir": str(release("1.2.0")),
                                        "sidecar_stack_mem_limit": "520m"})  # fmt: skip
    assert run2.rc == 0, run2.out[-3000:]
    assert json.loads((LAB / "swap-load.json").read_text())[HOST]["result"]["path"] == "restart"
    lines = [figures("model swap (pi.yml, C -> A)", swap, s0, s1),
             figures("container replaced (pi.yml, A -> C)", restart, r0, r1)]  # fmt: skip
    print("\n" + "\n".join(lines))
    (LAB / "swap-load.txt").write_text("\n".join(lines) + "\n")
    assert swap.failed == 0 and swap.errors == 0, lines[0]
    assert len([t for t in swap.started if s0 <= t < s1]) > 20, "too few requests during the swap to count"

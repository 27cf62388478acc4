"""The fault drills' tools (tests/lab/drills, docs/reliability.md): a load on a Pi's published
port that records every request's outcome (what the drills' closing table reports: requests
failed, time to serve again), a playbook run with a fault injected when a chosen task starts
(the Pi's container killed: power lost), a power cycle, and the release a Pi serves, checked
whole. Each drill's figures go to build/lab/drills.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labplay import INVENTORY, LAB, ROOT, Run, ansible_stats_env, host, read_stats

PORTS = {"lab-pi-trixie": 19001, "lab-pi-bookworm": 19002}
FIGURES = LAB / "drills.json"
WINDOW = json.dumps({"x": [[0.1] * 9] * 100}).encode()


def note(drill: str, **figures: Any) -> None:
    """Adds one drill's figures to build/lab/drills.json (the closing table) and prints them."""
    data = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {}
    data[drill] = {**data.get(drill, {}), **figures}
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"drill {drill}: {figures}")


@dataclass
class Load:
    """One client sending a window to a Pi's /infer every 0.2 s, each outcome kept with its time:
    a request not answered with 200 is a failed one. Bounded: it stops by itself after LIMIT_S."""

    port: int
    limit_s: float = 900.0
    outcomes: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < end:
            t0 = time.monotonic()
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/infer", data=WINDOW,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    ok = r.status == 200
            except OSError:
                ok = False
            self.outcomes.append((t0, ok))
            self._stop.wait(max(0.0, 0.2 - (time.monotonic() - t0)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def failed(self) -> int:
        return sum(1 for _, ok in self.outcomes if not ok)

    def outage_s(self) -> float:
        """From the first failed request to the first answered one after the last failure (0: none)."""
        bad = [t for t, ok in self.outcomes if not ok]
        if not bad:
            return 0.0
        after = [t for t, ok in self.outcomes if ok and t > bad[-1]]
        return round((after[0] if after else self.outcomes[-1][0]) - bad[0], 1)

    def figures(self) -> dict[str, Any]:
        return {
            "requests": len(self.outcomes),
            "failed": self.failed,
            "time_to_serve_again_s": self.outage_s(),
        }


def health(name: str) -> dict[str, Any] | None:
    """What the Pi's sidecar says it serves (/healthz on its published port), or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORTS[name]}/healthz", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except OSError:
        return None


def wait_serving(name: str, timeout: float = 600) -> tuple[dict[str, Any], float]:
    """Waits until the Pi's sidecar is ready; its health and the seconds it took."""
    t0 = time.monotonic()
    while True:
        h = health(name)
        if h is not None and h.get("ready"):
            return h, round(time.monotonic() - t0, 1)
        assert time.monotonic() - t0 < timeout, f"{name} did not serve again within {timeout} s: {h}"
        time.sleep(1)


def complete_release(name: str) -> dict[str, Any]:
    """The release the Pi serves, checked whole: the sidecar reports one release, the model it
    serves is that release's (sha256 against its manifest on the host), every file of the folder
    matches the manifest, and the pointer names that folder. Returns the sidecar's health."""
    h, _ = wait_serving(name)
    rel = h["release"]
    assert rel is not None, f"{name} serves no release: {h}"
    pi = host(name)
    pointer = json.loads(pi.file("/opt/hailo-sidecar/models/current.json").content_string)
    folder = f"/opt/hailo-sidecar/models/{pointer['folder']}"
    on_host = json.loads(pi.file(f"{folder}/manifest.json").content_string)
    assert (rel["config_version"], rel["sha256"]) == (pointer["config_version"], pointer["sha256"]), (
        h,
        pointer,
    )
    assert h["model_sha256"] == on_host["onnx_sha256"] == pointer["sha256"], "a model of another release"
    sums = pi.run(f"cd {folder} && sha256sum model.onnx {on_host['golden']['file']}").stdout.split()
    assert sums[0] == on_host["onnx_sha256"] and sums[2] == on_host["golden"]["sha256"], f"{folder} damaged"
    return h


def power_cycle(name: str, graceful: bool = False, killed: bool = False) -> float:
    """Power lost (docker kill: every process of the host ends at once, /run and /tmp are gone;
    KILLED: that happened already) or a reboot (GRACEFUL, docker restart: systemd shuts down), then
    the host starts again; seconds until its sidecar serves."""
    t0 = time.monotonic()
    if graceful:
        subprocess.run(["docker", "restart", "-t", "60", name], check=True, capture_output=True)
    else:
        if not killed:
            subprocess.run(["docker", "kill", name], check=True, capture_output=True)
        subprocess.run(["docker", "start", name], check=True, capture_output=True)
    wait_serving(name)
    return round(time.monotonic() - t0, 1)


def play_at(playbook: str, task: str, action: Callable[[], object], *args: str,
            extra: dict[str, Any] | None = None, after_s: float = 0.0) -> tuple[Run, bool]:  # fmt: skip
    """Runs PLAYBOOK and calls ACTION (the fault) AFTER_S seconds after the banner of TASK is
    printed (the task has started); returns the run and whether ACTION was called."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(ROOT / playbook), "-i", str(INVENTORY),
           *args] + (["-e", json.dumps(extra)] if extra else [])  # fmt: skip
    stats = LAB / "drill-stats.json"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.update(ansible_stats_env(stats, env))
    t0 = time.monotonic()
    acted = False
    out: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=ROOT) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if not acted and line.startswith("TASK [") and task in line:
                time.sleep(after_s)
                action()
                acted = True
        proc.wait(timeout=1800)
    done = subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "")
    return Run(done, time.monotonic() - t0, read_stats(stats)), acted


def kill(name: str) -> Callable[[], object]:
    """Power lost on NAME: its container killed (every process at once)."""
    return lambda: subprocess.run(["docker", "kill", name], check=True, capture_output=True)

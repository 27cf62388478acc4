"""Helpers for the lab's tests: run a playbook against the lab's hosts, reach a host, read what
the lab made (build/lab)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from testinfra.backend.docker import DockerBackend
from testinfra.host import Host

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "build" / "lab"
INVENTORY = ROOT / "lab" / "inventory" / "hosts.yml"
GPUSRV = "lab-gpusrv"
PIS = ["lab-pi-trixie", "lab-pi-bookworm"]
sys.path.insert(0, str(ROOT / "lab" / "scripts"))
from stages import ansible_stats_env, installed_collections_path, read_stats  # noqa: E402


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float,
                 stats: dict[str, dict[str, int]] | None) -> None:  # fmt: skip
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        # Messages as one line: the callback folds long strings across lines.
        self.text = " ".join(self.out.split())
        self.seconds = seconds
        # host -> ok, changed, failures, unreachable, ... (empty when the run ended before its stats)
        self.stats = stats or {}

    def changed(self, host: str) -> int:
        assert host in self.stats, f"no stats for {host}:\n{self.out[-3000:]}"
        return self.stats[host]["changed"]


def play(playbook: str | Path, *args: str, extra: dict[str, Any] | None = None,
         env: dict[str, str] | None = None, timeout: float = 1800) -> Run:  # fmt: skip
    """ansible-playbook PLAYBOOK -i lab/inventory ARGS (-e EXTRA as JSON). A PLAYBOOK inside an
    installed collection (.../ansible_collections/...) runs with that collections folder first."""
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
                "HAILO_RUNNER_TOKEN": os.environ.get("HAILO_RUNNER_TOKEN", "lab-registration-token"),
                **(env or {})}  # fmt: skip
    installed = Path(playbook).parts
    if "ansible_collections" in installed:
        here = Path(*installed[: installed.index("ansible_collections")])
        full_env["ANSIBLE_COLLECTIONS_PATH"] = installed_collections_path(here)
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        str(ROOT / playbook),
        "-i",
        str(INVENTORY),
        *args,
    ]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    with tempfile.TemporaryDirectory(prefix="labplay-") as tmp:
        stats = Path(tmp) / "stats.json"
        full_env.update(ansible_stats_env(stats, full_env))
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)
        return Run(proc, time.monotonic() - start, read_stats(stats))


def _lab_connection() -> Any:
    # lab/plugins/connection/docker.py by path: its module name would shadow the docker SDK.
    spec = importlib.util.spec_from_file_location("lab_connection", ROOT / "lab/plugins/connection/docker.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_connection = _lab_connection()


class _LabDockerBackend(DockerBackend):
    """testinfra's docker backend with the lab connection's retry: a `docker exec` that runc did
    not start (its command never ran) is run again, up to the same number of tries."""

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        for attempt in range(1, _connection.TRIES + 1):
            out = super().run(command, *args, **kwargs)
            ran = not _connection.not_started(out.rc, out.stdout_bytes, out.stderr_bytes)
            if ran or attempt == _connection.TRIES:
                return out
            _connection.note_retry(self.name, "testinfra", attempt)
            time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")


def host(name: str) -> Any:
    """A lab host through docker exec (the hosts are containers on this machine)."""
    return Host(_LabDockerBackend(name))


def image_record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LAB / "sidecar-image.json").read_text())
    return data


def manifest(release: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((release / "manifest.json").read_text())
    return data


# GPUSrv's release as pi.yml deploys it by default (lab/inventory/group_vars/pi.yml), and the
# rollout releases lab/playbooks/releases.yml compiles.
RELEASE_A = LAB / "artifacts" / "imu-encoder" / "1.0.0"


def release(version: str) -> Path:
    return RELEASE_A if version == "1.0.0" else LAB / "releases" / "imu-encoder" / version


# The simulated Pis' stack (profile onnx), as the role deploys it.
STACK = "docker compose -p hailo --project-directory /opt/hailo-sidecar --profile onnx"


def smoke(h: Any, version: str, config: str) -> str:
    """The contract smoke in the Pi's container, expecting VERSION's model and CONFIG; its output."""
    sha = manifest(release(version))["onnx_sha256"]
    run = h.run(
        f"{STACK} exec -T hailo-inference-onnx hailo-sidecar smoke --url http://127.0.0.1:9000 "
        f"--expect-sha256 {sha} --expect-config-version {config}"
    )
    assert run.rc == 0, run.stdout + run.stderr
    return str(run.stdout)


def snapshot(h: Any, roots: str = "/etc /opt /srv /boot /usr /var/lib/dpkg") -> str:
    """Every path under ROOTS changed since the host was created, with its time: equal snapshots
    before and after a run mean the run changed nothing there."""
    out: str = h.run(f"find {roots} -xdev -newer /etc/hostname -printf '%p %T@\\n' 2>/dev/null | sort").stdout
    return out


class BadRuns(NamedTuple):
    runs: dict[str, Run]  # per case
    changed: list[str]  # snapshot lines (labplay.snapshot) that differ from before the runs


def refused_runs(h: Any, cases: dict[str, Callable[[], Run]], workers: int = 4) -> BadRuns:
    """Runs that must each be refused before they write anything, WORKERS at a time (reading only,
    they cannot disturb each other), and what changed on host H between just before the first and
    just after the last."""
    before = snapshot(h)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = dict(zip(cases, pool.map(lambda c: cases[c](), cases), strict=True))
    return BadRuns(runs, sorted(set(before.splitlines()) ^ set(snapshot(h).splitlines())))


def bad_variable_runs(h: Any, playbook: str, cases: dict[str, dict[str, Any]], *args: str) -> BadRuns:
    """Every bad-variable run of PLAYBOOK at once (each stops in the preflight play)."""
    return refused_runs(h, {case: partial(play, playbook, *args, extra=e) for case, e in cases.items()})


# The fleet's monitoring on lab-gpusrv (roles/monitoring): Prometheus, Alertmanager and the
# stand-in receiver of their notifications (lab/playbooks/files/alert-receiver.py).
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
RECEIVED = "/var/log/hailo-lab/alerts.jsonl"


def until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    """CHECK's first true result, polled every 3 s; fails naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what}: not within {timeout:.0f} s"
            return result
        time.sleep(3)


def api(url: str, query: str | None = None) -> Any:
    """A GET of lab-gpusrv's Prometheus or Alertmanager API (URL), with a PromQL QUERY URL-encoded
    by curl; the response's data (Prometheus) or the response (Alertmanager)."""
    form = f" -G --data-urlencode {shlex.quote('query=' + query)}" if query else ""
    data = json.loads(host(GPUSRV).check_output(f"curl -fsS {shlex.quote(url)}{form}"))
    return data["data"] if isinstance(data, dict) and "data" in data else data


def query(promql: str) -> dict[str, dict[str, Any]]:
    """An instant PromQL query's result by the series' host label."""
    return {r["metric"].get("host", ""): r for r in api(f"{PROMETHEUS}/api/v1/query", promql)["result"]}


def alert(name: str, host_name: str) -> dict[str, Any] | None:
    """The alert NAME about HOST_NAME as Prometheus has it (state pending or firing), or None."""
    found = [a for a in api(f"{PROMETHEUS}/api/v1/alerts")["alerts"]
             if a["labels"]["alertname"] == name and a["labels"].get("host") == host_name]  # fmt: skip
    return found[0] if found else None


def firing(name: str, host_name: str) -> bool:
    a = alert(name, host_name)
    return a is not None and a["state"] == "firing"


def notifications(since: float) -> list[tuple[str, str, str, str]]:
    """What reached the receiver after SINCE (lab-gpusrv's clock): (receiver, status, alertname,
    host) per alert of each notification; receiver is the URL's first path part (page, ticket)."""
    out = []
    for line in host(GPUSRV).run(f"cat {RECEIVED}").stdout.splitlines():
        n = json.loads(line)
        if n["received"] > since:
            receiver = n["path"].strip("/").split("/")[0]
            out += [(receiver, a["status"], a["labels"]["alertname"], a["labels"].get("host", ""))
                    for a in n["notification"]["alerts"]]  # fmt: skip
    return out

"""`hailo-sidecar bench --url`: the hardware acceptance's load run against a running sidecar.

The thresholds here are deliberately unreachable or trivial: the tests check that the verdict
follows the measurement and the targets, not how fast this machine is."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server import Server

pytestmark = pytest.mark.slow


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar_app.cli", "bench", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def stub() -> Iterator[Server]:
    srv = Server(INFER_MODE="stub", LOG_LEVEL="warning")
    yield srv
    srv.stop()


def test_met_targets_exit_zero_with_rows_and_report(stub, tmp_path: Path):
    out = tmp_path / "bench.json"
    run = bench("--url", stub.url, "--duration", "0.5", "--concurrency", "1,2", "--json-out", str(out),
                "--target-p95-ms", "60000", "--target-windows-per-s", "0.01")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert [r["concurrency"] for r in report["rows"]] == [1, 2]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in report["rows"])
    assert [t["met"] for t in report["targets"]] == [True, True, True]
    assert "MET   p95 latency, c=1" in run.stdout and "(target < 60000 ms)" in run.stdout


def test_missed_target_exits_one_and_names_it(stub, tmp_path: Path):
    run = bench("--url", stub.url, "--duration", "0.3", "--concurrency", "1", "--json-out",
                str(tmp_path / "b.json"), "--target-windows-per-s", "1e12")  # fmt: skip
    assert run.returncode == 1
    assert "MISS  windows/s, c=1" in run.stdout


def test_unreachable_sidecar_fails_naming_the_url(tmp_path: Path):
    run = bench("--url", "http://127.0.0.1:9", "--duration", "0.3", "--concurrency", "1",
                "--json-out", str(tmp_path / "b.json"))  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "bench: cannot load http://127.0.0.1:9" in run.stderr


def test_bad_url_exits_two_naming_it(tmp_path: Path):
    run = bench("--url", "ftp://x", "--json-out", str(tmp_path / "b.json"))
    assert run.returncode == 2 and "--url must be http://HOST[:PORT]" in run.stderr

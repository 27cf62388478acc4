"""``hailo-sidecar bench-scrape``: what the fleet's monitoring costs a sidecar, on 127.0.0.1.

1. A sidecar (onnx mode, the reference model) serves N requests (default 10,000), so its
   counters and histograms hold what a busy Pi's do; then /metrics is fetched 30 times: median
   response time and size.
2. /infer under load (single windows, 4 clients) with Prometheus scraping the sidecar every 5 s,
   next to the same load without it, alternating (without, with, without, with, ...) so the
   machine's noise hits both: p95 per run, then the medians and their ratio. Prometheus is the
   real one when a `prometheus` binary is on PATH (Debian's package), else an HTTP client that
   fetches /metrics every 5 s as Prometheus would.
Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from .bench import HOST, _free_port, _start, _stop
from .loadgen import build_request, run_load
from .refmodel import reference_model, sample_windows


def _metrics_cost(port: int, fetches: int = 30) -> dict[str, float]:
    times, size = [], 0
    for _fetch in range(fetches):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
            size = len(r.read())
        times.append((time.perf_counter() - t0) * 1000)
    return {"metrics_median_ms": round(statistics.median(times), 3), "metrics_bytes": size}


class _Scraper:
    """Prometheus (or an HTTP stand-in for it) scraping the sidecar every INTERVAL seconds."""

    def __init__(self, port: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.kind = "prometheus" if shutil.which("prometheus") else "http client"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._work = Path(tempfile.mkdtemp(prefix="hailo-scrape-"))

    def __enter__(self) -> _Scraper:
        if self.kind == "prometheus":
            config = self._work / "prometheus.yml"
            config.write_text(
                f"global: {{scrape_interval: {self.interval:.0f}s}}\n"
                f"scrape_configs:\n  - job_name: sidecar\n    static_configs:\n"
                f"      - targets: ['{HOST}:{self.port}']\n"
            )
            self._proc = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self._work / 'data'}",
                 f"--web.listen-address={HOST}:{_free_port()}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=10) as r:
                r.read()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        shutil.rmtree(self._work, ignore_errors=True)


def run(requests: int, seconds: float, pairs: int, interval: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hailo-scrape-model-"))
    model = reference_model(work / "model.onnx")
    proc, port = _start("sidecar", {"INFER_MODE": "onnx", "ONNX_PATH": str(model)})
    body = json.dumps({"x": sample_windows(1)[0].round(4).tolist()}).encode()
    request = build_request("/infer", body, "application/json", f"{HOST}:{port}")
    try:
        served = asyncio.run(run_load(HOST, port, request, 4, 600.0, requests))
        cost = _metrics_cost(port)
        p95: dict[str, list[float]] = {"without": [], "with": []}
        kind = "prometheus" if shutil.which("prometheus") else "http client"
        for _pair in range(pairs):
            p95["without"].append(
                asyncio.run(run_load(HOST, port, request, 4, seconds, 10**9)).summary(1)["p95_ms"]
            )
            with _Scraper(port, interval):
                time.sleep(1)  # Prometheus starts; its first scrape lands in the run
                p95["with"].append(
                    asyncio.run(run_load(HOST, port, request, 4, seconds, 10**9)).summary(1)["p95_ms"]
                )
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    without, with_ = statistics.median(p95["without"]), statistics.median(p95["with"])
    return {
        "requests_served": served.requests, **cost, "scraper": kind, "scrape_interval_s": interval,
        "p95_ms_without": p95["without"], "p95_ms_with": p95["with"],
        "p95_median_ms_without": round(without, 3), "p95_median_ms_with": round(with_, 3),
        "ratio": round(with_ / without, 3) if without else None,
    }  # fmt: skip


def main(args: argparse.Namespace) -> int:
    print(
        f"hailo-sidecar bench-scrape: {args.requests} requests first, then {args.pairs} pairs of "
        f"{args.duration:.0f} s runs (c=4) without and with a scrape every {args.interval:.0f} s",
        flush=True,
    )
    r = run(args.requests, args.duration, args.pairs, args.interval)
    print(
        f"  /metrics after {r['requests_served']} requests: {r['metrics_bytes']} bytes, "
        f"median {r['metrics_median_ms']:.2f} ms"
    )
    print(
        f"  /infer p95 without scraping: {r['p95_ms_without']} ms (median {r['p95_median_ms_without']:.2f})"
    )
    print(
        f"  /infer p95 with {r['scraper']} every {r['scrape_interval_s']:.0f} s: {r['p95_ms_with']} ms "
        f"(median {r['p95_median_ms_with']:.2f})"
    )
    print(f"  ratio with/without: {r['ratio']}")
    Path(args.json_out).write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {args.json_out}")
    return 0

"""``hailo-sidecar bench``: the sidecar under load on 127.0.0.1, side by side with a baseline.

With ``--url``, a running sidecar instead (the hardware acceptance on a Pi): single JSON windows
at each concurrency, p50/p95/p99 and windows/s printed next to the targets (p95 and windows/s
of one caller, as EdgeInfer calls it); exit 1 when a target is missed or a request failed.

Otherwise runs, in one invocation on the same machine:
  * floor     - the stub backend called in-process, no HTTP (parse cost excluded)
  * baseline  - the straightforward design: a FastAPI endpoint whose body is a Pydantic model
                with ``x: List[List[float]]`` (defined here, not in the product), same backend
  * sidecar   - this project's server in stub and onnx modes, JSON and binary bodies
at concurrency 1, 4 and 16, single windows and batches of 64. Every run is bounded in time and
in requests. Prints a table and the target ratios; writes everything as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel

from .loadgen import build_request, run_load
from .refmodel import reference_model, sample_windows

HOST = "127.0.0.1"
BATCH = 64


# --- the baseline server (the straightforward design) ---------------------------------------
class Window(BaseModel):
    x: list[list[float]]


class Batch(BaseModel):
    windows: list[list[list[float]]]


class Result(BaseModel):
    latent: list[float]
    motif_scores: list[float]


class BatchResult(BaseModel):
    results: list[Result]


def baseline_app() -> Any:
    from fastapi import FastAPI

    from ..backends.stub import StubBackend

    backend = StubBackend(12)
    app = FastAPI()

    @app.post("/infer", response_model=Result)
    def infer(req: Window) -> dict[str, list[float]]:
        latent, motifs = backend.infer(np.asarray(req.x, dtype=np.float32)[None])
        return {"latent": latent[0].tolist(), "motif_scores": motifs[0].tolist()}

    @app.post("/infer/batch", response_model=BatchResult)
    def infer_batch(req: Batch) -> dict[str, Any]:
        latent, motifs = backend.infer(np.asarray(req.windows, dtype=np.float32))
        return {
            "results": [
                {"latent": a.tolist(), "motif_scores": b.tolist()}
                for a, b in zip(latent, motifs, strict=True)
            ]
        }

    return app


def _serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(), host=HOST, port=port, log_level="warning", access_log=False)


# --- helpers ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _start(kind: str, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "HOST": HOST, "PORT": str(port), "LOG_LEVEL": "warning", **env_extra}
    if kind == "baseline":
        cmd = [
            sys.executable,
            "-c",
            f"from sidecar_app.tools.bench import _serve_baseline; _serve_baseline({port})",
        ]
        ready = f"http://{HOST}:{port}/docs"
    else:
        cmd = [sys.executable, "-m", "sidecar_app.cli", "serve"]
        ready = f"http://{HOST}:{port}/readyz"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_ready(ready, proc)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _floor(windows: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    from ..backends.stub import StubBackend

    backend = StubBackend(12)
    rows = []
    for label, x in (("single", windows[:1]), (f"batch{BATCH}", windows[:BATCH])):
        lat: list[float] = []
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop and len(lat) < 200_000:
            t0 = time.perf_counter()
            backend.infer(x)
            lat.append(time.perf_counter() - t0)
        arr = np.array(lat) * 1000
        rows.append({
            "target": "floor (in-process stub)", "payload": label, "concurrency": 1,
            "requests": len(lat), "errors": 0,
            "windows_per_s": len(lat) * x.shape[0] / arr.sum() * 1000,
            "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)),
        })  # fmt: skip
    return rows


def _payloads(windows: np.ndarray) -> dict[str, tuple[str, bytes, str, int]]:
    one = windows[0]
    batch = windows[:BATCH]
    # JSON numbers as a float32 client writes them (shortest float32 repr, ~9 digits).
    js = orjson.OPT_SERIALIZE_NUMPY
    return {
        "json single": ("/infer", orjson.dumps({"x": one}, option=js), "application/json", 1),
        f"json batch{BATCH}": (
            "/infer/batch",
            orjson.dumps({"windows": batch}, option=js),
            "application/json",
            BATCH,
        ),
        "binary single": ("/infer", one.astype("<f4").tobytes(), "application/octet-stream", 1),
        f"binary batch{BATCH}": (
            "/infer/batch",
            batch.astype("<f4").tobytes(),
            "application/octet-stream",
            BATCH,
        ),
    }


def _row(target: str, payload: str, c: int, summary: dict[str, float]) -> dict[str, Any]:
    return {"target": target, "payload": payload, "concurrency": c, **summary}


def _find(rows: list[dict[str, Any]], target: str, payload: str, c: int) -> dict[str, Any] | None:
    for r in rows:
        if r["target"] == target and r["payload"] == payload and r["concurrency"] == c:
            return r
    return None


def _targets(rows: list[dict[str, Any]]) -> list[tuple[str, float, str, bool]]:
    stub = _find(rows, "sidecar stub", "json single", 4)
    base = _find(rows, "baseline stub", "json single", 4)
    onnx = _find(rows, "sidecar onnx", "json single", 4)
    jb = _find(rows, "sidecar stub", f"json batch{BATCH}", 4)
    bb = _find(rows, "sidecar stub", f"binary batch{BATCH}", 4)
    # (label, value or None when its runs are missing, "at least"?, threshold, unit)
    speedup = stub and base and base["windows_per_s"] and stub["windows_per_s"] / base["windows_per_s"]
    checks = [
        ("json single c=4: windows/s vs baseline", speedup, True, 3.0, "x"),
        (
            "json single c=4: p95 vs baseline",
            stub and base and stub["p95_ms"] / base["p95_ms"],
            False,
            0.5,
            "x",
        ),
        (
            "onnx p95 vs stub p95 (json single c=4)",
            stub and onnx and onnx["p95_ms"] / stub["p95_ms"],
            False,
            1.3,
            "x",
        ),
        (f"json batch{BATCH} c=4 windows/s", jb and jb["windows_per_s"], True, 10000, ""),
        (f"binary batch{BATCH} c=4 windows/s", bb and bb["windows_per_s"], True, 50000, ""),
    ]
    out = []
    for label, value, at_least, threshold, unit in checks:
        if not value:
            continue
        met = value >= threshold if at_least else value <= threshold
        out.append((label, float(value), f"{'>=' if at_least else '<='} {threshold:g}{unit}", met))
    return out


def remote(args: argparse.Namespace) -> int:
    """Load on a running sidecar at args.url; checks the acceptance targets."""
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        print(f"bench: --url must be http://HOST[:PORT], got {args.url!r}", file=sys.stderr)
        return 2
    host, port = url.hostname, url.port or 80
    conc = [int(c) for c in str(args.concurrency or "1,4").split(",")]
    path, body, ctype, per = _payloads(sample_windows(BATCH, seed=3))["json single"]
    req = build_request(path, body, ctype, f"{host}:{port}")
    print(f"hailo-sidecar bench: {args.url}, {args.duration:.0f}s per run, concurrency {conc}", flush=True)
    rows = []
    for c in conc:
        try:
            asyncio.run(run_load(host, port, req, c, min(2.0, args.duration), 50))  # warm-up
            res = asyncio.run(run_load(host, port, req, c, args.duration, args.max_requests))
        except OSError as err:
            print(f"bench: cannot load {args.url}: {err}", file=sys.stderr)
            return 1
        rows.append(_row(args.url, "json single", c, res.summary(per)))
        r = rows[-1]
        print(
            f"  c={c:<3} {r['windows_per_s']:>8.1f} windows/s  p50 {r['p50_ms']:.1f} ms  "
            f"p95 {r['p95_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  errors {r['errors']}",
            flush=True,
        )
    one = rows[0]
    checks = [
        (f"p95 latency, c={one['concurrency']}", one["p95_ms"], f"< {args.target_p95_ms:g} ms",
         one["p95_ms"] < args.target_p95_ms),
        (f"windows/s, c={one['concurrency']}", one["windows_per_s"], f">= {args.target_windows_per_s:g}",
         one["windows_per_s"] >= args.target_windows_per_s),
        ("failed requests", float(sum(r["errors"] for r in rows)), "0", all(r["errors"] == 0 for r in rows)),
    ]  # fmt: skip
    print("\nacceptance targets:")
    for label, value, want, ok in checks:
        print(f"  {'MET ' if ok else 'MISS'}  {label:<22} {value:>10.1f}  (target {want})")
    Path(args.json_out).write_text(json.dumps({"url": args.url, "rows": rows, "targets": [
        {"label": lbl, "value": v, "target": w, "met": ok} for lbl, v, w, ok in checks
    ]}, indent=2))  # fmt: skip
    print(f"wrote {args.json_out}")
    return 0 if all(ok for *_rest, ok in checks) else 1


def main(args: argparse.Namespace) -> int:
    if args.url:
        return remote(args)
    conc = [4] if args.quick else [int(c) for c in str(args.concurrency or "1,4,16").split(",")]
    duration = 1.0 if args.quick else float(args.duration)
    windows = sample_windows(BATCH, seed=3)
    payloads = _payloads(windows)
    rows: list[dict[str, Any]] = _floor(windows, duration)
    print(
        f"hailo-sidecar bench: {os.cpu_count()} CPUs, {duration:.1f}s per run, concurrency {conc}", flush=True
    )

    with tempfile.TemporaryDirectory() as tmp:
        model = reference_model(Path(tmp) / "model.onnx")
        targets = [
            ("baseline stub", "baseline", {}, ["json single", f"json batch{BATCH}"]),
            ("sidecar stub", "sidecar", {"INFER_MODE": "stub"}, list(payloads)),
            (
                "sidecar onnx", "sidecar", {"INFER_MODE": "onnx", "ONNX_PATH": str(model)},
                ["json single", f"binary batch{BATCH}"],
            ),
        ]  # fmt: skip
        for name, kind, env, names in targets:
            proc, port = _start(kind, env)
            try:
                for pname in names:
                    path, body, ctype, per = payloads[pname]
                    req = build_request(path, body, ctype, f"{HOST}:{port}")
                    for c in conc:
                        # warm-up, then the measured run
                        asyncio.run(run_load(HOST, port, req, c, 0.2, 200))
                        res = asyncio.run(run_load(HOST, port, req, c, duration, args.max_requests))
                        rows.append(_row(name, pname, c, res.summary(per)))
                        print(
                            f"  {name:<14} {pname:<16} c={c:<3} {rows[-1]['windows_per_s']:>10.0f} windows/s",
                            flush=True,
                        )
            finally:
                _stop(proc)

    print()
    head = (
        f"{'target':<24} {'payload':<16} {'conc':>4} {'windows/s':>11} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['target']:<24} {r['payload']:<16} {r['concurrency']:>4} {r['windows_per_s']:>11.0f} "
            f"{r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['errors']:>6}"
        )
    checks = _targets(rows)
    print("\ntargets (2-core machine, stub mode unless named):")
    for label, value, want, ok in checks:
        shown = f"{value:.2f}x" if want.endswith("x") else f"{value:.0f}"
        print(f"  {'MET ' if ok else 'MISS'}  {label:<44} {shown:>10}  (target {want})")
    Path(args.json_out).write_text(json.dumps({"rows": rows, "targets": [
        {"label": lbl, "value": v, "target": w, "met": ok} for lbl, v, w, ok in checks
    ]}, indent=2))  # fmt: skip
    print(f"\nwrote {args.json_out}")
    return 0

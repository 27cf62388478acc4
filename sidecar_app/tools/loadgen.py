"""A small HTTP/1.1 keep-alive load generator for loopback benchmarks (asyncio, no parsing
beyond the status line and Content-Length). Every run is bounded in requests and in time.

With ``retry``, a request that gets no answer (connection refused or dropped: a server
restarting) is counted as failed and the worker connects again, so a run also measures an outage
(the release-swap figures); without it, the first such error ends the run (benchmarks)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunResult:
    requests: int = 0  # answered
    errors: int = 0  # answered with another status than 200
    failed: int = 0  # not answered (refused, reset, closed)
    latencies: list[float] = field(default_factory=list)
    #: When each answered request started (time.perf_counter()), in the order of latencies.
    started: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def p99_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """p99 latency of the requests that started in [start, end)."""
        lat = [x for t, x in zip(self.started, self.latencies, strict=True) if start <= t < end]
        return float(np.percentile(np.array(lat) * 1000, 99)) if lat else float("nan")

    def summary(self, windows_per_request: int) -> dict[str, float]:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        ok = self.requests - self.errors
        return {
            "requests": self.requests,
            "errors": self.errors,
            "failed": self.failed,
            "windows_per_s": ok * windows_per_request / self.elapsed if self.elapsed else 0.0,
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
        }


def build_request(path: str, body: bytes, content_type: str, host: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


REQUEST_TIMEOUT_S = 10.0


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed")
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status_line


async def _worker(
    host: str, port: int, request: bytes, stop_at: float, budget: list[int], res: RunResult, retry: bool
) -> None:
    writer = None
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                # Bounded: a server that stops answering ends the run instead of hanging it.
                status_line = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                if not retry:
                    raise
                res.failed += 1
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.05)
                continue
            res.latencies.append(time.perf_counter() - t0)
            res.started.append(t0)
            res.requests += 1
            if status_line[9:12] != b"200":
                res.errors += 1
    finally:
        if writer is not None:
            writer.close()


async def run_load(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    retry: bool = False,
) -> RunResult:
    res = RunResult()
    budget = [max_requests]
    t0 = time.perf_counter()
    stop_at = t0 + duration_s
    await asyncio.gather(
        *(_worker(host, port, request, stop_at, budget, res, retry) for _worker_no in range(concurrency))
    )
    res.elapsed = time.perf_counter() - t0
    return res

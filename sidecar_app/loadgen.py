"""A small HTTP/1.1 keep-alive load generator for loopback benchmarks (asyncio, no parsing
beyond the status line and Content-Length). Every run is bounded in requests and in time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunResult:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self, windows_per_request: int) -> dict[str, float]:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        ok = self.requests - self.errors
        return {
            "requests": self.requests,
            "errors": self.errors,
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


async def _worker(
    host: str, port: int, request: bytes, stop_at: float, budget: list[int], res: RunResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            res.latencies.append(time.perf_counter() - t0)
            res.requests += 1
            if status_line[9:12] != b"200":
                res.errors += 1
    finally:
        writer.close()


async def run_load(
    host: str, port: int, request: bytes, concurrency: int, duration_s: float, max_requests: int
) -> RunResult:
    res = RunResult()
    budget = [max_requests]
    t0 = time.perf_counter()
    stop_at = t0 + duration_s
    await asyncio.gather(*(_worker(host, port, request, stop_at, budget, res) for _ in range(concurrency)))
    res.elapsed = time.perf_counter() - t0
    return res

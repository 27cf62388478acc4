"""Contract smoke against a running sidecar (stdlib only: it runs inside the runtime image).

Checks /healthz, /readyz, /infer twice with a known window, a malformed request, and /metrics;
prints a pass/fail table; returns the number of failures.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ..shape import CHANNELS, LATENT_DIM, WINDOW_LEN

KNOWN_WINDOW = [[round(math.sin(0.1 * i + j), 6) for j in range(CHANNELS)] for i in range(WINDOW_LEN)]


def _call(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    # run_smoke only lets http(s) URLs through
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")  # noqa: S310
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - operator URL
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class Failed(Exception):
    """A smoke check did not hold; the message says what was seen."""


def expect(condition: bool, message: str) -> None:
    """An explicit comparison (not ``assert``: the smoke decides rollbacks and must not vanish
    under ``python -O``)."""
    if not condition:
        raise Failed(message)


def run_smoke(
    url: str,
    expect_sha256: str | None = None,
    expect_config_version: str | None = None,
    num_motifs: int | None = None,
    wait_s: float = 0.0,
    out: Callable[[str], None] = print,
) -> int:
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"--url must be an http:// or https:// URL, got {url!r}")
    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], str]) -> None:
        try:
            detail = fn()
            results.append((name, True, detail))
        except Exception as exc:
            results.append((name, False, str(exc) or type(exc).__name__))

    deadline = time.monotonic() + wait_s
    while True:
        try:
            status, _headers, _body = _call(base + "/readyz", timeout=3)
        except OSError:
            status = 0
        if status == 200 or time.monotonic() >= deadline:
            break
        time.sleep(1)

    health: dict[str, Any] = {}

    def c_health() -> str:
        status, _headers, body = _call(base + "/healthz")
        expect(status == 200, f"HTTP {status}")
        health.update(json.loads(body))
        expect(health["status"] in ("ok", "degraded"), f"status {health['status']}: {health.get('reason')}")
        if expect_sha256:
            expect(
                health.get("model_sha256") == expect_sha256.lower(),
                f"model_sha256 {health.get('model_sha256')} != expected {expect_sha256}",
            )
        if expect_config_version:
            expect(
                health["config_version"] == expect_config_version,
                f"config_version {health['config_version']!r} != {expect_config_version!r}",
            )
        return (
            f"{health['status']}, mode {health.get('serving_mode')}, {health.get('model_kind')} sha256 "
            f"{str(health.get('model_sha256'))[:12]}"
        )

    def c_ready() -> str:
        status, _headers, body = _call(base + "/readyz")
        expect(status == 200, f"HTTP {status}: {body[:200]!r}")
        return "ready"

    outputs: list[Any] = []

    def c_infer() -> str:
        body = json.dumps({"x": KNOWN_WINDOW}).encode()
        for _attempt in range(2):
            status, headers, raw = _call(base + "/infer", body)
            expect(status == 200, f"HTTP {status}: {raw[:200]!r}")
            outputs.append(json.loads(raw))
        doc = outputs[0]
        expect(set(doc) >= {"latent", "motif_scores"}, f"keys {sorted(doc)}")
        want_m = num_motifs or health.get("num_motifs") or 12
        expect(len(doc["latent"]) == LATENT_DIM, f"latent has {len(doc['latent'])} values")
        expect(len(doc["motif_scores"]) == want_m, f"motif_scores has {len(doc['motif_scores'])}")
        values = doc["latent"] + doc["motif_scores"]
        expect(all(isinstance(v, float | int) and math.isfinite(v) for v in values), "non-finite output")
        expect(all(0.0 <= v <= 1.0 for v in doc["motif_scores"]), "motif score outside [0, 1]")
        expect(outputs[0] == outputs[1], "same window gave different outputs")
        mode = {k.lower(): v for k, v in headers.items()}.get("x-infer-mode", "?")
        return f"64 + {want_m} finite values, deterministic, mode {mode}"

    def c_malformed() -> str:
        bad = json.dumps({"x": KNOWN_WINDOW[:-1]}).encode()
        status, _headers, raw = _call(base + "/infer", bad)
        expect(400 <= status < 500, f"HTTP {status} for a 99-row window")
        msg = json.loads(raw).get("error", "")
        expect(bool(msg), "no error message")
        return f"HTTP {status}: {msg}"

    def c_metrics() -> str:
        status, _headers, raw = _call(base + "/metrics")
        expect(status == 200, f"HTTP {status}")
        text = raw.decode()
        info = [ln for ln in text.splitlines() if ln.startswith("hailo_sidecar_model_info{")]
        expect(bool(info), "no hailo_sidecar_model_info series")
        if expect_sha256:
            expect(f'model_sha256="{expect_sha256.lower()}"' in info[0], "model_info sha256 differs")
        if expect_config_version:
            expect(
                f'config_version="{expect_config_version}"' in info[0], "model_info config_version differs"
            )
        expect("hailo_sidecar_requests_total" in text, "no request counter")
        return "model_info present" + (
            " with expected labels" if expect_sha256 or expect_config_version else ""
        )

    check("healthz", c_health)
    check("readyz", c_ready)
    check("infer contract", c_infer)
    check("malformed request -> 4xx", c_malformed)
    check("metrics", c_metrics)

    width = max(len(n) for n, _ok, _detail in results)
    out(f"contract smoke against {base}")
    for name, ok, detail in results:
        out(f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failures = sum(1 for _name, ok, _detail in results if not ok)
    out(f"smoke: {len(results) - failures} passed, {failures} failed")
    return failures


def wait_release(url: str, config_version: str, sha256: str | None, timeout: float, poll: float = 0.5) -> int:
    """Waits until the sidecar at URL serves the release (config version, and model sha256 when
    given): 0 served, 1 the sidecar refused it (its candidate check failed; the reason is printed),
    2 neither within TIMEOUT seconds. The sidecar_stack role runs it after pointing at a release.
    Stdlib only, like the smoke: it runs inside the image."""
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=5) as resp:  # noqa: S310
                health = json.load(resp)
        except (OSError, ValueError):
            health = {}
        served = health.get("status") == "ok" and health.get("config_version") == config_version
        release = health.get("release") or {}
        if served and (sha256 is None or health.get("model_sha256") == sha256):
            how = "swapped in" if (health.get("candidate") or {}).get("state") == "active" else "loaded"
            name = f"{release.get('model') or 'no model'} {release.get('version') or ''}".strip()
            sha = health.get("model_sha256")
            print(f"release active ({how}): {name}, config {config_version}, sha256 {sha}")
            return 0
        candidate = health.get("candidate") or {}
        offered = candidate.get("release") or {}
        refused = candidate.get("state") == "refused" and offered.get("config_version") == config_version
        if refused and (sha256 is None or offered.get("sha256") == sha256):
            print(
                f"release refused by the sidecar ({candidate.get('kind')}): {candidate.get('reason')}; "
                f"it keeps serving {release.get('version') or release.get('config_version')}",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() > deadline:
            print(
                f"the sidecar did not serve config {config_version} within {timeout:.0f}s: status "
                f"{health.get('status')} ({health.get('reason')}), config {health.get('config_version')}, "
                f"candidate {candidate.get('state')}",
                file=sys.stderr,
            )
            return 2
        time.sleep(poll)

"""Parity: a candidate (a running sidecar, or a local backend) against the reference ONNX model.

Window by window: cosine similarity of ``latent``, the largest absolute difference over
``latent`` and ``motif_scores``, and top-k agreement of ``motif_scores`` (the share of the
reference's k highest motifs that the candidate also ranks in its top k). A window drifts when its
cosine is below ``min_cosine`` or its error above ``max_abs_error``; the run passes when at most
``max_drift_fraction`` of the windows drift and the mean top-k agreement reaches
``min_topk_agreement``. Used to accept a compiled ``.hef`` (quantized on the Hailo-8) against the
ONNX it came from.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import Settings
from ..shape import CHANNELS, WINDOW_LEN

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ParityInputError(Exception):
    """A reference, candidate or windows file that cannot be used; nothing was compared."""


@dataclass(frozen=True)
class Thresholds:
    min_cosine: float = 0.99
    max_abs_error: float = 0.05
    top_k: int = 3
    min_topk_agreement: float = 0.9
    max_drift_fraction: float = 0.0


def _local(spec: str, num_motifs: int) -> tuple[Infer, str]:
    """``onnx:PATH``, ``hailo:PATH`` or ``stub``: a backend in this process."""
    kind, _sep, path = spec.partition(":")
    if kind == "stub" and not path:
        from ..backends.stub import StubBackend

        backend: Any = StubBackend(num_motifs)
    elif kind == "onnx" and path:
        from ..backends.onnx import OnnxBackend

        backend = OnnxBackend(Path(path), num_motifs)
    elif kind == "hailo" and path:
        from ..backends.hailo import HailoBackend

        backend = HailoBackend(Path(path), num_motifs)
    else:
        raise ParityInputError(f"{spec!r}: expected onnx:PATH, hailo:PATH, stub or an http(s):// URL")
    from ..errors import ModelLoadError

    try:
        info = backend.load()
    except ModelLoadError as exc:
        raise ParityInputError(f"{spec}: {exc.message}") from None
    return backend.infer, f"{info.mode} {info.model_path or ''} sha256 {info.sha256}".strip()


def _remote(url: str, timeout: float = 30.0) -> tuple[Infer, str]:
    """A running sidecar: /healthz once, then /infer/batch with the binary body."""
    base = url.rstrip("/")
    for suffix in ("/infer/batch", "/infer"):
        base = base.removesuffix(suffix)
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=timeout) as resp:  # noqa: S310 - operator URL
            health = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"{base}/healthz: {exc}") from None

    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        body = np.ascontiguousarray(x, dtype="<f4").tobytes()
        req = urllib.request.Request(base + "/infer/batch", data=body, method="POST")  # noqa: S310
        req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                results = json.loads(resp.read())["results"]
        except urllib.error.HTTPError as err:
            raise ParityInputError(f"{base}/infer/batch: HTTP {err.code}: {err.read()[:300]!r}") from None
        latent = np.asarray([r["latent"] for r in results], dtype=np.float32)
        motifs = np.asarray([r["motif_scores"] for r in results], dtype=np.float32)
        return latent, motifs

    label = f"{base} ({health.get('serving_mode')}, sha256 {health.get('hef_sha256')})"
    return infer, label


def open_model(spec: str, num_motifs: int) -> tuple[Infer, str]:
    if spec.startswith(("http://", "https://")):
        return _remote(spec)
    return _local(spec, num_motifs)


def load_windows(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"--windows {path}: {exc}") from None
    if data.ndim == 4 and data.shape[1] == 1:  # the calibration layout (N, 1, 100, 9)
        data = data[:, 0]
    if data.ndim != 3 or data.shape[1:] != (WINDOW_LEN, CHANNELS):
        raise ParityInputError(
            f"--windows {path}: shape {data.shape}, expected (N, {WINDOW_LEN}, {CHANNELS}) or (N, 1, 100, 9)"
        )
    if not len(data) or not np.isfinite(data).all():
        raise ParityInputError(f"--windows {path}: empty, or holds NaN/inf")
    windows: np.ndarray = data.astype(np.float32)
    return windows


def compare(
    ref: tuple[np.ndarray, np.ndarray], cand: tuple[np.ndarray, np.ndarray], k: int
) -> dict[str, np.ndarray]:
    (lr, mr), (lc, mc) = ref, cand
    if lc.shape != lr.shape or mc.shape != mr.shape:
        raise ParityInputError(
            f"candidate output shapes latent {lc.shape}, motif_scores {mc.shape} differ from the "
            f"reference's {lr.shape}, {mr.shape}"
        )
    norms = np.linalg.norm(lr, axis=1) * np.linalg.norm(lc, axis=1)
    cosine = np.where(norms > 0, np.sum(lr * lc, axis=1) / np.maximum(norms, 1e-12), 0.0)
    err = np.maximum(np.abs(lr - lc).max(axis=1), np.abs(mr - mc).max(axis=1))
    k = min(k, mr.shape[1])
    top_r = np.argsort(-mr, axis=1)[:, :k]
    top_c = np.argsort(-mc, axis=1)[:, :k]
    agree = np.array([len(set(a) & set(b)) / k for a, b in zip(top_r, top_c, strict=True)])
    return {"cosine": cosine, "max_abs_error": err, "topk_agreement": agree}


def run_parity(
    reference: str,
    candidate: str,
    windows: np.ndarray,
    thresholds: Thresholds,
    num_motifs: int = 12,
    batch: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    batch = batch or Settings.model_fields["max_batch"].default  # the sidecar's own MAX_BATCH default
    ref_infer, ref_label = open_model(reference, num_motifs)
    cand_infer, cand_label = open_model(candidate, num_motifs)
    parts: list[dict[str, np.ndarray]] = []
    start = time.monotonic()
    total = len(windows)
    for i in range(0, total, batch):
        chunk = windows[i : i + batch]
        parts.append(compare(ref_infer(chunk), cand_infer(chunk), thresholds.top_k))
        if progress:
            done = min(i + batch, total)
            progress(f"parity: {done}/{total} windows ({done / max(time.monotonic() - start, 1e-9):.0f}/s)")
    m = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    drifted = (m["cosine"] < thresholds.min_cosine) | (m["max_abs_error"] > thresholds.max_abs_error)
    worst = np.argsort(m["cosine"])[:10]
    summary = {
        "cosine_min": float(m["cosine"].min()),
        "cosine_p01": float(np.percentile(m["cosine"], 1)),
        "cosine_mean": float(m["cosine"].mean()),
        "max_abs_error": float(m["max_abs_error"].max()),
        "max_abs_error_p99": float(np.percentile(m["max_abs_error"], 99)),
        "topk_agreement_mean": float(m["topk_agreement"].mean()),
        "drifted_windows": int(drifted.sum()),
        "drift_fraction": float(drifted.mean()),
    }
    passed = (
        summary["drift_fraction"] <= thresholds.max_drift_fraction
        and summary["topk_agreement_mean"] >= thresholds.min_topk_agreement
    )
    return {
        "reference": ref_label,
        "candidate": cand_label,
        "windows": total,
        "thresholds": asdict(thresholds),
        "summary": summary,
        "worst_windows": [
            {"index": int(i), **{key: float(m[key][i]) for key in m}, "drifted": bool(drifted[i])}
            for i in worst
        ],
        "passed": bool(passed),
    }


def main(args: Any) -> int:
    thresholds = Thresholds(
        args.min_cosine, args.max_abs_error, args.top_k, args.min_topk_agreement, args.max_drift_fraction
    )
    tty = sys.stderr.isatty()
    last = [0.0]

    def progress(msg: str) -> None:
        # On a terminal every batch on one line; in logs at most every 5 s.
        now = time.monotonic()
        if tty:
            print("\r" + msg, end="", file=sys.stderr, flush=True)
        elif now - last[0] >= 5:
            print(msg, file=sys.stderr, flush=True)
            last[0] = now

    try:
        if not args.reference.startswith("onnx:"):
            raise ParityInputError(f"--reference must be onnx:PATH, got {args.reference!r}")
        windows = load_windows(Path(args.windows))
        if args.limit:
            windows = windows[: args.limit]
        report = run_parity(
            args.reference, args.candidate, windows, thresholds, args.num_motifs, args.batch, progress
        )
    except ParityInputError as exc:
        print(f"hailo-sidecar parity: {exc}", file=sys.stderr)
        return 2
    if tty:
        print(file=sys.stderr)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    s, t = report["summary"], thresholds
    print(f"parity: {report['candidate']} against {report['reference']}, {report['windows']} windows")
    print(f"  cosine(latent)   min {s['cosine_min']:.5f}  p1 {s['cosine_p01']:.5f}  (>= {t.min_cosine})")
    print(
        f"  max abs error    max {s['max_abs_error']:.5f}  p99 {s['max_abs_error_p99']:.5f}"
        f"  (<= {t.max_abs_error})"
    )
    print(f"  top-{t.top_k} agreement  mean {s['topk_agreement_mean']:.3f}  (>= {t.min_topk_agreement})")
    print(
        f"  drifted windows  {s['drifted_windows']} ({s['drift_fraction']:.1%},"
        f" allowed {t.max_drift_fraction:.1%})"
    )
    print(f"parity: {'PASS' if report['passed'] else 'FAIL (drift)'}; report {args.report}")
    return 0 if report["passed"] else 1

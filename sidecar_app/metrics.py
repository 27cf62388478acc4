"""Prometheus metrics for one server process (a registry per app, so tests stay independent)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Dense from 0.5 ms to 50 ms (the p95 target), with one bucket exactly at 0.05.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02,
    0.025, 0.03, 0.035, 0.04, 0.045, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Every kind of backend failure the sidecar counts (the backends' and the release checks'; a
# failure of the fallback is FALLBACK_PREFIX + its kind), and the /infer answers the fleet's alerts
# count: exported at 0 from start-up, so the first one is an increase Prometheus sees (a series born
# at its first count shows no increase). Kept in step with the sources by
# tests/unit/test_monitoring.py.
ERROR_KINDS = (
    "checksum_mismatch", "contract", "dependency", "device_closed", "device_in_use", "device_missing",
    "device_node_missing", "device_unavailable", "driver_error", "driver_mismatch", "driver_missing",
    "driver_timeout", "firmware_mismatch", "golden", "hailort", "hailort_missing", "hef_arch",
    "hef_corrupted", "hef_invalid", "hef_not_supported", "internal_failure", "invalid_operation",
    "manifest", "model_invalid", "model_missing", "permission_denied", "pipeline_aborted", "pointer",
    "queue_full", "timeout", "unexpected",
)  # fmt: skip
FALLBACK_PREFIX = "fallback_"
INFER_ANSWERS = (("/infer", "200"), ("/infer", "500"), ("/infer", "503"),
                 ("/infer/batch", "200"), ("/infer/batch", "500"), ("/infer/batch", "503"))  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hailo_sidecar_requests", "HTTP requests by endpoint and status code",
            ["endpoint", "method", "code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "hailo_sidecar_request_duration_seconds", "HTTP request latency",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference = Histogram(
            "hailo_sidecar_inference_duration_seconds", "Backend inference time per call",
            ["mode"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "hailo_sidecar_batch_size", "Windows per inference call",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("hailo_sidecar_in_flight_requests", "HTTP requests being served", registry=r)
        self.ready = Gauge("hailo_sidecar_ready", "1 when a model is loaded and serving", registry=r)
        self.degraded = Gauge(
            "hailo_sidecar_degraded", "1 while the fallback serves (the configured mode cannot)", registry=r
        )
        self.unready_exits = Counter(
            "hailo_sidecar_unready_exits",
            "Exits because the device kept the sidecar unready (UNREADY_EXIT_S), counted across restarts",
            registry=r,
        )
        self.backend_errors = Counter(
            "hailo_sidecar_backend_errors", "Backend failures by kind", ["kind"], registry=r
        )
        # model_kind is the served file's kind (hef, onnx; stub serves no file); hef_sha256 is set
        # only when a HEF is served (empty otherwise, which Prometheus treats as absent).
        self.model_info = Gauge(
            "hailo_sidecar_model_info", "The model being served (value 1)",
            ["model_kind", "model_sha256", "hef_sha256", "config_version", "mode", "num_motifs"], registry=r,
        )  # fmt: skip

        # The Hailo device (hailo mode), read a few seconds apart off the request path.
        self.device_temperature = Gauge(
            "hailo_sidecar_device_temperature_celsius", "The Hailo device's chip temperature, by sensor",
            ["sensor"], registry=r,
        )  # fmt: skip
        self.device_up = Gauge(
            "hailo_sidecar_device_up",
            "1 while the Hailo device answers its control reads (hailo mode)",
            registry=r,
        )
        # HailoRT keeps every model a VDevice configured and the device takes 32 (hailo mode).
        self.core_ops = Gauge(
            "hailo_sidecar_device_core_ops",
            "Core ops (models) configured on the open VDevice, failed configures too; the device takes 32",
            registry=r,
        )
        self.device_reopens = Counter(
            "hailo_sidecar_device_reopens",
            "VDevice reopened for a release swap because it held the most models it can",
            registry=r,
        )
        # The release the host made current (RELEASE_POINTER) and the swap to it.
        self.release_info = Gauge(
            "hailo_sidecar_release_info", "The active release (value 1)",
            ["model", "version", "sha256", "config_version"], registry=r,
        )  # fmt: skip
        self.activated = Gauge(
            "hailo_sidecar_release_activated_timestamp_seconds", "When the active model became active",
            registry=r,
        )  # fmt: skip
        self.candidate_refused = Gauge(
            "hailo_sidecar_candidate_refused", "1 while the last release offered was refused", registry=r
        )
        self.swaps = Counter(
            "hailo_sidecar_release_swaps",
            "Release swaps by result (activated, refused)",
            ["result"],
            registry=r,
        )

        for kind in ERROR_KINDS:
            self.backend_errors.labels(kind)
            self.backend_errors.labels(FALLBACK_PREFIX + kind)
        for endpoint, code in INFER_ANSWERS:
            self.requests.labels(endpoint, "POST", code)
        self.latency.labels("/infer")

    def count_error(self, kind: str, *, fallback: bool = False) -> None:
        """One backend failure of KIND, of the fallback's backend when FALLBACK."""
        self.backend_errors.labels(FALLBACK_PREFIX + kind if fallback else kind).inc()

    def set_release(self, release: dict[str, object] | None, activated_at: float | None) -> None:
        self.release_info.clear()
        if release is not None:
            labels = [str(release.get(k) or "") for k in ("model", "version", "sha256", "config_version")]
            self.release_info.labels(*labels).set(1)
        self.activated.set(activated_at or 0)

    def set_candidate(self, candidate: dict[str, object] | None) -> None:
        self.candidate_refused.set(1 if candidate and candidate.get("state") == "refused" else 0)

    def set_model(self, kind: str, sha256: str, config_version: str, mode: str, num_motifs: int) -> None:
        self.model_info.clear()
        hef = sha256 if kind == "hef" else ""
        self.model_info.labels(kind, sha256, hef, config_version, mode, str(num_motifs)).set(1)

"""The model service: loads the configured backend, verifies the model checksum, serves
inference, and handles device failure (503, counted, reopened with backoff, optional fallback).

States reported by health: ok (the configured mode serves), degraded (the fallback serves),
unavailable (nothing serves; the reason says why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import __version__
from .backends import Backend, ModelInfo, create_backend
from .errors import DeviceError, ModelLoadError, NotReady
from .logs import log
from .metrics import Metrics
from .settings import Mode, Settings
from .versions import dist_version

Status = Literal["ok", "degraded", "unavailable"]
# Failures that retrying cannot fix: the sidecar stays unready until restarted with a fix.
_PERMANENT = {"checksum_mismatch", "contract"}


@dataclass
class Loaded:
    backend: Backend
    info: ModelInfo


class ModelService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        factory: Callable[[Mode, Settings], Backend] = create_backend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._factory = factory
        self._clock = clock
        self._primary: Loaded | None = None
        self._fallback: Loaded | None = None
        self.reason: str | None = "starting"
        self.error_kind: str | None = None
        self._retry_delay = 1.0
        self._next_retry = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self.started = time.time()

    # -- state -------------------------------------------------------------------------------
    @property
    def active(self) -> Loaded | None:
        return self._primary or self._fallback

    @property
    def status(self) -> Status:
        if self._primary:
            return "ok"
        return "degraded" if self._fallback else "unavailable"

    @property
    def ready(self) -> bool:
        return self.active is not None

    @property
    def retry_after(self) -> int:
        """Seconds until the next reopen attempt (30 when retrying cannot help)."""
        if self._next_retry == float("inf"):
            return 30
        return max(1, int(min(self._next_retry - self._clock(), 3600)))

    def _publish(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)
        active = self.active
        if active:
            self.metrics.set_model(
                active.info.kind, active.info.sha256, self.settings.config_version, active.info.mode,
                self.settings.num_motifs,
            )  # fmt: skip
        else:
            self.metrics.model_info.clear()

    # -- loading -----------------------------------------------------------------------------
    def _load(self, mode: Mode, expected_sha: str | None) -> Loaded:
        backend = self._factory(mode, self.settings)
        info = backend.load()
        if expected_sha and info.sha256 != expected_sha.lower():
            backend.close()
            raise ModelLoadError(
                "checksum_mismatch",
                f"model file {info.model_path} has sha256 {info.sha256}, but MODEL_SHA256 is "
                f"{expected_sha.lower()}: refusing to serve the wrong model",
            )
        return Loaded(backend, info)

    def _fail(self, kind: str, message: str) -> None:
        self.error_kind, self.reason = kind, message
        self.metrics.backend_errors.labels(kind).inc()
        if kind in _PERMANENT:
            self._next_retry = float("inf")
        else:
            self._next_retry = self._clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.settings.device_retry_max_s)

    def _try_primary(self) -> None:
        mode = self.settings.mode
        expected = self.settings.model_sha256 if mode != "stub" else None
        try:
            self._primary = self._load(mode, expected)
        except ModelLoadError as exc:
            self._fail(exc.kind, exc.message)
            log(40, "model load failed", mode=mode, kind=exc.kind, reason=exc.message)
            if self.settings.fallback_mode != "none" and exc.kind not in _PERMANENT:
                self._ensure_fallback()
        else:
            self.reason = self.error_kind = None
            self._retry_delay = 1.0
            if self._fallback:
                self._fallback.backend.close()
                self._fallback = None
            info = self._primary.info
            log(20, "model loaded", mode=mode, sha256=info.sha256, path=info.model_path,
                device=info.device, versions=info.versions)  # fmt: skip
        self._publish()

    def _ensure_fallback(self) -> None:
        if self._fallback:
            return
        mode: Mode = self.settings.fallback_mode  # type: ignore[assignment]
        try:
            self._fallback = self._load(mode, None)
            log(30, "serving the fallback (degraded)", fallback=mode, reason=self.reason)
        except ModelLoadError as exc:
            self.metrics.backend_errors.labels(f"fallback_{exc.kind}").inc()
            log(40, "fallback load failed", fallback=mode, reason=exc.message)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """One thread for every blocking backend call: calls are serialised on the device."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backend")
        return self._executor

    async def _run(self, fn: Callable[[], object], blocking: bool) -> object:
        if not blocking:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def start(self) -> None:
        self.reason = "starting"
        await self._run(self._try_primary, blocking=True)

    async def maybe_recover(self) -> None:
        """Reopens the configured backend when it is down and its backoff has passed."""
        if self._primary or self._clock() < self._next_retry:
            return
        async with self._lock:
            if self._primary or self._clock() < self._next_retry:
                return
            log(20, "reopening the backend", mode=self.settings.mode, previous=self.error_kind)
            await self._run(self._try_primary, blocking=True)

    # -- inference ---------------------------------------------------------------------------
    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, ModelInfo]:
        await self.maybe_recover()
        loaded = self.active
        if loaded is None:
            raise NotReady(f"model not ready: {self.reason}", retry_after=self.retry_after)
        backend = loaded.backend
        t0 = time.perf_counter()
        try:
            if backend.blocking:
                latent, motifs = await asyncio.get_running_loop().run_in_executor(
                    self.executor, backend.infer, x
                )
            else:
                latent, motifs = backend.infer(x)
        except DeviceError as exc:
            await self._on_device_error(loaded, exc)
            raise NotReady(f"inference failed: {exc.message}", retry_after=1) from None
        self.metrics.inference.labels(loaded.info.mode).observe(time.perf_counter() - t0)
        self.metrics.batch_size.observe(x.shape[0])
        return latent, motifs, loaded.info

    async def _on_device_error(self, loaded: Loaded, exc: DeviceError) -> None:
        log(40, "device failure", mode=loaded.info.mode, kind=exc.kind, reason=exc.message)
        if loaded is self._primary:
            self._primary = None
            self._retry_delay = 1.0
            self._fail(exc.kind, exc.message)
            await self._run(loaded.backend.close, blocking=True)
            if self.settings.fallback_mode != "none":
                await self._run(self._ensure_fallback, blocking=True)
        else:
            self._fallback = None
            self.metrics.backend_errors.labels(f"fallback_{exc.kind}").inc()
            await self._run(loaded.backend.close, blocking=True)
        self._publish()

    async def close(self) -> None:
        for loaded in (self._primary, self._fallback):
            if loaded:
                await self._run(loaded.backend.close, blocking=True)
        self._primary = self._fallback = None
        self.reason = "shut down"
        self._publish()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- reporting ---------------------------------------------------------------------------
    def health(self) -> dict[str, object]:
        active = self.active
        versions = {"sidecar": __version__, "hailort": dist_version("hailort") or "none"}
        if active:
            versions.update(active.info.versions)
        return {
            "status": self.status,
            "mode": self.settings.mode,
            "serving_mode": active.info.mode if active else None,
            "ready": self.ready,
            "reason": self.reason,
            "model_path": active.info.model_path if active else None,
            "model_kind": active.info.kind if active else None,
            "model_sha256": active.info.sha256 if active else None,
            # The handoff's name, kept for the case it names: a HEF is served.
            **({"hef_sha256": active.info.sha256} if active and active.info.kind == "hef" else {}),
            "expected_sha256": self.settings.model_sha256,
            "config_version": self.settings.config_version,
            "num_motifs": self.settings.num_motifs,
            "device": active.info.device if active else None,
            "versions": versions,
            "uptime_s": round(time.time() - self.started, 3),
        }

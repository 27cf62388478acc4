"""The model service: loads the configured backend, verifies the model checksum, serves
inference, and handles device failure (503, counted, reopened with backoff, optional fallback).

States reported by health: ok (the configured mode serves), degraded (the fallback serves),
unavailable (nothing serves; the reason says why).

Releases and the swap. With RELEASE_POINTER set, the model comes from the release the host made
current (the sidecar_stack role writes the pointer; only the host can, the network cannot). The
pointer is read at start and every RELEASE_POLL_S. A new release is loaded beside the one that
serves (a second ONNX Runtime session, a second model on the same VDevice, a second stub), checked
(its files against the signed manifest, the contract's shapes, its golden windows) and then made
active in one step on the event loop: requests that already took the old model finish on it (every
backend call runs on one thread, in order, and the old model is closed by a call queued after
them), new requests get the new one. A candidate that fails a check is closed and reported
(health's "candidate"); the old model keeps serving.

A VDevice never lets go of a model it configured (HailoRT's vdevice.cpp) and takes 32 at most
(vdma_device.cpp), so in hailo mode the swap that would configure a 33rd reopens the device
instead: its files are checked first (a release refused by them costs no outage), then on the
backend thread, after the requests already queued there, the old model and its VDevice are
released, a fresh VDevice configures the candidate and checks it, and when the candidate fails (a
device failure during its golden windows included), the old release is configured again. Requests
that arrive meanwhile wait (at most REOPEN_WAIT_S, then 503 with Retry-After) and are served by
whatever serves afterwards; the device holds no model and runs nothing during the reopen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from . import __version__
from .backends import Backend, ModelInfo, create_backend
from .errors import DeviceError, ModelLoadError, NotReady
from .logs import log
from .metrics import Metrics
from .release import Release, check_files, check_golden, read_manifest, read_pointer
from .settings import Mode, Settings
from .versions import dist_version

Status = Literal["ok", "degraded", "unavailable"]
# Failures that retrying cannot fix: the sidecar stays unready until restarted with a fix.
_PERMANENT = {"checksum_mismatch", "contract", "golden", "pointer", "manifest", "model_missing"}
_FILE_OF_MODE = {"stub": None, "onnx": "model.onnx", "hailo": "model.hef"}
#: How long a request waits for a device reopen (a swap on a full VDevice) before a 503.
REOPEN_WAIT_S = 30.0


@dataclass
class Loaded:
    backend: Backend
    info: ModelInfo
    release: Release | None = None


class ModelService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        factory: Callable[..., Backend] = create_backend,
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
        # The release swap (RELEASE_POINTER): the pointer as last seen, the candidate's state.
        self._pointer_seen: tuple[int, int, int] | None = None
        self.candidate: dict[str, object] | None = None
        self.last_swap_at: float | None = None
        self.activated_at: float | None = None
        # Set while the device is reopened for a swap: requests wait on it (at most reopen_wait_s).
        self._reopening: asyncio.Event | None = None
        self.reopen_wait_s = REOPEN_WAIT_S

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
    def release(self) -> Release | None:
        """The release the primary model came from (None: the model paths of the settings)."""
        return self._primary.release if self._primary else None

    @property
    def config_version(self) -> str:
        rel = self.release
        return rel.config_version if rel else self.settings.config_version

    @property
    def num_motifs(self) -> int:
        rel = self.release
        return rel.num_motifs if rel else self.settings.num_motifs

    @property
    def retry_after(self) -> int:
        """Seconds until the next reopen attempt (30 when retrying cannot help)."""
        if self._next_retry == float("inf"):
            return 30
        return max(1, int(min(self._next_retry - self._clock(), 3600)))

    def _publish(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)
        self.metrics.degraded.set(1 if self.status == "degraded" else 0)
        active = self.active
        if active:
            self.metrics.set_model(
                active.info.kind, active.info.sha256, self.config_version, active.info.mode, self.num_motifs,
            )  # fmt: skip
        else:
            self.metrics.model_info.clear()
        rel = self.release
        self.metrics.set_release(rel.public() if rel else None, self.activated_at)
        self.metrics.set_candidate(self.candidate)
        self.metrics.core_ops.set(getattr(active.backend, "core_ops", 0) if active else 0)

    # -- loading -----------------------------------------------------------------------------
    def _load(
        self,
        mode: Mode,
        expected_sha: str | None,
        release: Release | None = None,
        share: Backend | None = None,
    ) -> Loaded:
        manifest = None if release is None else self._check_release_files(mode, release)
        backend = self._factory(mode, self.settings, release, share)
        info = backend.load()
        if expected_sha and info.sha256 != expected_sha.lower():
            backend.close()
            raise ModelLoadError(
                "checksum_mismatch",
                f"model file {info.model_path} has sha256 {info.sha256}, but MODEL_SHA256 is "
                f"{expected_sha.lower()}: refusing to serve the wrong model",
            )
        if release is not None:
            try:
                figures = check_golden(backend, release, manifest)
            except ModelLoadError:
                backend.close()
                raise
            except DeviceError as exc:
                # The device failed while the golden windows ran: the candidate is refused (and
                # closed) as for any other failed check; what serves is the caller's to keep.
                backend.close()
                raise ModelLoadError(exc.kind, f"while checking the golden windows: {exc.message}") from None
            except Exception:
                backend.close()
                raise
            if figures:
                log(20, "golden windows reproduced", release=release.folder, **figures)
        return Loaded(backend, info, release)

    @staticmethod
    def _check_release_files(mode: Mode, release: Release) -> dict[str, Any] | None:
        """The checks of a release that need no device: the file this mode serves, and the files
        against the pointer and the signed manifest (check_files). Returns the manifest."""
        if release.file != _FILE_OF_MODE[mode]:
            raise ModelLoadError(
                "pointer",
                f"release {release.folder} serves {release.file}, but this sidecar runs {mode} mode "
                f"({_FILE_OF_MODE[mode] or 'no model file'})",
            )
        return check_files(release)

    @staticmethod
    def _unexpected(exc: Exception) -> ModelLoadError:
        """A failure no check names (a bug, or a library raising what it should not): the
        candidate is refused with it rather than left half loaded."""
        return ModelLoadError("unexpected", f"loading the release failed: {type(exc).__name__}: {exc}")

    def _serving_again(self) -> Loaded | None:
        """The primary serves (again): the error a failed request or load left is cleared, and a
        fallback loaded meanwhile is taken out of service. Returns it for the caller to close on the
        backend thread."""
        self.reason = self.error_kind = None
        self._retry_delay, self._next_retry = 1.0, 0.0
        fallback, self._fallback = self._fallback, None
        return fallback

    def _fail(self, kind: str, message: str) -> None:
        self.error_kind, self.reason = kind, message
        self.metrics.count_error(kind)
        if kind in _PERMANENT:
            self._next_retry = float("inf")
        else:
            self._next_retry = self._clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.settings.device_retry_max_s)

    def _pointer(self) -> Release | None:
        """The current release from RELEASE_POINTER (None when no pointer is configured)."""
        path = self.settings.release_pointer
        if path is None:
            return None
        with contextlib.suppress(OSError):
            st = path.stat()
            self._pointer_seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        return read_pointer(path)

    def _try_primary(self) -> None:
        mode = self.settings.mode
        expected = self.settings.model_sha256 if mode != "stub" else None
        try:
            release = self._pointer()
            if release is not None:
                expected = None  # the pointer and the signed manifest name the model
            self._primary = self._load(mode, expected, release)
            self.activated_at = time.time()
        except ModelLoadError as exc:
            self._fail(exc.kind, exc.message)
            log(40, "model load failed", mode=mode, kind=exc.kind, reason=exc.message)
            if self.settings.fallback_mode != "none" and exc.kind not in _PERMANENT:
                self._ensure_fallback()
        else:
            fallback = self._serving_again()
            if fallback is not None:
                fallback.backend.close()
            info = self._primary.info
            rel = self._primary.release
            log(20, "model loaded", mode=mode, sha256=info.sha256, path=info.model_path,
                device=info.device, versions=info.versions,
                release=rel.folder if rel else None)  # fmt: skip
        self._publish()

    def _ensure_fallback(self) -> None:
        # The primary may serve again by the time this runs (a reopen that completed after a
        # request failed on the old model): then no fallback.
        if self._fallback or self._primary:
            return
        mode: Mode = self.settings.fallback_mode  # type: ignore[assignment]
        try:
            self._fallback = self._load(mode, None, self._fallback_release(mode))
            log(30, "serving the fallback (degraded)", fallback=mode, reason=self.reason)
        except ModelLoadError as exc:
            self.metrics.count_error(exc.kind, fallback=True)
            log(40, "fallback load failed", fallback=mode, reason=exc.message)

    def _fallback_release(self, mode: Mode) -> Release | None:
        """With a release pointer, the fallback serves the same release's other file: its
        model.onnx (the ONNX the HEF was compiled from) or no file (stub)."""
        try:
            release = self._pointer()
        except ModelLoadError:
            return None
        if release is None or release.directory is None:
            return release
        if mode == "stub":
            return dataclasses.replace(release, folder=None, file=None, sha256=None)
        manifest = read_manifest(release.directory / "manifest.json")
        return dataclasses.replace(release, file="model.onnx", sha256=manifest.get("onnx_sha256"))

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

    # -- the release swap --------------------------------------------------------------------
    def pointer_changed(self) -> bool:
        path = self.settings.release_pointer
        if path is None:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size, st.st_ino) != self._pointer_seen

    async def check_pointer(self) -> None:
        """Swaps to the release the pointer names when it changed (RELEASE_POLL_S apart)."""
        if not self.pointer_changed():
            return
        async with self._lock:
            if not self.pointer_changed():
                return
            if self._primary is None:
                # Nothing serves: a plain (re)load of what the pointer names.
                self._next_retry = 0.0
                self._retry_delay = 1.0
                await self._run(self._try_primary, blocking=True)
                return
            try:
                release = self._pointer()
            except ModelLoadError as exc:
                self._refuse(None, exc)
                return
            current = self._primary.release
            if release is None or (current is not None and release.key == current.key):
                return
            await self._swap(release)

    def _refuse(self, release: Release | None, exc: ModelLoadError) -> None:
        self.candidate = {"release": release.public() if release else None, "state": "refused",
                          "kind": exc.kind, "reason": exc.message, "at": time.time()}  # fmt: skip
        self.metrics.swaps.labels("refused").inc()
        log(40, "release refused; the current one keeps serving",
            release=release.folder if release else None, kind=exc.kind, reason=exc.message)  # fmt: skip
        self._publish()

    async def _swap(self, release: Release) -> None:
        old = self._primary
        if old is None:  # check_pointer loads in place when nothing serves
            return
        self.candidate = {"release": release.public(), "state": "checking", "at": time.time()}
        self._publish()
        if getattr(old.backend, "device_full", False):
            await self._reopen_swap(old, release)
            return
        log(20, "loading a release beside the current one", release=release.folder,
            current=old.release.folder if old.release else None)  # fmt: skip
        t0 = time.perf_counter()
        try:
            new = cast(
                Loaded,
                await self._run(
                    lambda: self._load(self.settings.mode, None, release, old.backend), blocking=True
                ),
            )
        except ModelLoadError as exc:
            self._refuse(release, exc)
            return
        except Exception as exc:
            self._refuse(release, self._unexpected(exc))
            return
        # The switch: one step on the event loop. Calls already queued on the backend thread run
        # on the old model; the close below is queued after them.
        hand_over = getattr(new.backend, "take_device_from", None)
        if hand_over is not None:
            hand_over(old.backend)
        await self._activate(new, release, old, t0)
        await self._run(old.backend.close, blocking=True)

    async def _activate(self, new: Loaded, release: Release, old: Loaded, t0: float, **extra: object) -> None:
        """The switch (no await before the state is consistent): NEW serves, and what a request
        that failed on the old model meanwhile left behind (its error, a fallback) is cleared."""
        self._primary = new
        fallback = self._serving_again()
        self.activated_at = self.last_swap_at = time.time()
        self.candidate = {"release": release.public(), "state": "active", "at": self.last_swap_at,
                          "load_s": round(time.perf_counter() - t0, 3), **extra}  # fmt: skip
        self.metrics.swaps.labels("activated").inc()
        self._publish()
        log(20, "release active", release=release.folder, sha256=new.info.sha256,
            config_version=release.config_version, previous=old.release.folder if old.release else None,
            load_s=self.candidate["load_s"], **extra)  # fmt: skip
        if fallback is not None:
            await self._run(fallback.backend.close, blocking=True)

    async def _reopen_swap(self, old: Loaded, release: Release) -> None:
        """The swap on a VDevice that has no room for another model: the device is reopened on the
        backend thread while requests wait (see the module's docstring)."""
        log(20, "reopening the device for a release: its VDevice holds the most models it can",
            release=release.folder, current=old.release.folder if old.release else None,
            core_ops=getattr(old.backend, "core_ops", None))  # fmt: skip
        # What needs no device first (off the backend thread: requests keep being served): a
        # release refused by its files costs no outage.
        try:
            await asyncio.to_thread(self._check_release_files, self.settings.mode, release)
        except ModelLoadError as exc:
            self._refuse(release, exc)
            return
        gate = self._reopening = asyncio.Event()
        t0 = time.perf_counter()
        try:
            new, refused, lost = cast(
                tuple[Loaded | None, ModelLoadError | None, ModelLoadError | None],
                await self._run(lambda: self._reopen(old, release), blocking=True),
            )
            self.metrics.device_reopens.inc()
            if refused is None:  # then the candidate serves
                await self._activate(cast(Loaded, new), release, old, t0, device="reopened")
                return
            # The old release serves again on the fresh VDevice, or (lost) nothing does: the
            # backoff then retries what the pointer names, as after a restart.
            self._primary = new
            if new is not None:
                fallback = self._serving_again()
                if fallback is not None:
                    await self._run(fallback.backend.close, blocking=True)
            else:
                lost = cast(ModelLoadError, lost)
                self._fail(lost.kind, lost.message)
                log(40, "the old release did not load again on the reopened device", kind=lost.kind,
                    reason=lost.message)  # fmt: skip
                if self.settings.fallback_mode != "none":
                    await self._run(self._ensure_fallback, blocking=True)
            self._refuse(release, refused)
        finally:
            self._reopening = None
            gate.set()

    def _reopen(
        self, old: Loaded, release: Release
    ) -> tuple[Loaded | None, ModelLoadError | None, ModelLoadError | None]:
        """(what serves afterwards, why the candidate was refused, why the old release did not load
        again). Runs on the backend thread: the old model and its VDevice go first (one VDevice
        holds the device), then a fresh one takes the candidate, or the old release again."""
        mode = self.settings.mode
        old.backend.close()
        # Whatever the candidate raises, the old release is configured again (_load closes what it
        # opened when a check fails, a device failure during the golden windows included).
        try:
            return self._load(mode, None, release), None, None
        except ModelLoadError as exc:
            refused = exc
        except Exception as exc:
            refused = self._unexpected(exc)
        try:
            return self._load(mode, None, old.release), refused, None
        except ModelLoadError as exc:
            return None, refused, exc
        except Exception as exc:
            return None, refused, self._unexpected(exc)

    # -- the device, watched off the request path --------------------------------------------
    def read_device(self) -> None:
        """Reads the device's temperature into the metrics (hailo mode). Runs on a thread of its
        own: HailoRT's control reads do not wait for the inference thread, nor it for them."""
        loaded = self._primary
        reader = getattr(loaded.backend, "device_status", None) if loaded else None
        if reader is None:
            self.metrics.device_up.set(0)
            return
        try:
            temps = reader()
        except Exception as exc:  # a failed read is a reading too: the device did not answer
            self.metrics.device_up.set(0)
            log(30, "device status read failed", error=str(exc))
            return
        for sensor, value in temps.items():
            self.metrics.device_temperature.labels(sensor).set(value)
        self.metrics.device_up.set(1)

    # -- inference ---------------------------------------------------------------------------
    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, ModelInfo]:
        await self.maybe_recover()
        gate = self._reopening
        if gate is not None:
            try:
                await asyncio.wait_for(gate.wait(), self.reopen_wait_s)
            except TimeoutError:
                raise NotReady(
                    f"the device is being reopened for a new release (waited {self.reopen_wait_s:g} s)",
                    retry_after=1,
                ) from None
        # No await from here to the backend call's submission: a reopen queued later runs after it.
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
        elif loaded is self._fallback:
            self._fallback = None
            self.metrics.count_error(exc.kind, fallback=True)
            await self._run(loaded.backend.close, blocking=True)
        # else: a model no longer in service (swapped out, or closed by a reopen) failed a request
        # it had taken before: whoever retired it closes it; nothing that serves changes.
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
            "expected_sha256": (self.release.sha256 if self.release else self.settings.model_sha256),
            "config_version": self.config_version,
            "num_motifs": self.num_motifs,
            "release": self.release.public() if self.release else None,
            "activated_at": self.activated_at,
            "candidate": self.candidate,
            "last_swap_at": self.last_swap_at,
            "device": active.info.device if active else None,
            "versions": versions,
            "uptime_s": round(time.time() - self.started, 3),
        }

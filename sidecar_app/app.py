"""The HTTP app. Request path, top to bottom: check media type and size, parse, infer, respond.

Hot endpoints are plain Starlette routes (no per-request dependency injection) on one module-level
router; each reads what it serves from the application's state, which ``create_app`` builds: the
model service (with its settings and metrics), the unready watchdog and the OpenAPI document, the
hand-written contract in ``openapi.py``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, contract, shape
from .errors import BodyTooLarge, NotReady, SidecarError, UnsupportedMediaType
from .logs import log
from .metrics import Metrics
from .openapi import MODEL_NAME, build_openapi
from .service import ModelService
from .settings import Settings
from .watchdog import UnreadyWatchdog

_JSON = "application/json"
_BINARY = "application/octet-stream"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc, option=_NUMPY), status, headers, media_type=_JSON)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


class Observability:
    """Pure ASGI middleware: request id, in-flight gauge, latency, status counts, access log.

    Metrics are labelled by route template (``/v2/models/{name}``), unknown paths as "unmatched",
    so clients cannot grow the label set."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[str]) -> None:
        self.app = app
        self.metrics = metrics
        self._paths = {r for r in routes if "{" not in r}
        self._prefixes = [(r.split("{", 1)[0], r) for r in routes if "{" in r]

    def _label(self, path: str) -> str:
        if path in self._paths:
            return path
        for prefix, template in self._prefixes:
            if path.startswith(prefix):
                return template
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = ""
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                candidate = v.decode("latin-1")
                rid = candidate if _REQUEST_ID.match(candidate) else ""
                break
        rid = rid or uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            dt = time.perf_counter() - t0
            endpoint = self._label(scope["path"])
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(dt)
            log(20, "request", method=scope["method"], path=scope["path"], status=status,
                latency_ms=round(dt * 1000, 3), request_id=rid)  # fmt: skip


async def _read_body(request: Request, limit: int) -> bytes:
    """Reads at most ``limit`` bytes; a larger body is refused without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    raw = request.headers.get("content-type")
    if raw is None:
        return _JSON  # clients that send no type get the JSON contract
    media = raw.split(";", 1)[0].strip().lower()
    if media in (_JSON, _BINARY):
        return media
    raise UnsupportedMediaType(
        f"Content-Type {raw!r} is not supported: send {_JSON} or {_BINARY} (float32 LE)"
    )


def _service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


def _headers_for(info: Any) -> dict[str, str]:
    return {"x-infer-mode": info.mode, "x-model-sha256": info.sha256}


async def _read_windows(request: Request, single: bool) -> np.ndarray:
    max_batch = _service(request).settings.max_batch
    media = _media_type(request)
    body = await _read_body(request, contract.body_limit(1 if single else max_batch))
    if media == _BINARY:
        return contract.parse_binary(body, single=single, max_batch=max_batch)
    if single:
        return contract.parse_json_window(body)
    return contract.parse_json_batch(body, max_batch)


async def infer(request: Request) -> Response:
    latent, motifs, info = await _service(request).infer(await _read_windows(request, single=True))
    return json_response({"latent": latent[0], "motif_scores": motifs[0]}, headers=_headers_for(info))


async def infer_batch(request: Request) -> Response:
    latent, motifs, info = await _service(request).infer(await _read_windows(request, single=False))
    results = [{"latent": lat, "motif_scores": mot} for lat, mot in zip(latent, motifs, strict=True)]
    return json_response({"results": results}, headers=_headers_for(info))


async def healthz(request: Request) -> Response:
    svc = _service(request)
    await svc.maybe_recover()
    return json_response(svc.health())


async def readyz(request: Request) -> Response:
    svc = _service(request)
    await svc.maybe_recover()
    release = svc.release.public() if svc.release else None
    if svc.ready:
        return json_response({"ready": True, "status": svc.status, "release": release,
                              "candidate": svc.candidate})  # fmt: skip
    return json_response(
        {"ready": False, "status": svc.status, "reason": svc.reason, "candidate": svc.candidate}, 503,
        {"retry-after": str(svc.retry_after)},
    )  # fmt: skip


async def livez(_request: Request) -> Response:
    return json_response({"live": True})


async def oip_ready(request: Request) -> Response:
    ready = _service(request).ready
    return json_response({"ready": ready}, 200 if ready else 503)


async def oip_model(request: Request) -> Response:
    name = request.path_params["name"]
    if name != MODEL_NAME:
        return error_response(404, f"unknown model {name!r}; this server serves {MODEL_NAME!r}")
    svc = _service(request)
    active = svc.active
    return json_response({
        "name": MODEL_NAME,
        "versions": [svc.config_version],
        "platform": active.info.mode if active else svc.settings.mode,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [shape.WINDOW_LEN, shape.CHANNELS]}],
        "outputs": [
            {"name": "latent", "datatype": "FP32", "shape": [shape.LATENT_DIM]},
            {"name": "motif_scores", "datatype": "FP32", "shape": [svc.num_motifs]},
        ],
    })  # fmt: skip


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(_service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return json_response(request.app.state.openapi)


ROUTES = (
    ("/infer", infer, ["POST"]),
    ("/infer/batch", infer_batch, ["POST"]),
    ("/healthz", healthz, ["GET"]),
    ("/readyz", readyz, ["GET"]),
    ("/livez", livez, ["GET"]),
    ("/v2/health/live", livez, ["GET"]),
    ("/v2/health/ready", oip_ready, ["GET"]),
    ("/v2/models/{name}", oip_model, ["GET"]),
    ("/metrics", metrics_endpoint, ["GET"]),
    ("/openapi.json", openapi, ["GET"]),
)
router = APIRouter()
for _path, _endpoint, _methods in ROUTES:
    router.add_route(_path, _endpoint, methods=_methods, include_in_schema=False)


async def sidecar_error(_request: Request, exc: SidecarError) -> Response:
    headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, NotReady) else None
    return error_response(exc.status, exc.message, headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        msg = f"no such path {request.url.path}"
    elif exc.status_code == 405:
        msg = f"method {request.method} not allowed on {request.url.path}"
    else:
        msg = str(exc.detail)
    return error_response(exc.status_code, msg, dict(exc.headers or {}))


async def unexpected(request: Request, exc: Exception) -> Response:
    log(40, "unhandled error", path=request.url.path, error=repr(exc))
    return error_response(500, "internal error (see the sidecar log)")


async def _recover_loop(app: FastAPI) -> None:
    svc: ModelService = app.state.service
    watchdog: UnreadyWatchdog = app.state.watchdog
    while True:
        await asyncio.sleep(1.0)
        await svc.maybe_recover()
        if watchdog.expired(svc.ready, svc.error_kind):  # the unready exit (watchdog.py)
            app.state.exit_status = watchdog.exit(svc.error_kind, svc.reason)
            return


def _device_loop(svc: ModelService, stop: threading.Event) -> None:
    while not stop.wait(svc.settings.device_poll_s):
        svc.read_device()


async def _release_loop(svc: ModelService) -> None:
    if svc.settings.release_pointer is None:
        return
    while True:
        await asyncio.sleep(svc.settings.release_poll_s)
        try:
            await svc.check_pointer()
        except Exception as exc:  # the loop must survive anything a release does
            log(40, "release check failed", error=repr(exc))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc: ModelService = app.state.service
    settings = svc.settings
    log(20, "starting", version=__version__, config=settings.public())
    await svc.start()
    ticker = asyncio.create_task(_recover_loop(app))
    watcher = asyncio.create_task(_release_loop(svc))
    stop_device = threading.Event()
    device_reader = None
    if settings.mode == "hailo" and settings.device_poll_s > 0:
        device_reader = threading.Thread(target=_device_loop, args=(svc, stop_device), name="device-status",
                                         daemon=True)  # fmt: skip
        device_reader.start()
    try:
        yield
    finally:
        ticker.cancel()
        watcher.cancel()
        stop_device.set()
        if device_reader is not None:
            device_reader.join(timeout=settings.device_poll_s + 5)
        await svc.close()
        log(20, "stopped")


def create_app(settings: Settings) -> FastAPI:
    """The app for SETTINGS: its state (the model service, the watchdog, the OpenAPI document), the
    router's endpoints, the error handlers and the observability middleware."""
    # The router's routes themselves, not include_router: FastAPI 0.163 includes a router as one
    # route that matches through it: a quarter more time per /livez request (measured here).
    app = FastAPI(
        title="hailo-sidecar", version=__version__, lifespan=lifespan, openapi_url=None,
        redoc_url=None, docs_url=None, routes=list(router.routes),
        exception_handlers={SidecarError: sidecar_error, StarletteHTTPException: http_error,
                            Exception: unexpected},
    )  # fmt: skip
    metrics = Metrics()
    app.state.service = ModelService(settings, metrics)
    app.state.watchdog = UnreadyWatchdog(
        settings.unready_exit_s if settings.mode == "hailo" else 0, settings.state_dir
    )
    metrics.unready_exits.inc(app.state.watchdog.counts.total)
    app.state.openapi = build_openapi(settings)
    app.add_middleware(Observability, metrics=metrics, routes=[route[0] for route in ROUTES])
    return app

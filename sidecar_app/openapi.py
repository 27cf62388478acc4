"""The contract as an OpenAPI 3.0.3 document: served at /openapi.json, exported to
docs/openapi.json by ``hailo-sidecar openapi``, and the schema schemathesis tests against."""

from __future__ import annotations

from typing import Any

from . import __version__
from .contract import WINDOW_BYTES
from .settings import Settings
from .shape import CHANNELS, LATENT_DIM, WINDOW_LEN

MODEL_NAME = "imu-encoder"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    m = settings.num_motifs
    max_batch = settings.max_batch
    number = {"type": "number"}
    row = {"type": "array", "items": number, "minItems": CHANNELS, "maxItems": CHANNELS}
    window = {
        "type": "array", "items": row, "minItems": WINDOW_LEN, "maxItems": WINDOW_LEN,
        "description": f"{WINDOW_LEN} time steps x {CHANNELS} channels, finite numbers",
    }  # fmt: skip
    floats = {"type": "number"}
    result = {
        "type": "object",
        "required": ["latent", "motif_scores"],
        "properties": {
            "latent": {"type": "array", "items": floats, "minItems": LATENT_DIM, "maxItems": LATENT_DIM},
            "motif_scores": {
                "type": "array", "minItems": m, "maxItems": m,
                "items": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    }  # fmt: skip
    infer_errors = {
        "400": _error("Malformed JSON"),
        "413": _error("Body over the limit (64 KiB per window)"),
        "415": _error("Content-Type other than application/json or application/octet-stream"),
        "422": _error("Valid JSON that breaks the contract; the message names the place"),
        "503": {
            **_error("Model not ready or device failed; retry after Retry-After seconds"),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }
    binary = {
        "schema": {"type": "string", "format": "binary"},
        "x-description": f"raw little-endian float32, row-major, {WINDOW_BYTES} bytes per window",
    }
    response_headers = {
        "X-Infer-Mode": {"schema": {"type": "string", "enum": ["stub", "onnx", "hailo"]}},
        "X-Model-SHA256": {"schema": {"type": "string"}},
        "X-Request-ID": {"schema": {"type": "string"}},
    }
    health_props = {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "mode": {"type": "string"},
        "serving_mode": {"type": "string", "nullable": True},
        "ready": {"type": "boolean"},
        "reason": {"type": "string", "nullable": True},
        "model_path": {"type": "string", "nullable": True},
        "model_kind": {"type": "string", "enum": ["hef", "onnx", "stub"], "nullable": True},
        "model_sha256": {"type": "string", "nullable": True},
        "hef_sha256": {"type": "string", "x-description": "only while a HEF is served (model_sha256 then)"},
        "expected_sha256": {"type": "string", "nullable": True},
        "config_version": {"type": "string"},
        "num_motifs": {"type": "integer"},
        "device": {"type": "string", "nullable": True},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "uptime_s": {"type": "number"},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hailo-sidecar",
            "version": __version__,
            "description": "EdgeInfer's inference sidecar: one IMU window (100x9) in, latent (64) "
            "and motif scores out. See docs/contract.md.",
        },
        "paths": {
            "/infer": {
                "post": {
                    "operationId": "infer",
                    "summary": "Infer one window",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                            "application/octet-stream": binary,
                        },
                    },
                    "responses": {
                        "200": {**_json("InferResponse"), "headers": response_headers},
                        **infer_errors,
                    },
                }
            },
            "/infer/batch": {
                "post": {
                    "operationId": "inferBatch",
                    "summary": f"Infer 1..{max_batch} windows (MAX_BATCH), results in request order",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
                            "application/octet-stream": binary,
                        },
                    },
                    "responses": {
                        "200": {**_json("BatchResponse"), "headers": response_headers},
                        **infer_errors,
                    },
                }
            },
            "/healthz": {"get": {"operationId": "health", "responses": {"200": _json("Health")}}},
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "responses": {"200": _json("Ready"), "503": _json("Ready", "Not ready")},
                }
            },
            "/livez": {"get": {"operationId": "live", "responses": {"200": _json("Live")}}},
            "/v2/health/live": {"get": {"operationId": "oipLive", "responses": {"200": _json("Live")}}},
            "/v2/health/ready": {
                "get": {
                    "operationId": "oipReady",
                    "responses": {"200": _json("OipReady"), "503": _json("OipReady", "Not ready")},
                }
            },
            "/v2/models/{name}": {
                "get": {
                    "operationId": "oipModel",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json("ModelMetadata"), "404": _error("Unknown model")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "InferRequest": {
                    "type": "object", "required": ["x"], "properties": {"x": window},
                    "additionalProperties": True,
                },
                "BatchRequest": {
                    "type": "object", "required": ["windows"],
                    "properties": {
                        "windows": {"type": "array", "items": window, "minItems": 1, "maxItems": max_batch}
                    },
                },
                "InferResponse": result,
                "BatchResponse": {
                    "type": "object", "required": ["results"],
                    "properties": {"results": {"type": "array", "items": result}},
                },
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "mode", "ready", "model_kind", "model_sha256", "config_version"],
                    "properties": health_props,
                },
                "Ready": {
                    "type": "object", "required": ["ready", "status"],
                    "properties": {
                        "ready": {"type": "boolean"}, "status": {"type": "string"},
                        "reason": {"type": "string", "nullable": True},
                    },
                },
                "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
                "OipReady": {
                    "type": "object", "required": ["ready"],
                    "properties": {"ready": {"type": "boolean"}},
                },
                "ModelMetadata": {
                    "type": "object", "required": ["name", "platform", "inputs", "outputs"],
                    "properties": {
                        "name": {"type": "string"},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                        "inputs": {"type": "array", "items": {"type": "object"}},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                },
            }
        },
    }  # fmt: skip

"""All configuration, from environment variables, in one pydantic-settings class.

The class is the one source of every setting's name, default and bounds: ``table()`` gives them as
data, which the sidecar_stack role ships as files/sidecar-settings.json (`make settings` writes
it; tests/unit/test_settings_bounds.py fails when the two differ) and checks in its preflight, so
a value the sidecar would refuse at start stops the play before any change."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["stub", "onnx", "hailo"]
FallbackMode = Literal["none", "onnx", "stub"]
# DEVICE_POLL_S and UNREADY_EXIT_S: 0 turns them off, any other value is at least 0.01 s (a loop
# that waits 1e-9 s spins on the CPU); table() gives both as the setting's "off" and "ge".
_OFF, _AT_LEAST = 0.0, 0.01


class ConfigError(Exception):
    """A setting is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    """Environment names are the field names in upper case (INFER_MODE, HEF_PATH, ...)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    infer_mode: Mode | None = Field(None, description="stub | onnx | hailo; unset: decided by USE_REAL_MODEL")
    use_real_model: bool | None = Field(
        None, description="the handoff's flag: true means hailo, false means stub"
    )
    hef_path: Path = Field(Path("/models/model.hef"), description="HEF file for hailo mode")
    onnx_path: Path = Field(Path("/models/model.onnx"), description="ONNX file for onnx mode")
    manifest_path: Path | None = Field(
        None,
        description="the release's manifest.json; unset: manifest.json beside the model file, if any",
    )
    release_pointer: Path | None = Field(
        None,
        description="the release the host made current (JSON written by the sidecar_stack role, e.g. "
        "/models/current.json); set, the model, its sha256 and the config version come from it, and a "
        "new release is swapped in without a restart",
    )
    # Polls and waits at least 0.01 s apart: 1e-300 passes gt=0 and makes a loop spin on the CPU.
    release_poll_s: float = Field(1.0, ge=0.01, le=60, description="how often RELEASE_POINTER is read")
    device_poll_s: float = Field(
        5.0,
        le=3600,
        json_schema_extra={"off": _OFF, "ge": _AT_LEAST},
        description="how often the Hailo device's temperature is read (hailo mode; 0: never)",
    )
    hailo_device: Path = Field(
        Path("/dev/hailo0"),
        description="the device node, for the access check when HailoRT cannot open it (hailo mode)",
    )
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="expected sha256 of the model file; a mismatch keeps the sidecar unready",
    )
    num_motifs: int = Field(12, ge=1, le=1024, description="length of motif_scores")
    config_version: str = Field(
        "unversioned", min_length=1, max_length=128, description="reported in health and metrics"
    )
    fallback_mode: FallbackMode = Field(
        "none", description="served (degraded) when the hailo device cannot be opened"
    )
    host: str = Field("127.0.0.1", min_length=1, description="listen address")
    port: int = Field(9000, ge=1, le=65535, description="listen port")
    max_batch: int = Field(64, ge=1, le=4096, description="largest /infer/batch request")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="lowest level logged")
    log_format: Literal["json", "console"] = Field("json", description="one JSON object per line, or console")
    device_retry_max_s: float = Field(
        30.0, ge=0.01, le=3600, description="upper bound of the device reopen backoff"
    )
    unready_exit_s: float = Field(
        300.0,
        le=86400,
        json_schema_extra={"off": _OFF, "ge": _AT_LEAST},
        description="hailo mode: seconds the sidecar may stay unready because of the device before it "
        "exits (status 3) for the restart policy to start a fresh process that opens the device again; "
        "doubled after each such exit in a row, up to an hour (0: never exit)",
    )
    state_dir: Path | None = Field(
        None,
        description="a writable folder kept across restarts (the stack mounts one): the count of unready "
        "exits and their backoff; unset, each process starts from none",
    )

    @field_validator("release_pointer", "model_sha256", "manifest_path", "state_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes an unset variable as "" (RELEASE_POINTER: ${RELEASE_POINTER:-}).
        return None if value == "" else value

    @field_validator("device_poll_s", "unready_exit_s")
    @classmethod
    def _off_or_at_least(cls, value: float) -> float:
        if value != _OFF and not value >= _AT_LEAST:  # `not >=`: NaN is refused too
            raise ValueError(f"Input should be {_OFF:g} (off) or greater than or equal to {_AT_LEAST:g}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.infer_mode is not None and self.use_real_model is not None:
            real = self.infer_mode != "stub"
            if real != self.use_real_model:
                raise ValueError(
                    f"INFER_MODE={self.infer_mode} conflicts with "
                    f"USE_REAL_MODEL={str(self.use_real_model).lower()}: set only one of them"
                )
        if self.fallback_mode != "none" and self.fallback_mode == self.mode:
            raise ValueError(f"FALLBACK_MODE={self.fallback_mode} equals the mode itself")
        return self

    @property
    def mode(self) -> Mode:
        if self.infer_mode is not None:
            return self.infer_mode
        return "hailo" if self.use_real_model else "stub"

    @property
    def model_path(self) -> Path | None:
        return {"stub": None, "onnx": self.onnx_path, "hailo": self.hef_path}[self.mode]

    def manifest_for(self, model: Path) -> Path | None:
        """The release manifest that describes MODEL: MANIFEST_PATH, or one beside the file."""
        if self.manifest_path is not None:
            return self.manifest_path
        beside = model.parent / "manifest.json"
        return beside if beside.is_file() else None

    def public(self) -> dict[str, object]:
        """The effective configuration for the start-up log (nothing secret lives here)."""
        data = self.model_dump(mode="json")
        data["mode"] = self.mode
        return data


def load_settings(**overrides: object) -> Settings:
    """Reads the environment; raises ConfigError naming the variable(s) at fault."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]).upper() if loc else "configuration"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if loc else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


# The constraints pydantic keeps in a field's metadata (annotated_types' Ge, Gt, ..., its own pattern).
_BOUNDS = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")


def _kind(annotation: Any) -> tuple[str, list[object] | None]:
    """(type name, choices) of a field's annotation, None left out of an Optional."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if typing.get_origin(annotation) is Literal:
        return "str", list(args)
    return {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}[annotation], None


def table() -> dict[str, dict[str, object]]:
    """Every setting by its environment name: type, default, bounds (ge, gt, le, lt, min_length,
    max_length, pattern, choices) and description, as JSON-ready data."""
    out: dict[str, dict[str, object]] = {}
    for name, field in Settings.model_fields.items():
        kind, choices = _kind(field.annotation)
        default = field.default
        entry: dict[str, object] = {
            "type": kind, "default": str(default) if isinstance(default, Path) else default,
        }  # fmt: skip
        if choices is not None:
            entry["choices"] = choices
        for meta in field.metadata:
            entry.update({key: getattr(meta, key) for key in _BOUNDS if getattr(meta, key, None) is not None})
        if isinstance(field.json_schema_extra, dict):  # "off" and its lower bound (_off_or_at_least)
            entry.update(field.json_schema_extra)
        entry["description"] = field.description or ""
        out[name.upper()] = entry
    return out

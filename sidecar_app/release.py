"""Releases as the sidecar sees them: the manifest hailo-compile wrote (signed on GPUSrv, verified
on the Pi by the sidecar_stack role), the pointer the role writes to make a release current, and
the golden windows a model must reproduce before it is served."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import Backend, file_sha256
from .errors import ModelLoadError
from .shape import CHANNELS, LATENT_DIM, WINDOW_LEN

#: The parity thresholds (hailo-sidecar parity's defaults): the golden windows must meet them.
MIN_COSINE = 0.99
MAX_ABS_ERROR = 0.05
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(
            "manifest", f"the release manifest {path} does not exist (MANIFEST_PATH)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError("manifest", f"cannot read the release manifest {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError("manifest", f"the release manifest {path} is not a JSON object")
    return data


def hef_input_shape(manifest: dict[str, Any]) -> list[int] | None:
    """The input shape the compiler parsed, as HailoRT reports it ([H, W, C]); None in manifests
    written before hailo-compile recorded it."""
    shape = (manifest.get("input") or {}).get("hef_shape")
    return [int(d) for d in shape] if isinstance(shape, list) else None


@dataclass(frozen=True)
class Release:
    """The release the host made current (RELEASE_POINTER, written by the sidecar_stack role):
    a folder under the pointer's own folder, the file to serve in it and what to report."""

    folder: str | None  # None: no model (stub mode)
    file: str | None
    sha256: str | None
    config_version: str
    num_motifs: int
    model: str | None = None
    version: str | None = None
    root: Path = Path("/models")

    @property
    def directory(self) -> Path | None:
        return self.root / self.folder if self.folder else None

    @property
    def model_path(self) -> Path | None:
        d = self.directory
        return d / self.file if d is not None and self.file else None

    @property
    def key(self) -> tuple[object, ...]:
        return (self.folder, self.file, self.sha256, self.config_version, self.num_motifs)

    def public(self) -> dict[str, object]:
        return {"folder": self.folder, "model": self.model, "version": self.version, "file": self.file,
                "sha256": self.sha256, "config_version": self.config_version}  # fmt: skip


def read_pointer(path: Path) -> Release:
    """Reads RELEASE_POINTER; ModelLoadError("pointer") names what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError("pointer", f"no release pointer at {path} (RELEASE_POINTER)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError("pointer", f"cannot read the release pointer {path}: {exc}") from None
    problems = []
    if not isinstance(data, dict):
        raise ModelLoadError("pointer", f"the release pointer {path} is not a JSON object")
    folder, file, sha = data.get("folder"), data.get("file"), data.get("sha256")
    if folder is not None and (not isinstance(folder, str) or not _NAME.match(folder)):
        problems.append(f"folder {folder!r} is not a folder name")
    if file is not None and file not in ("model.hef", "model.onnx"):
        problems.append(f"file {file!r} is not model.hef or model.onnx")
    if (folder is None) != (file is None):
        problems.append("folder and file go together")
    if file is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        problems.append(f"sha256 {sha!r} is not 64 lower-case hex digits")
    config, motifs = data.get("config_version"), data.get("num_motifs", 12)
    if not isinstance(config, str) or not 1 <= len(config) <= 128:
        problems.append("config_version must be 1 to 128 characters")
    if not isinstance(motifs, int) or not 1 <= motifs <= 1024:
        problems.append("num_motifs must be an integer from 1 to 1024")
    if problems:
        raise ModelLoadError("pointer", f"the release pointer {path} is invalid: " + "; ".join(problems))
    model, version = data.get("model"), data.get("version")
    return Release(folder, file, sha, str(config), motifs, model, version, path.parent)


def check_files(release: Release) -> dict[str, Any] | None:
    """The served file against the pointer and the release's manifest (the one the role verified
    by its signature): a file changed after deployment is refused. Returns the manifest."""
    path = release.model_path
    if path is None or release.directory is None:
        return None
    if not path.is_file():
        raise ModelLoadError("model_missing", f"release {release.folder} has no {release.file}")
    manifest = read_manifest(release.directory / "manifest.json")
    key = "hef_sha256" if release.file == "model.hef" else "onnx_sha256"
    actual = file_sha256(path)
    for what, expected in (
        ("the release pointer", release.sha256),
        ("the release's manifest", manifest.get(key)),
    ):
        if actual != expected:
            raise ModelLoadError(
                "checksum_mismatch",
                f"{path} has sha256 {actual}, but {what} says {expected}: refusing to serve a "
                "model that is not the signed release's",
            )
    return manifest


def check_golden(
    backend: Backend, release: Release, manifest: dict[str, Any] | None
) -> dict[str, float] | None:
    """Runs BACKEND on the release's golden windows and compares with the reference outputs.
    Returns the figures; raises ModelLoadError("golden") when they miss the parity thresholds, or
    when the manifest's golden entry is not what hef_compile writes (the rule the sidecar_stack
    role's verifier applies too: an object, file golden.json, a sha256 of 64 lower-case hex).
    None: the release carries no golden windows (releases made before they existed)."""
    if release.directory is None or "golden" not in (manifest or {}):
        return None
    gold = (manifest or {})["golden"]
    if not isinstance(gold, dict):
        raise ModelLoadError(
            "golden", "the release's manifest is refused: golden must be an object (file, sha256)"
        )
    if gold.get("file", "golden.json") != "golden.json":
        raise ModelLoadError("golden", f"the release's manifest is refused: golden.file must be golden.json "
                             f"(got {gold.get('file')!r})")  # fmt: skip
    if not (isinstance(gold.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", gold["sha256"])):
        raise ModelLoadError("golden", "the release's manifest is refused: golden.sha256 must be 64 "
                             f"lower-case hex digits (got {gold.get('sha256')!r})")  # fmt: skip
    path = release.directory / "golden.json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError("golden", f"cannot read the golden windows {path}: {exc}") from None
    if hashlib.sha256(raw).hexdigest() != gold.get("sha256"):
        raise ModelLoadError("golden", f"{path} does not match the release's manifest (golden sha256)")
    data = json.loads(raw)
    windows = np.asarray(data["windows"], np.float32)
    want_latent = np.asarray(data["latent"], np.float32)
    want_motifs = np.asarray(data["motif_scores"], np.float32)
    if windows.ndim != 3 or windows.shape[1:] != (WINDOW_LEN, CHANNELS):
        raise ModelLoadError("golden", f"{path}: windows are {windows.shape}, not (N, 100, 9)")
    latent, motifs = backend.infer(windows)
    if latent.shape != (len(windows), LATENT_DIM) or motifs.shape != want_motifs.shape:
        raise ModelLoadError(
            "contract",
            f"the model's outputs are latent {latent.shape}, motif_scores {motifs.shape}; the golden "
            f"windows expect {want_latent.shape}, {want_motifs.shape}",
        )
    norms = np.linalg.norm(latent, axis=1) * np.linalg.norm(want_latent, axis=1)
    cosine = float(np.min(np.where(norms > 0, (latent * want_latent).sum(1) / np.maximum(norms, 1e-12), 0.0)))
    error = float(max(np.abs(latent - want_latent).max(), np.abs(motifs - want_motifs).max()))
    figures = {
        "windows": float(len(windows)),
        "cosine_min": round(cosine, 6),
        "max_abs_error": round(error, 6),
    }
    if cosine < MIN_COSINE or error > MAX_ABS_ERROR:
        raise ModelLoadError(
            "golden",
            f"the model does not reproduce the release's {len(windows)} golden windows: cosine "
            f"{cosine:.4f} (at least {MIN_COSINE}), max abs error {error:.4f} (at most {MAX_ABS_ERROR})",
        )
    return figures

"""The backend interface every mode implements: load, infer, close, describe."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded backend reports about its model and device."""

    mode: str
    #: The served file's kind: "hef", "onnx" or "stub" (no file).
    kind: str
    model_path: str | None
    sha256: str
    device: str
    versions: dict[str, str] = field(default_factory=dict)
    #: The model input's shape as the runtime reports it (hailo: [H, W, C] without a batch axis).
    input_shape: list[int] | None = None
    #: Frames the device queue holds (hailo); None where there is no queue.
    async_queue_size: int | None = None


class Backend(Protocol):
    mode: str
    kind: str
    #: True when infer() blocks on I/O or a device: the app then runs it off the event loop.
    blocking: bool

    def load(self) -> ModelInfo:
        """Opens the model (and device); raises ModelLoadError with an actionable message."""

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x: float32 (N, 100, 9) -> (latent float32 (N, 64), motif_scores float32 (N, M)).

        Raises DeviceError when the device fails; the caller then closes and reopens."""

    def close(self) -> None:
        """Releases the model (and the device)."""


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

"""Stub mode: a deterministic stand-in for the model, for contract tests without hardware.

Outputs are a fixed random projection of the window: the same window always gives the same
output, different windows give different outputs, latent is in (-1, 1) and motif scores in
(0, 1). It is labelled "stub" in health, metrics and response headers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..shape import LATENT_DIM, WINDOW_VALUES
from .base import ModelInfo

_SEED = 20250831


class StubBackend:
    mode = "stub"
    kind = "stub"
    blocking = False

    def __init__(self, num_motifs: int) -> None:
        rng = np.random.default_rng(_SEED)
        scale = 1.0 / np.sqrt(WINDOW_VALUES)
        self._w_latent = (rng.standard_normal((WINDOW_VALUES, LATENT_DIM)) * scale).astype(np.float32)
        self._w_motif = (rng.standard_normal((LATENT_DIM, num_motifs)) * 2.0).astype(np.float32)
        self._num_motifs = num_motifs

    def load(self) -> ModelInfo:
        digest = hashlib.sha256(self._w_latent.tobytes() + self._w_motif.tobytes()).hexdigest()
        return ModelInfo(mode="stub", kind="stub", model_path=None, sha256=digest, device="none (stub)")

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = x.reshape(x.shape[0], WINDOW_VALUES)
        latent = np.tanh(flat @ self._w_latent)
        motifs = 1.0 / (1.0 + np.exp(-(latent @ self._w_motif)))
        return latent.astype(np.float32, copy=False), motifs.astype(np.float32, copy=False)

    def close(self) -> None:
        return None

"""ONNX mode: onnxruntime on the CPU, the model checked against the contract when it loads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..shape import CHANNELS, LATENT_DIM, WINDOW_LEN
from .base import ModelInfo


def _dims(shape: list[Any]) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in shape]


class OnnxBackend:
    mode = "onnx"
    kind = "onnx"
    blocking = False

    def __init__(self, path: Path, num_motifs: int, threads: int = 1) -> None:
        self._path = path
        self._num_motifs = num_motifs
        self._threads = threads
        self._session: Any = None
        self._input = ""
        self._fixed_batch: int | None = None

    def load(self) -> ModelInfo:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the image always has it
            raise ModelLoadError("dependency", f"onnx mode needs onnxruntime: {exc}") from None
        if not self._path.is_file():
            raise ModelLoadError("model_missing", f"ONNX model not found at {self._path} (ONNX_PATH)")
        # One read: the bytes that are hashed are the bytes that are loaded, so the reported (and
        # MODEL_SHA256-checked) sha256 is that of the model actually served.
        model_bytes = self._path.read_bytes()
        sha = hashlib.sha256(model_bytes).hexdigest()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own hierarchy for bad files
            raise ModelLoadError("model_invalid", f"cannot load ONNX model {self._path}: {exc}") from None
        self._check(session)
        self._session = session
        return ModelInfo(
            mode="onnx",
            kind="onnx",
            model_path=str(self._path),
            sha256=sha,
            device="cpu",
            versions={"onnxruntime": ort.__version__},
        )

    def _check(self, session: Any) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError("contract", f"model has {len(inputs)} inputs, expected 1")
        inp = inputs[0]
        dims = _dims(inp.shape)
        if len(dims) != 3 or dims[1:] != [WINDOW_LEN, CHANNELS] or inp.type != "tensor(float)":
            raise ModelLoadError(
                "contract",
                f"model input {inp.name} is {inp.type} {inp.shape}, expected float [N, 100, 9]",
            )
        self._input = inp.name
        self._fixed_batch = dims[0]
        outputs = {o.name: _dims(o.shape) for o in session.get_outputs()}
        want = {"latent": LATENT_DIM, "motif_scores": self._num_motifs}
        for name, size in want.items():
            if name not in outputs:
                raise ModelLoadError("contract", f"model has no output {name!r} (outputs: {sorted(outputs)})")
            if len(outputs[name]) != 2 or outputs[name][1] != size:
                raise ModelLoadError(
                    "contract",
                    f"model output {name} has shape {outputs[name]}, expected [N, {size}]"
                    + (" (NUM_MOTIFS)" if name == "motif_scores" else ""),
                )

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._fixed_batch not in (None, x.shape[0]):
            parts = [self.infer(x[i : i + 1]) for i in range(x.shape[0])]
            return (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
            )
        latent, motifs = self._session.run(["latent", "motif_scores"], {self._input: x})
        return latent.astype(np.float32, copy=False), motifs.astype(np.float32, copy=False)

    def close(self) -> None:
        self._session = None

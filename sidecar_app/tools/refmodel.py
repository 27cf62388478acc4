"""The project's reference model and calibration data, built without PyTorch.

``reference_model`` writes a small deterministic encoder as ONNX: input ``x`` float32
[N, 100, 9] -> ``latent`` [N, 64] (tanh) and ``motif_scores`` [N, M] (sigmoid). It is the demo
model served in onnx mode and the compile input for the DFC. ``calibration_set`` writes
IMU-like windows in the layout the compiler expects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..shape import CHANNELS, LATENT_DIM, WINDOW_LEN, WINDOW_VALUES

HIDDEN = 128
OPSET = 17


def reference_model(
    out: Path, num_motifs: int = 12, seed: int = 7, perturb: float = 0.0, nchw: bool = False
) -> Path:
    """Writes the encoder; ``perturb`` > 0 adds noise of that scale to the weights (parity tests).
    ``nchw``: the input is [N, 1, 100, 9] (an image-like layout, which the DFC parses as NCHW)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(shape: tuple[int, ...], scale: float) -> np.ndarray:
        w = rng.standard_normal(shape) * scale
        if perturb:
            w = w + np.random.default_rng(seed + 1).standard_normal(shape) * perturb * scale
        return w.astype(np.float32)

    inits = [
        numpy_helper.from_array(np.array([-1, WINDOW_VALUES], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(weight((WINDOW_VALUES, HIDDEN), 1 / np.sqrt(WINDOW_VALUES)), "w1"),
        numpy_helper.from_array(weight((HIDDEN,), 0.1), "b1"),
        numpy_helper.from_array(weight((HIDDEN, LATENT_DIM), 1 / np.sqrt(HIDDEN)), "w2"),
        numpy_helper.from_array(weight((LATENT_DIM,), 0.1), "b2"),
        numpy_helper.from_array(weight((LATENT_DIM, num_motifs), 1.0), "w3"),
        numpy_helper.from_array(weight((num_motifs,), 0.1), "b3"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["z2"]),
        helper.make_node("Tanh", ["z2"], ["latent"]),
        helper.make_node("Gemm", ["latent", "w3", "b3"], ["z3"]),
        helper.make_node("Sigmoid", ["z3"], ["motif_scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "imu_encoder",
        [
            helper.make_tensor_value_info(
                "x",
                TensorProto.FLOAT,
                ["N", 1, WINDOW_LEN, CHANNELS] if nchw else ["N", WINDOW_LEN, CHANNELS],
            )
        ],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", LATENT_DIM]),
            helper.make_tensor_value_info("motif_scores", TensorProto.FLOAT, ["N", num_motifs]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hailo-sidecar"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Deterministic bytes: the same arguments always give the same file (and sha256).
    out.write_bytes(model.SerializeToString(deterministic=True))
    return out


def sample_windows(n: int, seed: int = 11) -> np.ndarray:
    """IMU-like windows (N, 100, 9): accelerometer, gyroscope and magnetometer-ish signals."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, WINDOW_LEN, dtype=np.float32)
    freq = rng.uniform(0.5, 4.0, size=(n, 1, CHANNELS)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, CHANNELS)).astype(np.float32)
    amp = rng.uniform(0.2, 2.0, size=(n, 1, CHANNELS)).astype(np.float32)
    signal = amp * np.sin(freq * t[None, :, None] + phase)
    noise = rng.standard_normal((n, WINDOW_LEN, CHANNELS)).astype(np.float32) * 0.05
    windows: np.ndarray = (signal + noise).astype(np.float32)
    return windows


def calibration_set(
    out: Path, n: int, seed: int = 11, shape: tuple[int, ...] = (1, WINDOW_LEN, CHANNELS)
) -> Path:
    """Writes (N, H, W, C) float32 windows in the layout the DFC parsed the input as: (1, 100, 9)
    by default, (100, 9, 1) for an ONNX input [N, 1, 100, 9]. Time steps stay the outer axis."""
    if n < 1:
        raise ValueError("--n must be at least 1")
    if len(shape) != 3 or [d for d in shape if d != 1] != [WINDOW_LEN, CHANNELS]:
        raise ValueError(f"--shape {shape}: H,W,C must hold {WINDOW_LEN} time steps then {CHANNELS} channels")
    data = sample_windows(n, seed).reshape(n, *shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        np.save(f, data)
    return out

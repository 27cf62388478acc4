"""Input checks that run before the DFC: every problem is collected and reported at once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .shape import CHANNELS, LATENT_DIM, WINDOW_LEN

HW_ARCHS = ("hailo8", "hailo8l")
MIN_CALIB = 64  # the Model Zoo suggests >= 1024; >= 64 works
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


@dataclass(frozen=True)
class Request:
    onnx: Path
    calib: Path
    hw_arch: str
    model_name: str
    version: str
    config_version: str
    model_script: Path | None = None
    num_motifs: int | None = None
    #: Windows of the calibration set shipped with their reference outputs (golden.json).
    golden_windows: int = 8
    #: A `hailo-sidecar parity --report` for this model, summarised into the manifest.
    parity_report: Path | None = None


@dataclass(frozen=True)
class Checked:
    """What the checks learned: hashes and the shapes that go into the manifest."""

    onnx_sha256: str
    calib_sha256: str
    model_script_sha256: str | None
    input_name: str
    input_shape: list[int | str]  # as the ONNX file declares it (N may be symbolic)
    output_shapes: dict[str, list[int]]
    calib_samples: int
    calib_shape: list[int]
    warnings: list[str]


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _dims(value_info: object) -> list[int | str]:
    shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in shape.dim]


def _check_onnx(
    path: Path, num_motifs: int | None, problems: list[str]
) -> tuple[str, list[int | str], dict[str, list[int]]]:
    import onnx
    from onnx import TensorProto

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        problems.append(f"--onnx {path}: not a readable ONNX model ({type(exc).__name__}: {exc})")
        return "", [], {}
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        problems.append(
            f"--onnx: the model has {len(inputs)} inputs; the contract needs exactly one window input"
        )
        return "", [], {}
    inp = inputs[0]
    dims = _dims(inp)
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        problems.append(f"--onnx: input '{inp.name}' is not float32")
    # [N, 100, 9] or [N, 1, 100, 9] (read as NCHW by the DFC); N may be symbolic or 1.
    tail = dims[1:]
    if tail not in ([WINDOW_LEN, CHANNELS], [1, WINDOW_LEN, CHANNELS]):
        problems.append(
            f"--onnx: input '{inp.name}' has shape {dims}; the contract needs [N, {WINDOW_LEN}, {CHANNELS}] "
            f"or [N, 1, {WINDOW_LEN}, {CHANNELS}] (one window of {WINDOW_LEN} steps x {CHANNELS} channels)"
        )
    outputs = {o.name: _dims(o) for o in model.graph.output}
    shapes: dict[str, list[int]] = {}
    if set(outputs) >= {"latent", "motif_scores"}:
        named = {"latent": outputs["latent"], "motif_scores": outputs["motif_scores"]}
    elif len(outputs) == 2:
        by_size = sorted(outputs.values(), key=lambda d: d[-1] != LATENT_DIM)
        named = {"latent": by_size[0], "motif_scores": by_size[1]}
    else:
        problems.append(
            f"--onnx: outputs {sorted(outputs)}; the contract needs two: latent [N, {LATENT_DIM}] and "
            "motif_scores [N, M]"
        )
        return inp.name, [], {}
    for name, d in named.items():
        if not d or not isinstance(d[-1], int) or d[-1] < 1:
            problems.append(f"--onnx: output {name} has shape {d}; its last axis must be a fixed size")
            continue
        shapes[name] = [1, d[-1]]
    if shapes.get("latent", [0, LATENT_DIM])[-1] != LATENT_DIM:
        problems.append(f"--onnx: latent has {shapes['latent'][-1]} values; the contract needs {LATENT_DIM}")
    if num_motifs is not None and "motif_scores" in shapes and shapes["motif_scores"][-1] != num_motifs:
        problems.append(
            f"--onnx: motif_scores has {shapes['motif_scores'][-1]} values, --num-motifs is {num_motifs}"
        )
    return inp.name, dims, shapes


def _check_calib(path: Path, problems: list[str], warnings: list[str]) -> tuple[int, list[int]]:
    """Dtype, rank, size per sample, count and finiteness; the exact per-sample shape is checked
    against what the DFC parsed (check_calib_layout), after the parse stage."""
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        problems.append(f"--calib {path}: not a .npy array ({type(exc).__name__}: {exc})")
        return 0, []
    if data.dtype != np.float32:
        problems.append(f"--calib: dtype is {data.dtype}; the DFC needs float32 (x.astype(np.float32))")
    if data.ndim != 4 or int(np.prod(data.shape[1:])) != WINDOW_LEN * CHANNELS:
        hint = (
            " (add an axis: x[:, None] or x[..., None])"
            if tuple(data.shape[1:]) == (WINDOW_LEN, CHANNELS)
            else ""
        )
        problems.append(
            f"--calib: shape {tuple(data.shape)}; the DFC needs NHWC samples of one window "
            f"(N, H, W, C) with H*W*C = {WINDOW_LEN * CHANNELS}, laid out as the parsed input{hint}"
        )
        return 0, []
    n = int(data.shape[0])
    if n < MIN_CALIB:
        problems.append(f"--calib: {n} samples; at least {MIN_CALIB} are needed (1024 or more recommended)")
    elif n < 1024:
        warnings.append(f"calibration set has {n} samples; 1024 or more give better quantization")
    if np.issubdtype(data.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(np.asarray(data).reshape(-1)))
        if bad.size:
            first = np.unravel_index(int(bad[0]), data.shape)
            problems.append(
                f"--calib: {bad.size} non-finite values (NaN or inf), first at {tuple(map(int, first))}"
            )
    return n, [int(d) for d in data.shape]


def check_calib_layout(calib_shape: list[int], parsed: list[int]) -> None:
    """The calibration set's samples must be laid out as the DFC parsed the input (NHWC)."""
    want = parsed[1:]
    if calib_shape[1:] == want:
        return
    dims = ",".join(str(d) for d in want)
    raise InputError(
        [
            f"--calib: shape {tuple(calib_shape)}, but the DFC parsed the model's input as NHWC {parsed} "
            "(it reads an ONNX input as NCHW): the calibration set must be (N, "
            f"{', '.join(map(str, want))}); "
            f"write one with `hailo-sidecar calib-set OUT.npy --shape {dims}` or reshape your windows "
            f"(time steps first, then channels) to that shape"
        ]
    )


def check(req: Request) -> Checked:
    """Validates every input; raises InputError listing all problems."""
    problems: list[str] = []
    warnings: list[str] = []
    if req.hw_arch not in HW_ARCHS:
        problems.append(f"--hw-arch {req.hw_arch!r}: one of {', '.join(HW_ARCHS)}")
    if not _NAME_RE.match(req.model_name):
        problems.append(f"--model-name {req.model_name!r}: lower-case letters, digits, '-' and '_' (max 63)")
    if not _VERSION_RE.match(req.version) or ".." in req.version:
        problems.append(
            f"--version {req.version!r}: letters, digits, '.', '+', '-', '_' (max 64), e.g. 1.4.0"
        )
    if not req.config_version.strip() or len(req.config_version) > 128:
        problems.append("--config-version: 1 to 128 characters")
    if req.num_motifs is not None and req.num_motifs < 1:
        problems.append("--num-motifs: at least 1")
    if not 1 <= req.golden_windows <= 256:
        problems.append(f"--golden-windows {req.golden_windows}: 1 to 256")
    files = [("--onnx", req.onnx), ("--calib", req.calib)]
    if req.parity_report is not None:
        files.append(("--parity-report", req.parity_report))
    if req.model_script is not None:
        files.append(("--model-script", req.model_script))
    missing = {flag for flag, p in files if not p.is_file()}
    for flag, p in files:
        if flag in missing:
            problems.append(f"{flag} {p}: no such file")
    script_sha = None
    if req.model_script is not None and "--model-script" not in missing:
        try:
            req.model_script.read_text(encoding="utf-8")
            script_sha = sha256_file(req.model_script)
        except UnicodeDecodeError:
            problems.append(f"--model-script {req.model_script}: not a UTF-8 text .alls file")
    input_name, input_shape, output_shapes = "", list[int | str](), dict[str, list[int]]()
    if "--onnx" not in missing:
        input_name, input_shape, output_shapes = _check_onnx(req.onnx, req.num_motifs, problems)
    samples, calib_shape = (0, []) if "--calib" in missing else _check_calib(req.calib, problems, warnings)
    if problems:
        raise InputError(problems)
    return Checked(
        onnx_sha256=sha256_file(req.onnx),
        calib_sha256=sha256_file(req.calib),
        model_script_sha256=script_sha,
        input_name=input_name,
        input_shape=input_shape,
        output_shapes=output_shapes,
        calib_samples=samples,
        calib_shape=calib_shape,
        warnings=warnings,
    )

"""Hailo mode: HailoRT's Python API (module hailo_platform, InferModel API) on a Hailo-8/8L.

hailo_platform is imported here and nowhere else. The device is opened once at load() and kept
open; a VDevice belongs to the process that created it, so the server runs one process and
serialises inference calls on one thread. HailoRT failures are mapped to reasons an operator
can act on (see ``classify``).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, ModelLoadError
from ..shape import LATENT_DIM, WINDOW_VALUES
from ..versions import dist_version
from .base import ModelInfo, file_sha256

RUN_TIMEOUT_MS = 1000

# HailoRT status codes (hailo/hailort.h) that users hit, with the fix to print.
_STATUS_HINTS: dict[int, tuple[str, str]] = {
    74: (
        "device_unavailable",
        "no Hailo device is free (status 74 HAILO_OUT_OF_PHYSICAL_DEVICES): the device is "
        "missing, or another process or a stale container holds it; check `hailortcli scan` "
        "and stop the other user",
    ),
    76: (
        "driver_mismatch",
        "HailoRT driver and library versions differ (status 76 HAILO_INVALID_DRIVER_VERSION): "
        "install hailo_pci and libhailort of the same version (hailort role, hailort_version)",
    ),
    36: (
        "permission_denied",
        "cannot open /dev/hailo0 (status 36, permission denied): give the container the hailo "
        "group (group_add) or fix the udev rule",
    ),
    16: (
        "firmware_mismatch",
        "device firmware does not match HailoRT (status 16 HAILO_UNSUPPORTED_FW_VERSION): "
        "install the hailofw package of the same version and reboot",
    ),
}
_STATUS_RE = re.compile(r"\((\d+)\)|status[ =:]+(\d+)", re.IGNORECASE)


def classify(exc: BaseException) -> tuple[str, str]:
    """Maps a HailoRT exception to (kind, actionable message)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    if "HailoRTHEFNotCompatibleWithDevice" in names:
        return (
            "hef_arch",
            f"the HEF was compiled for another Hailo architecture than this device ({text}); "
            "a hailo8 HEF does not run on Hailo-8L: recompile with the right --hw-arch",
        )
    if "HailoRTInvalidHEFException" in names:
        return "hef_invalid", f"the HEF file is invalid or from an incompatible DFC ({text})"
    if "HailoRTTimeout" in names:
        return "timeout", f"inference timed out on the device ({text})"
    if "HailoRTDriverOperationFailedException" in names and "error 13" in text:
        return _STATUS_HINTS[36]
    for m in _STATUS_RE.finditer(text):
        code = int(m.group(1) or m.group(2))
        if code in _STATUS_HINTS:
            kind, hint = _STATUS_HINTS[code]
            return kind, f"{hint} [{text}]"
    return "hailort", f"HailoRT error: {text}"


def _is_hailort_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "HailoRTException" for cls in type(exc).__mro__)


def _hailort_version(hp: Any) -> str:
    # The binding may come from python3-hailort without dist metadata.
    return dist_version("hailort") or str(getattr(hp, "__version__", "unknown"))


class HailoBackend:
    mode = "hailo"
    blocking = True

    def __init__(self, path: Path, num_motifs: int) -> None:
        self._path = path
        self._num_motifs = num_motifs
        self._vdevice: Any = None
        self._configured_ctx: Any = None
        self._cim: Any = None
        self._input = ""
        self._input_shape: tuple[int, ...] = ()
        self._outputs: dict[str, str] = {}  # contract name -> HEF output name
        self._output_shapes: dict[str, tuple[int, ...]] = {}

    def load(self) -> ModelInfo:
        if not self._path.is_file():
            raise ModelLoadError("model_missing", f"HEF not found at {self._path} (HEF_PATH)")
        sha = file_sha256(self._path)
        try:
            import hailo_platform as hp
        except ImportError as exc:
            raise ModelLoadError(
                "hailort_missing",
                f"hailo mode needs the HailoRT Python binding (hailo_platform): {exc}; build the "
                "runtime image with the hailort wheel or mount the host's python3-hailort",
            ) from None
        try:
            self._open(hp)
        except ModelLoadError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            if not _is_hailort_error(exc):
                raise
            kind, message = classify(exc)
            raise ModelLoadError(kind, message) from None
        return ModelInfo(
            mode="hailo",
            model_path=str(self._path),
            sha256=sha,
            device="hailo (/dev/hailo0)",
            versions={"hailort": _hailort_version(hp)},
        )

    def _open(self, hp: Any) -> None:
        params = hp.VDevice.create_params()
        params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
        self._vdevice = hp.VDevice(params)
        infer_model = self._vdevice.create_infer_model(str(self._path))
        infer_model.set_batch_size(1)
        names_in = list(infer_model.input_names)
        if len(names_in) != 1:
            raise ModelLoadError("contract", f"HEF has {len(names_in)} inputs, expected 1")
        self._input = names_in[0]
        inp = infer_model.input(self._input)
        self._input_shape = tuple(int(d) for d in inp.shape)
        if int(np.prod(self._input_shape)) != WINDOW_VALUES:
            raise ModelLoadError(
                "contract",
                f"HEF input {self._input} has shape {list(self._input_shape)}, expected 100x9 "
                "(e.g. [1, 100, 9] in HWC order)",
            )
        inp.set_format_type(hp.FormatType.FLOAT32)
        self._outputs = self._match_outputs(infer_model)
        for hef_name in self._outputs.values():
            infer_model.output(hef_name).set_format_type(hp.FormatType.FLOAT32)
            self._output_shapes[hef_name] = tuple(int(d) for d in infer_model.output(hef_name).shape)
        self._configured_ctx = infer_model.configure()
        self._cim = self._configured_ctx.__enter__()

    def _match_outputs(self, infer_model: Any) -> dict[str, str]:
        """Finds the latent (64) and motif (NUM_MOTIFS) outputs by name, else by size."""
        sizes = {n: int(np.prod(infer_model.output(n).shape)) for n in infer_model.output_names}
        found: dict[str, str] = {}
        for contract_name, size in (("latent", LATENT_DIM), ("motif_scores", self._num_motifs)):
            by_name = [n for n in sizes if contract_name.split("_")[0] in n.lower()]
            by_size = [n for n, s in sizes.items() if s == size and n not in found.values()]
            pick = by_name[0] if len(by_name) == 1 and sizes[by_name[0]] == size else None
            if pick is None and len(by_size) == 1:
                pick = by_size[0]
            if pick is None:
                raise ModelLoadError(
                    "contract",
                    f"cannot find the {contract_name} output ({size} values) among the HEF outputs {sizes}",
                )
            found[contract_name] = pick
        return found

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._cim is None:
            raise DeviceError("device_closed", "the Hailo device is not open")
        try:
            bindings_list = []
            for window in x:
                out_buffers = {
                    name: np.empty(shape, dtype=np.float32) for name, shape in self._output_shapes.items()
                }
                bindings = self._cim.create_bindings(output_buffers=out_buffers)
                bindings.input(self._input).set_buffer(
                    np.ascontiguousarray(window.reshape(self._input_shape))
                )
                bindings_list.append(bindings)
            self._cim.run(bindings_list, RUN_TIMEOUT_MS)
            latent = np.stack(
                [b.output(self._outputs["latent"]).get_buffer().reshape(-1) for b in bindings_list]
            )
            motifs = np.stack(
                [b.output(self._outputs["motif_scores"]).get_buffer().reshape(-1) for b in bindings_list]
            )
        except Exception as exc:
            if not _is_hailort_error(exc):
                raise
            kind, message = classify(exc)
            raise DeviceError(kind, message) from None
        return latent.astype(np.float32, copy=False), motifs.astype(np.float32, copy=False)

    def close(self) -> None:
        ctx, vdev = self._configured_ctx, self._vdevice
        self._cim = self._configured_ctx = self._vdevice = None
        for release in (
            (lambda: ctx.__exit__(None, None, None)) if ctx is not None else None,
            getattr(vdev, "release", None),
        ):
            if release is None:
                continue
            with contextlib.suppress(Exception):  # best effort on a failed device
                release()

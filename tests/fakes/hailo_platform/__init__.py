"""Stand-in for HailoRT's Python binding (hailo_platform) - tests only, no Hailo device here.

It follows the documented InferModel API that sidecar_app/backends/hailo.py is written against
(VDevice.create_params, VDevice, create_infer_model, InferModel.input/output/configure,
ConfiguredInferModel.create_bindings/run, bindings input().set_buffer / output().get_buffer)
and HailoRT's exception names and status codes, so each failure users hit can be injected.

"HEF" files for the stand-in are JSON: {"standin_hef": 1, "arch": "hailo8", "input": [1, 100, 9],
"outputs": {"enc/latent": [64], "enc/motif": [12]}}. Outputs are a fixed function of the input.

Faults come from the JSON file named by HAILO_STANDIN_CONTROL (read on every call, so a test can
change them while a server runs) or from ``CONTROL`` in-process:
  open_status: int      VDevice() raises with that HailoRT status (74, 76, 36, 16)
  device_arch: str      the simulated device ("hailo8" or "hailo8l")
  fail_runs: int        the next N run() calls raise (status 74); decremented in the file
  delay_s: float        run() sleeps this long (in-flight requests for shutdown tests)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

__version__ = "4.23.0"
CONTROL: dict[str, Any] = {}
OPEN_VDEVICES: list[VDevice] = []


class HailoRTException(Exception):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


_STATUS_TEXT = {
    74: "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0 "
    "(HAILO_OUT_OF_PHYSICAL_DEVICES(74))",
    76: "Driver version (4.18.0) is different from library version (4.23.0) "
    "(HAILO_INVALID_DRIVER_VERSION(76))",
    16: "Unsupported firmware version (HAILO_UNSUPPORTED_FW_VERSION(16))",
}


def _control() -> dict[str, Any]:
    path = os.environ.get("HAILO_STANDIN_CONTROL")
    data = dict(CONTROL)
    if path and Path(path).exists():
        data.update(json.loads(Path(path).read_text() or "{}"))
    return data


def _consume_fail_run() -> bool:
    if CONTROL.get("fail_runs", 0) > 0:
        CONTROL["fail_runs"] -= 1
        return True
    path = os.environ.get("HAILO_STANDIN_CONTROL")
    if path and Path(path).exists():
        data = json.loads(Path(path).read_text() or "{}")
        if data.get("fail_runs", 0) > 0:
            data["fail_runs"] -= 1
            Path(path).write_text(json.dumps(data))
            return True
    return False


def _raise_status(status: int) -> None:
    if status == 36:
        raise HailoRTDriverOperationFailedException("Failed to open device file /dev/hailo0 with error 13")
    raise HailoRTException(_STATUS_TEXT.get(status, f"HailoRT failure (status {status})"))


class HailoSchedulingAlgorithm(Enum):
    NONE = 0
    ROUND_ROBIN = 1


class FormatType(Enum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class _Params:
    def __init__(self) -> None:
        self.scheduling_algorithm = HailoSchedulingAlgorithm.NONE
        self.group_id = ""
        self.multi_process_service = False


class _Stream:
    def __init__(self, name: str, shape: list[int]) -> None:
        self.name = name
        self.shape = tuple(shape)
        self.format_type = FormatType.AUTO

    def set_format_type(self, fmt: FormatType) -> None:
        self.format_type = fmt


class _Buffer:
    def __init__(self, array: np.ndarray | None = None) -> None:
        self.array = array

    def set_buffer(self, array: np.ndarray) -> None:
        self.array = array

    def get_buffer(self) -> np.ndarray:
        assert self.array is not None
        return self.array


class _Bindings:
    def __init__(self, model: InferModel, output_buffers: dict[str, np.ndarray] | None) -> None:
        self._inputs = {n: _Buffer() for n in model.input_names}
        self._outputs = {
            n: _Buffer((output_buffers or {}).get(n, np.empty(model.output(n).shape, np.float32)))
            for n in model.output_names
        }

    def input(self, name: str | None = None) -> _Buffer:
        return self._inputs[name] if name else next(iter(self._inputs.values()))

    def output(self, name: str | None = None) -> _Buffer:
        return self._outputs[name] if name else next(iter(self._outputs.values()))


class ConfiguredInferModel:
    def __init__(self, model: InferModel) -> None:
        self._model = model
        rng = np.random.default_rng(4)
        self._w = {
            n: rng.standard_normal((900, int(np.prod(model.output(n).shape)))).astype(np.float32) / 30.0
            for n in model.output_names
        }

    def create_bindings(self, output_buffers: dict[str, np.ndarray] | None = None) -> _Bindings:
        return _Bindings(self._model, output_buffers)

    def run(self, bindings: list[_Bindings], timeout: int) -> None:
        ctl = _control()
        if ctl.get("delay_s"):
            time.sleep(float(ctl["delay_s"]))
        if _consume_fail_run():
            _raise_status(74)
        for b in bindings:
            x = b.input().get_buffer().reshape(-1).astype(np.float32)
            for n, w in self._w.items():
                out = b.output(n).get_buffer()
                z = x @ w
                out[...] = (1 / (1 + np.exp(-z)) if "motif" in n else np.tanh(z)).reshape(out.shape)

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class InferModel:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._inputs = {"enc/input_layer1": _Stream("enc/input_layer1", spec["input"])}
        self._outputs = {n: _Stream(n, s) for n, s in spec["outputs"].items()}
        self.batch_size = 1

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def input(self, name: str | None = None) -> _Stream:
        return self._inputs[name] if name else next(iter(self._inputs.values()))

    def output(self, name: str | None = None) -> _Stream:
        return self._outputs[name] if name else next(iter(self._outputs.values()))

    def set_batch_size(self, n: int) -> None:
        self.batch_size = n

    def configure(self) -> ConfiguredInferModel:
        return ConfiguredInferModel(self)


class VDevice:
    def __init__(self, params: _Params | None = None) -> None:
        status = _control().get("open_status")
        if status:
            _raise_status(int(status))
        self.params = params
        self.released = False
        OPEN_VDEVICES.append(self)

    @staticmethod
    def create_params() -> _Params:
        return _Params()

    def create_infer_model(self, hef_path: str) -> InferModel:
        try:
            spec = json.loads(Path(hef_path).read_text())
            assert spec.get("standin_hef") == 1
        except (ValueError, AssertionError, UnicodeDecodeError):
            raise HailoRTInvalidHEFException(f"Invalid HEF file {hef_path}") from None
        device = _control().get("device_arch", "hailo8")
        if spec.get("arch") == "hailo8" and device == "hailo8l":
            raise HailoRTHEFNotCompatibleWithDevice(
                "HEF file is not compatible with device (HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE(93))"
            )
        return InferModel(spec)

    def release(self) -> None:
        self.released = True
        with contextlib.suppress(ValueError):
            OPEN_VDEVICES.remove(self)

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_standin_hef(
    path: Path,
    num_motifs: int = 12,
    arch: str = "hailo8",
    input_shape: tuple[int, ...] = (1, 100, 9),
    latent: int = 64,
) -> Path:
    """Test helper: writes a stand-in HEF file."""
    spec = {
        "standin_hef": 1,
        "arch": arch,
        "input": list(input_shape),
        "outputs": {"enc/latent": [latent], "enc/motif": [num_motifs]},
    }
    path.write_text(json.dumps(spec))
    return path

"""Stand-in for HailoRT's native extension _pyhailort (lab only): libhailort and one simulated Hailo-8.

What the real extension does, and what this one copies (each from the named HailoRT source,
hailo-ai/hailort, hailo8 branch, v4.23.0 era):

- Every failure is ``HailoRTStatusException(str(status))`` with the hailo_status number as its only
  argument (bindings/python/src/utils.hpp, VALIDATE_STATUS); the Python layer turns it into its
  own exception classes (pyhailort.py, ExceptionWrapper). Status names below: include/hailo/hailort.h.
- VDevice creation scans /sys/class/hailo_chardev; no free device is HAILO_OUT_OF_PHYSICAL_DEVICES
  (74), also when this process already holds the one device (src/vdevice/vdevice.cpp,
  create_devices: a device in use is skipped, then "not enough free devices"). Opening the node
  without permission is HAILO_DRIVER_OPERATION_FAILED (36) (src/vdma/driver/os/posix/linux/
  driver_os_specific.cpp, open_device_file; "with error 13" is only in the log line). No driver
  class folder is HAILO_DRIVER_NOT_INSTALLED (64). A driver of another version is
  HAILO_INVALID_DRIVER_VERSION (76); a firmware of another major.minor HAILO_UNSUPPORTED_FW_VERSION (16).
- A HEF whose magic does not match is 92, one whose length or checksum does not match is 91
  (src/hef/hef.cpp); configuring a HEF for another architecture is 93.
- Shapes are reported without a batch axis: NHWC -> [H, W, C], NC -> [C]
  (bindings/python/src/bindings_common.hpp, get_pybind_shape).
- InferModel.configure refuses a batch size above the internal queue (src/net_flow/pipeline/
  infer_model.cpp: HAILO_INVALID_OPERATION, 6). get_async_queue_size is that queue's size.
- run_async pushes bindings one at a time; a push with no free slot in the queue fails with
  HAILO_QUEUE_IS_FULL (82) and shuts the configured model down: every later push fails with
  HAILO_STREAM_ABORT (63) (src/net_flow/pipeline/infer_model.cpp ConfiguredInferModel::run_async,
  async_infer_runner.cpp AsyncInferRunnerImpl::run and AsyncPipeline::shutdown). A buffer of
  the wrong size is HAILO_INVALID_OPERATION (6) and shuts it down too (validate_bindings).
- wait_for_async_ready(timeout, frames_count) returns once frames_count slots are free, and times
  out (HAILO_TIMEOUT, 4) when that never happens, e.g. frames_count above the queue size.
- A frame that fails on the device does not fail job.wait(): the job's callback receives the
  status, and the pipeline is shut down with it (AsyncInferJobImpl::wait only waits for the callback).
- Callbacks run on a thread of the library, not on the caller's (infer_model_api.cpp).

The simulated device is driven by faults (see hailo_platform.standin). The device's "time" per frame
is ``frame_time_s``. Its outputs are the compiled network's when the stand-in HEF carries one (the
stand-in DFC's dense chain, outputs rounded to 8 bits as a quantized network's are), else a fixed
function of the input.
"""

from __future__ import annotations

import base64
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__version__ = "4.23.0"

# include/hailo/hailort.h, HAILO_STATUS_VARIABLES (the names this stand-in can return and a few
# neighbours; get_status_message answers "" for the rest, as for an unknown status).
STATUS_NAMES = {
    0: "HAILO_SUCCESS",
    2: "HAILO_INVALID_ARGUMENT",
    4: "HAILO_TIMEOUT",
    6: "HAILO_INVALID_OPERATION",
    8: "HAILO_INTERNAL_FAILURE",
    16: "HAILO_UNSUPPORTED_FW_VERSION",
    18: "HAILO_FW_CONTROL_FAILURE",
    26: "HAILO_INVALID_HEF",
    36: "HAILO_DRIVER_OPERATION_FAILED",
    61: "HAILO_NOT_FOUND",
    62: "HAILO_COMMUNICATION_CLOSED",
    63: "HAILO_STREAM_ABORT",
    64: "HAILO_DRIVER_NOT_INSTALLED",
    69: "HAILO_NETWORK_GROUP_NOT_ACTIVATED",
    73: "HAILO_DEVICE_IN_USE",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
    75: "HAILO_INVALID_DEVICE_ARCHITECTURE",
    76: "HAILO_INVALID_DRIVER_VERSION",
    77: "HAILO_RPC_FAILED",
    82: "HAILO_QUEUE_IS_FULL",
    87: "HAILO_DRIVER_TIMEOUT",
    91: "HAILO_HEF_FILE_CORRUPTED",
    92: "HAILO_HEF_NOT_SUPPORTED",
    93: "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
}


class HailoRTStatusException(Exception):
    """The extension's one exception type; args[0] is the status number as a string."""


def get_status_message(status: int) -> str:
    return STATUS_NAMES.get(int(status), "")


def fail(status: int) -> HailoRTStatusException:
    return HailoRTStatusException(str(status))


class FormatType:
    """hailo_format_type_t (AUTO: the HEF's own, quantized UINT8 for this model)."""

    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class SchedulingAlgorithm:
    NONE = 0
    ROUND_ROBIN = 1


class VDeviceParams:
    def __init__(self) -> None:
        # HailoRTDefaults::get_vdevice_params: one device, no scheduler, a unique group.
        self.device_count = 1
        self.scheduling_algorithm = SchedulingAlgorithm.NONE
        self.group_id = "UNIQUE"
        self.multi_process_service = False

    @staticmethod
    def default() -> VDeviceParams:
        return VDeviceParams()


class TemperatureInfo:
    def __init__(self, ts0: float, ts1: float, samples: int) -> None:
        self.ts0_temperature = ts0
        self.ts1_temperature = ts1
        self.sample_count = samples


# -- the simulated machine: one Hailo-8 ---------------------------------------------------------
_HELD: list[VDevice] = []  # VDevices of this process holding the device
_LOCK = threading.Lock()


def _ctl() -> dict[str, Any]:
    from .. import standin

    return standin.control()


class Device:
    """A physical device (control operations only; Device.create opens a second handle)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id

    @staticmethod
    def scan() -> list[str]:
        return ["0001:01:00.0"] if _ctl().get("device", True) else []

    @staticmethod
    def create(device_id: str) -> Device:
        _open_checks()
        return Device(device_id)

    def get_chip_temperature(self) -> TemperatureInfo:
        t = float(_ctl().get("temperature_c", 47.5))
        return TemperatureInfo(t, t + 0.4, 1)

    def release(self) -> None:
        return None


def _open_checks() -> None:
    ctl = _ctl()
    status = ctl.get("open_status")
    if status:
        raise fail(int(status))
    if not ctl.get("device", True):
        raise fail(74)


class VDevice:
    def __init__(self, params: VDeviceParams, device_ids: list[str]) -> None:
        _open_checks()
        with _LOCK:
            if _HELD:
                # The one device is marked as used by the other VDevice: skipped, none left.
                raise fail(74)
            _HELD.append(self)
        self.params = params
        self.released = False

    @staticmethod
    def create(params: VDeviceParams, device_ids: list[str]) -> VDevice:
        return VDevice(params, device_ids)

    def create_infer_model_from_file(self, path: str, name: str = "") -> InferModel:
        from standin_hef import HefError, read

        if self.released:
            raise fail(6)
        try:
            spec = read(path)
        except FileNotFoundError:
            raise fail(13) from None  # HAILO_OPEN_FILE_FAILURE
        except HefError as exc:
            raise fail(exc.status) from None
        return InferModel(self, spec)

    def get_physical_devices_ids(self) -> list[str]:
        return Device.scan()

    def release(self) -> None:
        with _LOCK:
            if self in _HELD:
                _HELD.remove(self)
        self.released = True


class InferStream:
    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info
        self.format_type = FormatType.AUTO
        self.activation = str(info.get("standin_activation", "tanh"))

    def name(self) -> str:
        return str(self._info["name"])

    def shape(self) -> list[int]:
        return list(self._info["shape"])

    def set_format_type(self, fmt: int) -> None:
        self.format_type = fmt

    def frame_size(self) -> int:
        per_value = 4 if self.format_type == FormatType.FLOAT32 else 1
        return int(np.prod(self._info["shape"])) * per_value


class InferModel:
    def __init__(self, vdevice: VDevice, spec: dict[str, Any]) -> None:
        self._vdevice = vdevice
        self.spec = spec
        self.inputs_ = {i["name"]: InferStream(i) for i in spec["inputs"]}
        self.outputs_ = {o["name"]: InferStream(o) for o in spec["outputs"]}
        self.batch_size = 0  # HAILO_DEFAULT_BATCH_SIZE

    def get_input_names(self) -> list[str]:
        return list(self.inputs_)

    def get_output_names(self) -> list[str]:
        return list(self.outputs_)

    def _stream(self, streams: dict[str, InferStream], name: str) -> InferStream:
        if not name:
            if len(streams) != 1:
                raise fail(6)
            return next(iter(streams.values()))
        if name not in streams:
            raise fail(61)
        return streams[name]

    def input(self, name: str = "") -> InferStream:
        return self._stream(self.inputs_, name)

    def output(self, name: str = "") -> InferStream:
        return self._stream(self.outputs_, name)

    def set_batch_size(self, n: int) -> None:
        self.batch_size = n

    def configure(self) -> ConfiguredInferModel:
        ctl = _ctl()
        device_arch = ctl.get("device_arch", "hailo8")
        # A hailo8l HEF runs on a Hailo-8; a hailo8 HEF does not fit a Hailo-8L.
        if self.spec["arch"] != device_arch and not (
            self.spec["arch"] == "hailo8l" and device_arch == "hailo8"
        ):
            raise fail(93)
        queue = int(ctl.get("async_queue_size", 4))
        if self.batch_size > queue:
            raise fail(6)
        return ConfiguredInferModel(self, queue)


class Bindings:
    def __init__(self, model: InferModel) -> None:
        self.model = model
        self.buffers: dict[str, np.ndarray] = {}

    def set(self, name: str, buffer: np.ndarray) -> None:
        self.buffers[name] = buffer


class AsyncInferJob:
    def __init__(self, frames: int) -> None:
        self._left = frames
        self._status = 0
        self._done = threading.Event()
        self.callback: Callable[[int], None] | None = None

    def frame_done(self, status: int) -> None:
        with _LOCK:
            self._left -= 1
            if status:
                self._status = status
            last = self._left == 0
        if last:
            if self.callback is not None:
                self.callback(self._status)
            self._done.set()

    def wait(self, timeout_s: float) -> None:
        if not self._done.wait(timeout_s):
            raise fail(4)

    def detach(self) -> None:
        return None


class ConfiguredInferModel:
    def __init__(self, model: InferModel, queue_size: int) -> None:
        self.model = model
        self.queue_size = queue_size
        self.status = 0  # the pipeline status: not 0 once shut down
        self.activated = False
        self._cv = threading.Condition()
        self._pending: collections.deque[tuple[Bindings, AsyncInferJob]] = collections.deque()
        self._in_flight = 0
        self._layers = [
            (
                np.frombuffer(base64.b64decode(layer["w"]), "<f4").reshape(layer["shape"]),
                np.frombuffer(base64.b64decode(layer["b"]), "<f4"),
                layer["act"],
                layer["name"],
            )
            for layer in model.spec.get("standin_layers") or []
        ]
        rng = np.random.default_rng(4)
        self._w = {
            name: rng.standard_normal((900, int(np.prod(s.shape())))).astype(np.float32) / 30.0
            for name, s in model.outputs_.items()
        }
        self._worker = threading.Thread(target=self._device, name="hailort-standin-device", daemon=True)
        self._worker.start()

    # -- the simulated device: frames in order, frame_time_s each -------------------------------
    def _device(self) -> None:
        while True:
            with self._cv:
                while not self._pending and self.status == 0:
                    self._cv.wait()
                if not self._pending:
                    return
                bindings, job = self._pending.popleft()
            status = self.status or self._run_frame(bindings)
            with self._cv:
                self._in_flight -= 1
                if status and not self.status:
                    self.status = status  # a failed frame shuts the pipeline down
                self._cv.notify_all()
            job.frame_done(status)

    def _run_frame(self, bindings: Bindings) -> int:
        from .. import standin

        time.sleep(float(_ctl().get("frame_time_s", 0.0002)))
        status = standin.consume_frame_failure()
        if status:
            return status
        (inp,) = self.model.get_input_names()
        x = bindings.buffers[inp].reshape(-1).astype(np.float32)
        if self._layers:
            self._run_network(x, bindings)
            return 0
        for name, w in self._w.items():
            out = bindings.buffers[name]
            z = x @ w
            # The stand-in HEF says which activation ends each output (the real one is compiled in).
            sigmoid = self.model.outputs_[name].activation == "sigmoid"
            values = 1 / (1 + np.exp(-z)) if sigmoid else np.tanh(z)
            out[...] = values.reshape(out.shape).astype(out.dtype)
        return 0

    def _run_network(self, x: np.ndarray, bindings: Bindings) -> None:
        values: dict[str, np.ndarray] = {}
        h = x
        for w, b, act, name in self._layers:
            z = h @ w + b
            h = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
                 "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "none": lambda v: v}[act](z)  # fmt: skip
            values[name] = h
        for name, stream in self.model.outputs_.items():
            source = values[stream._info["standin_source"]]
            # 8-bit outputs: tanh in [-1, 1] on 127 steps, sigmoid in [0, 1] on 255.
            steps = 255.0 if stream.activation == "sigmoid" else 127.0
            out = bindings.buffers[name]
            out[...] = (np.round(source * steps) / steps).reshape(out.shape).astype(out.dtype)

    # -- the API the Python layer calls ---------------------------------------------------------
    def create_bindings(self) -> Bindings:
        return Bindings(self.model)

    def get_async_queue_size(self) -> int:
        return self.queue_size

    def activate(self) -> None:
        self.activated = True

    def deactivate(self) -> None:
        self.activated = False

    def wait_for_async_ready(self, timeout_s: float, frames_count: int) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self.status == 0 and self.queue_size - self._in_flight < frames_count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise fail(4)
                self._cv.wait(left)
            if self.status:
                raise fail(self.status)

    def _validate(self, bindings: Bindings) -> int:
        for name in (*self.model.get_input_names(), *self.model.get_output_names()):
            buffer = bindings.buffers.get(name)
            stream = self.model.inputs_.get(name) or self.model.outputs_[name]
            if buffer is None:
                return 61
            if buffer.nbytes != stream.frame_size():
                return 6  # "Input buffer size {} is different than expected {}"
        return 0

    def _push(self, bindings: Bindings, job: AsyncInferJob) -> None:
        with self._cv:
            if self.status:
                raise fail(self.status)
            scheduler = self.model._vdevice.params.scheduling_algorithm
            if scheduler == SchedulingAlgorithm.NONE and not self.activated:
                raise fail(69)
            status = self._validate(bindings)
            if not status and self._in_flight >= self.queue_size:
                status = 82
            if status:
                raise fail(status)
            self._in_flight += 1
            self._pending.append((bindings, job))
            self._cv.notify_all()

    def run_async(self, bindings: list[Bindings], callback: Callable[[int], None]) -> AsyncInferJob:
        delay = float(_ctl().get("delay_s", 0))
        if delay:
            time.sleep(delay)
        job = AsyncInferJob(len(bindings))
        job.callback = callback
        for b in bindings:
            try:
                self._push(b, job)
            except HailoRTStatusException:
                self.shutdown()
                raise
        return job

    def shutdown(self) -> None:
        with self._cv:
            if not self.status:
                self.status = 63  # HAILO_STREAM_ABORT: the pipeline is unusable from now on
            self._cv.notify_all()

"""Stand-in for HailoRT's native extension _pyhailort (lab only): libhailort and one simulated Hailo-8.

What the real extension does, and what this one copies (each from the named HailoRT source,
hailo-ai/hailort, hailo8 branch, v4.23.0 era):

- Every failure is ``HailoRTStatusException(str(status))`` with the hailo_status number as its only
  argument (bindings/python/src/utils.hpp, VALIDATE_STATUS); the Python layer turns it into its
  own exception classes (pyhailort.py, ExceptionWrapper). Status names below: include/hailo/hailort.h.
- VDevice creation scans /sys/class/hailo_chardev; no free device is HAILO_OUT_OF_PHYSICAL_DEVICES
  (74), also when this process already holds the one device (src/vdevice/vdevice.cpp,
  create_devices: a device in use is skipped, then "not enough free devices"). In 4.23 a missing
  class folder (no driver loaded) is an empty device list, not an error (src/vdma/driver/os/posix/
  linux/driver_os_specific.cpp, list_devices: ENOENT returns no devices), so a missing driver is
  74 too; 64 (HAILO_DRIVER_NOT_INSTALLED) came from 4.17-4.22's list_devices. Opening the node
  without permission is HAILO_DRIVER_OPERATION_FAILED (36) (driver_os_specific.cpp,
  open_device_file; "with error 13" is only in the log line). A driver of another version is
  HAILO_INVALID_DRIVER_VERSION (76); a firmware of another major.minor HAILO_UNSUPPORTED_FW_VERSION (16).
- Each physical device counts the core ops configured on it and never forgets one:
  VDeviceBase::configure keeps every configured core op (src/vdevice/vdevice.cpp,
  m_vdevice_core_ops), the device's m_core_ops holds weak pointers it never prunes, and
  VdmaDevice::create_core_ops_metadata refuses the 33rd with HAILO_INVALID_OPERATION (6)
  (src/vdma/vdma_device.cpp; CONTROL_PROTOCOL__MAX_CONTEXT_SWITCH_APPLICATIONS = 32). A configure
  that fails after its core op was created (InferModel::configure's batch check) still holds one;
  one refused by the limit or by the HEF's architecture does not. With a scheduler, a HEF of the
  same hash, network group and batch size as one already configured reuses its core op
  (vdevice.cpp should_use_multiplexer, VDeviceCoreOp::equals). Only a new VDevice starts from 0.
- A HEF whose magic does not match is 92, one whose length or checksum does not match is 91
  (src/hef/hef.cpp); configuring a HEF for another architecture is 93.
- Shapes are reported without a batch axis: NHWC -> [H, W, C], NC -> [C]
  (bindings/python/src/bindings_common.hpp, get_pybind_shape).
- InferModel.configure refuses a batch size above the internal queue (src/net_flow/pipeline/
  infer_model.cpp: HAILO_INVALID_OPERATION, 6). get_async_queue_size is that queue's size.
- The pipeline holds twice that: 4.23 builds the output buffer pools and the entry queue at twice
  the queue size (async_pipeline_builder.cpp, edge_elements.cpp LastAsyncElement,
  queue_elements.cpp is_entry), so 2 x get_async_queue_size() frames fit before a push fails.
  run_async pushes bindings one at a time; a push with no free slot fails with
  HAILO_QUEUE_IS_FULL (82), a push into a pipeline that failed fails with its status, and either
  shuts the configured model down: every later push fails with HAILO_STREAM_ABORT (63)
  (src/net_flow/pipeline/infer_model.cpp ConfiguredInferModel::run_async, async_infer_runner.cpp
  AsyncInferRunnerImpl::run and ::abort). AsyncPipeline::shutdown(error_status) stores the status
  it is given every time, not only the first (async_infer_runner.cpp): after the abort the pipeline
  status is 63, and a frame completed from then on reports 63 to its callback, whatever failed
  first. A buffer of the wrong size is HAILO_INVALID_OPERATION (6) and shuts it down too
  (validate_bindings).
- wait_for_async_ready(timeout, frames_count) returns once frames_count slots of that bound are
  free (infer_model.cpp ConfiguredInferModelImpl::wait_for_async_ready, can_push_buffers), and
  times out (HAILO_TIMEOUT, 4) when that never happens, e.g. frames_count above the bound. It looks
  at the pools' space only, never at the pipeline status (edge_elements.cpp LastAsyncElement::
  can_push_buffer_upstream): after a failure it returns once the failed frames drained, and the
  push that follows raises the status.
- A configured model lives until its last reference goes (pyhailort.py's ConfiguredInferModel
  __exit__ only drops the wrapper's reference; the C++ destructor shuts it down). A VDevice
  released while a model configured on it is alive leaves that model on a freed device (a
  use-after-free: the review of issue 25; the exact C++ path is not confirmed here). HailoRT
  reports nothing, so the stand-in records it (standin.released_under_models) for a test to catch
  a change of close order.
- A frame that fails on the device does not fail job.wait(): the job's callback receives the
  pipeline's status once the pipeline failed, else the job's own (infer_model.cpp
  ConfiguredInferModelImpl::run_async, transfer_done), and the pipeline is shut down with it
  (AsyncInferJobImpl::wait only waits for the callback).
- A buffer is handed over through pybind11's py::array::mutable_data(): a read-only array (e.g.
  np.frombuffer of bytes) raises ValueError("array is not writeable") (bindings/python/src/
  infer_model_api.cpp ConfiguredInferModelBindingsInferStreamWrapper::set_buffer; pybind11
  v2.10.1 numpy.h check_writeable throws std::domain_error, which pybind11 turns into ValueError).
- Device.create opens a handle of its own for control operations (identify, temperature); it does
  not mark the device as used, so it works next to the VDevice that holds it.
- Callbacks run on a thread of the library, not on the caller's (infer_model_api.cpp).

The simulated device is driven by faults (see hailo_platform.standin). The device's "time" per frame
is ``frame_time_s``. Its outputs are the compiled network's when the stand-in HEF carries one (the
stand-in DFC's dense chain, outputs rounded to 8 bits as a quantized network's are), else a fixed
function of the input.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
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
DEVICE_ID = "0001:01:00.0"
# src/vdma/vdma_device.cpp: CONTROL_PROTOCOL__MAX_CONTEXT_SWITCH_APPLICATIONS
MAX_CORE_OPS = 32
_HELD: list[VDevice] = []  # VDevices of this process holding the device
_LOCK = threading.Lock()
LOG: list[str] = []  # what libhailort writes to hailort.log (the lines this stand-in produces)
OPENED: list[str] = []  # every Device.create, by device id (tests count the handles opened)
RELEASED_UNDER_MODELS: list[int] = []  # VDevice.release with configured models alive (how many)


def _ctl() -> dict[str, Any]:
    from .. import standin

    return standin.control()


def _log(message: str) -> None:
    # libhailort's CHECK macros log the failed condition's message, then return the status.
    LOG.append(f"[HailoRT] [error] CHECK_AS_EXPECTED failed - {message}")


def list_devices() -> list[str]:
    """driver_os_specific.cpp list_devices (4.23): the entries of /sys/class/hailo_chardev, none
    when the folder does not exist. With the control "sysfs" set, that folder under it is read."""
    ctl = _ctl()
    if not ctl.get("device", True):
        return []
    sysfs = ctl.get("sysfs")
    if sysfs is not None:
        try:
            listed = any((Path(sysfs) / "class" / "hailo_chardev").iterdir())
        except FileNotFoundError:
            return []
        return [DEVICE_ID] if listed else []  # one device simulated
    return [DEVICE_ID]


class Device:
    """A physical device handle (control operations; Device.create opens one more handle)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.valid = True

    @staticmethod
    def scan() -> list[str]:
        return list_devices()

    @staticmethod
    def create(device_id: str) -> Device:
        status = _ctl().get("open_status")
        if status:
            raise fail(int(status))
        if device_id not in list_devices():
            # hailort_driver.cpp HailoRTDriver::create_pcie: "Requested device not found".
            raise fail(2)
        OPENED.append(device_id)
        return Device(device_id)

    def is_valid(self) -> bool:
        return self.valid

    def identify(self) -> dict[str, str]:
        return {"device_architecture": str(_ctl().get("device_arch", "hailo8")).upper()}

    def get_chip_temperature(self) -> TemperatureInfo:
        t = float(_ctl().get("temperature_c", 47.5))
        return TemperatureInfo(t, t + 0.4, 1)

    def release(self) -> None:
        self.valid = False


class VDevice:
    def __init__(self, params: VDeviceParams, device_ids: list[str]) -> None:
        status = _ctl().get("open_status")
        if status:
            raise fail(int(status))
        with _LOCK:
            if not list_devices() or _HELD:
                # No device listed, or the one device is marked as used by the other VDevice:
                # skipped, none left (vdevice.cpp create_devices).
                raise fail(74)
            _HELD.append(self)
        self.params = params
        self.released = False
        # The core ops its device holds (vdma_device.cpp m_core_ops: weak pointers never removed)
        # and (hef hash, network group, batch size) of each (vdevice.cpp m_vdevice_core_ops).
        self.core_ops = 0
        self._configured: list[tuple[str, str, int]] = []
        self.live: set[ConfiguredInferModel] = set()  # configured models not destroyed yet

    @staticmethod
    def create(params: VDeviceParams, device_ids: list[str]) -> VDevice:
        return VDevice(params, device_ids)

    def create_infer_model_from_file(self, path: str, name: str = "") -> InferModel:
        from standin_hef import HefError, decode

        if self.released:
            raise fail(6)
        try:
            data = Path(path).read_bytes()
            spec = decode(data)
        except FileNotFoundError:
            raise fail(13) from None  # HAILO_OPEN_FILE_FAILURE
        except HefError as exc:
            raise fail(exc.status) from None
        return InferModel(self, spec, hashlib.sha256(data).hexdigest())

    def configure(self, model: InferModel) -> None:
        """VDeviceBase::configure for one network group (vdevice.cpp)."""
        device_arch = _ctl().get("device_arch", "hailo8")
        # check_hef_is_compatible, before anything is configured: a hailo8l HEF runs on a
        # Hailo-8; a hailo8 HEF does not fit a Hailo-8L.
        arch = model.spec["arch"]
        if arch != device_arch and not (arch == "hailo8l" and device_arch == "hailo8"):
            raise fail(93)
        key = (model.hef_hash, str(model.spec["network_group"]), model.batch_size)
        if self.params.scheduling_algorithm != SchedulingAlgorithm.NONE and key in self._configured:
            return  # should_use_multiplexer + VDeviceCoreOp::equals: duplicated, no new core op
        # VdmaDevice::create_core_ops_metadata
        if self.core_ops + 1 > MAX_CORE_OPS:
            _log(f"Can't add 1 core-ops from HEF. Currently {self.core_ops} core-ops are configured; "
                 f"maximum allowed core-ops: {MAX_CORE_OPS}.")  # fmt: skip
            raise fail(6)
        self.core_ops += 1
        self._configured.append(key)

    def get_physical_devices_ids(self) -> list[str]:
        return list_devices()

    def release(self) -> None:
        # The VDeviceBase and its VdmaDevice go (the destructor clears the configured apps).
        with _LOCK:
            if self in _HELD:
                _HELD.remove(self)
            if self.live and not self.released:
                # A use-after-free in HailoRT (see the module's docstring): recorded, not raised,
                # as the real library reports nothing.
                RELEASED_UNDER_MODELS.append(len(self.live))
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
    def __init__(self, vdevice: VDevice, spec: dict[str, Any], hef_hash: str) -> None:
        self._vdevice = vdevice
        self.spec = spec
        self.hef_hash = hef_hash
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
        """InferModelBase::configure (infer_model.cpp): the VDevice configures the network group
        first; the batch check after it leaves the core op configured when it fails."""
        self._vdevice.configure(self)
        queue = int(_ctl().get("async_queue_size", 4))
        if self.batch_size > queue:
            raise fail(6)
        configured = ConfiguredInferModel(self, queue)
        self._vdevice.live.add(configured)
        return configured


class Bindings:
    def __init__(self, model: InferModel) -> None:
        self.model = model
        self.buffers: dict[str, np.ndarray] = {}

    def set(self, name: str, buffer: np.ndarray) -> None:
        # infer_model_api.cpp set_buffer(py::array) -> buffer.mutable_data() (pybind11 numpy.h).
        if not buffer.flags.writeable:
            raise ValueError("array is not writeable")
        self.buffers[name] = buffer


class AsyncInferJob:
    def __init__(self, frames: int) -> None:
        self._left = frames
        self._status = 0
        self._done = threading.Event()
        self.callback: Callable[[int], None] | None = None

    def frame_done(self, status: int, pipeline_status: int) -> None:
        with _LOCK:
            self._left -= 1
            if status:
                self._status = status
            last = self._left == 0
        if last:
            # transfer_done: the pipeline's status once it failed, else the job's own.
            if self.callback is not None:
                self.callback(pipeline_status or self._status)
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
                if status:
                    # A failed frame shuts the pipeline down with its status; shutdown stores the
                    # latest status (async_infer_runner.cpp AsyncPipeline::shutdown).
                    self.status = status
                self._cv.notify_all()
                pipeline_status = self.status
            job.frame_done(status, pipeline_status)

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

    @property
    def bound(self) -> int:
        """Frames the pipeline holds: twice the queue (the pools and entry queue of 4.23)."""
        return 2 * self.queue_size

    def wait_for_async_ready(self, timeout_s: float, frames_count: int) -> None:
        # The pools' space only, not the pipeline status (edge_elements.cpp
        # LastAsyncElement::can_push_buffer_upstream): a failed pipeline drains, then the push fails.
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self.bound - self._in_flight < frames_count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise fail(4)
                self._cv.wait(left)

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
            if not status and self._in_flight >= self.bound:
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
        # AsyncInferRunnerImpl::abort -> AsyncPipeline::shutdown(HAILO_STREAM_ABORT), which stores
        # it over any earlier status (async_infer_runner.cpp): the pipeline is unusable from now on.
        with self._cv:
            self.status = 63
            self._cv.notify_all()

    def destroy(self) -> None:
        """The C++ destructor (the wrapper's last reference gone): shut down, no longer alive on
        its VDevice."""
        self.shutdown()
        self.model._vdevice.live.discard(self)

"""Stand-in for HailoRT's Python layer hailo_platform.pyhailort.pyhailort (lab only, not HailoRT).

Follows hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py
(hailo-ai/hailort): the same class names and hierarchy, the ExceptionWrapper that re-raises the
extension's HailoRTStatusException as a class picked from the status *name*, with the same
messages and ``from`` the original (so ``int(exc.__cause__.args[0])`` is the status), and the
InferModel API (VDevice.create_infer_model, InferModel.input/output/configure,
ConfiguredInferModel.create_bindings/wait_for_async_ready/run/run_async/get_async_queue_size/
shutdown, Bindings.input/output .set_buffer/.get_buffer, AsyncInferJob.wait), run_async's
callback_wrapper (a device failure reaches the callback as create_exception_from_status's
exception, raised from nothing: no __cause__), and Device/VDevice constructors that run
gc.collect() as the real ones do (VDevice.get_physical_devices makes new Devices on every call).
Only what the sidecar and the fidelity probe use is here; the native side is _pyhailort (this
folder).
"""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _pyhailort
from ._pyhailort import FormatType  # noqa: F401 - re-exported like the real module

HAILO_UNIQUE_VDEVICE_GROUP_ID = "UNIQUE"


class HailoSchedulingAlgorithm:
    NONE = _pyhailort.SchedulingAlgorithm.NONE
    ROUND_ROBIN = _pyhailort.SchedulingAlgorithm.ROUND_ROBIN


class HailoRTException(Exception):
    pass


class InvalidProtocolVersionException(HailoRTException):
    pass


class HailoRTFirmwareControlFailedException(HailoRTException):
    pass


class HailoRTInvalidFrameException(HailoRTException):
    pass


class HailoRTUnsupportedOpcodeException(HailoRTException):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTEthException(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


# HailoRTPCIeDriverException is deprecated, use HailoRTDriverOperationFailedException instead
HailoRTPCIeDriverException = HailoRTDriverOperationFailedException


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


class HailoStatusInvalidValueException(Exception):
    pass


# Status name -> (class, message): create_exception_from_status; every other status gets a plain
# HailoRTException("libhailort failed with error: N (NAME)").
_BY_NAME: dict[str, tuple[type[HailoRTException], str]] = {
    "HAILO_UNSUPPORTED_CONTROL_PROTOCOL_VERSION": (
        InvalidProtocolVersionException,
        "HailoRT has failed because an invalid protocol version was received from device",
    ),
    "HAILO_FW_CONTROL_FAILURE": (
        HailoRTFirmwareControlFailedException,
        "libhailort control operation failed",
    ),
    "HAILO_UNSUPPORTED_OPCODE": (
        HailoRTUnsupportedOpcodeException,
        "HailoRT has failed because an unsupported opcode was sent to device",
    ),
    "HAILO_INVALID_FRAME": (HailoRTInvalidFrameException, "An invalid frame was received"),
    "HAILO_TIMEOUT": (
        HailoRTTimeout,
        "Received a timeout - hailort has failed because a timeout had occurred",
    ),
    "HAILO_STREAM_ABORT": (HailoRTStreamAborted, "Stream was aborted"),
    "HAILO_INVALID_OPERATION": (
        HailoRTInvalidOperationException,
        "Invalid operation. See hailort.log for more information",
    ),
    "HAILO_INVALID_ARGUMENT": (
        HailoRTInvalidArgumentException,
        "Invalid argument. See hailort.log for more information",
    ),
    "HAILO_NOT_FOUND": (HailoRTNotFoundException, "Item not found. See hailort.log for more information"),
    "HAILO_INVALID_HEF": (HailoRTInvalidHEFException, "Invalid HEF. See hailort.log for more information"),
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": (
        HailoRTHEFNotCompatibleWithDevice,
        "HEF file is not compatible with device. See hailort.log for more information",
    ),
    "HAILO_ETH_FAILURE": (HailoRTEthException, "Ethernet failure. See hailort.log for more information"),
    "HAILO_DRIVER_OPERATION_FAILED": (
        HailoRTDriverOperationFailedException,
        "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information",
    ),
    "HAILO_COMMUNICATION_CLOSED": (
        HailoCommunicationClosedException,
        "Communication closed failure. Check server-client connection",
    ),
    "HAILO_NETWORK_GROUP_NOT_ACTIVATED": (
        HailoRTNetworkGroupNotActivatedException,
        "Network group is not activated",
    ),
}


def get_status_message(status_code: int) -> str:
    status_str = _pyhailort.get_status_message(status_code)
    if status_str == "":
        raise HailoStatusInvalidValueException(f"Value {status_code} is not a valid status")
    return status_str


class ExceptionWrapper:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exception_type: Any, value: BaseException | None, traceback: Any) -> None:
        if value is not None and exception_type is _pyhailort.HailoRTStatusException:
            error_code = int(value.args[0])
            raise self.create_exception_from_status(error_code) from value

    @staticmethod
    def create_exception_from_status(error_code: int) -> HailoRTException:
        name = get_status_message(error_code)
        if name in _BY_NAME:
            cls, message = _BY_NAME[name]
            return cls(message)
        return HailoRTException(f"libhailort failed with error: {error_code} ({name})")


class AsyncInferCompletionInfo:
    def __init__(self, exception: HailoRTException | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> HailoRTException | None:
        return self._exception


class AsyncInferJob:
    def __init__(self, job: _pyhailort.AsyncInferJob) -> None:
        self._job = job

    def wait(self, timeout_ms: int) -> None:
        with ExceptionWrapper():
            self._job.wait(timeout_ms / 1000)


class InferModel:
    class InferStream:
        def __init__(self, infer_stream: _pyhailort.InferStream) -> None:
            self._infer_stream = infer_stream

        @property
        def name(self) -> str:
            with ExceptionWrapper():
                return self._infer_stream.name()

        @property
        def shape(self) -> list[int]:
            with ExceptionWrapper():
                return self._infer_stream.shape()

        def set_format_type(self, type: int) -> None:
            with ExceptionWrapper():
                self._infer_stream.set_format_type(type)

    def __init__(self, infer_model: _pyhailort.InferModel, hef_path: str) -> None:
        self._infer_model = infer_model
        self._hef_path = hef_path

    def set_batch_size(self, batch_size: int) -> None:
        with ExceptionWrapper():
            self._infer_model.set_batch_size(batch_size)

    def configure(self) -> ConfiguredInferModel:
        with ExceptionWrapper():
            return ConfiguredInferModel(self._infer_model.configure(), self)

    @property
    def input_names(self) -> list[str]:
        with ExceptionWrapper():
            return self._infer_model.get_input_names()

    @property
    def output_names(self) -> list[str]:
        with ExceptionWrapper():
            return self._infer_model.get_output_names()

    def input(self, name: str = "") -> InferModel.InferStream:
        with ExceptionWrapper():
            return self.InferStream(self._infer_model.input(name))

    def output(self, name: str = "") -> InferModel.InferStream:
        with ExceptionWrapper():
            return self.InferStream(self._infer_model.output(name))


class ConfiguredInferModel:
    class Bindings:
        class InferStream:
            def __init__(self, bindings: _pyhailort.Bindings, name: str) -> None:
                self._bindings = bindings
                self._name = name
                self._buffer: np.ndarray | None = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                with ExceptionWrapper():
                    if not buffer.flags.c_contiguous:
                        raise HailoRTException("Buffer must be C_CONTIGUOUS")
                    self._bindings.set(self._name, buffer)
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> np.ndarray | None:
                return self._buffer

        def __init__(
            self, bindings: _pyhailort.Bindings, input_names: list[str], output_names: list[str]
        ) -> None:
            self._bindings = bindings
            self._input_names = input_names
            self._output_names = output_names
            self._inputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}
            self._outputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}

        def _get(self, streams: dict[str, Any], names: list[str], name: str) -> Any:
            if name == "" and len(names) == 1:
                name = names[0]
            if name not in names:
                with ExceptionWrapper():
                    raise _pyhailort.fail(61)
            if name not in streams:
                streams[name] = self.InferStream(self._bindings, name)
            return streams[name]

        def input(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._get(self._inputs, self._input_names, name)  # type: ignore[no-any-return]

        def output(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._get(self._outputs, self._output_names, name)  # type: ignore[no-any-return]

        def get(self) -> _pyhailort.Bindings:
            return self._bindings

    def __init__(
        self, configured_infer_model: _pyhailort.ConfiguredInferModel, infer_model: InferModel
    ) -> None:
        self._configured_infer_model: _pyhailort.ConfiguredInferModel | None = configured_infer_model
        self._input_names = infer_model.input_names
        self._output_names = infer_model.output_names
        self._buffer_guards: deque[list[Any]] = deque()

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *exc: object) -> None:
        # The real wrapper drops its reference here; the C++ destructor then shuts the model down
        # (the stand-in's destroy()).
        if self._configured_infer_model is not None:
            self._configured_infer_model.destroy()
        self._configured_infer_model = None

    def _cim(self) -> _pyhailort.ConfiguredInferModel:
        if self._configured_infer_model is None:
            raise AttributeError("'NoneType' object has no attribute 'run_async'")
        return self._configured_infer_model

    def activate(self) -> None:
        with ExceptionWrapper():
            self._cim().activate()

    def create_bindings(
        self,
        input_buffers: dict[str, np.ndarray] | None = None,
        output_buffers: dict[str, np.ndarray] | None = None,
    ) -> ConfiguredInferModel.Bindings:
        with ExceptionWrapper():
            cpp = self._cim().create_bindings()
        bindings = self.Bindings(cpp, self._input_names, self._output_names)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        with ExceptionWrapper():
            self._cim().wait_for_async_ready(timeout_ms / 1000, frames_count)

    def run(self, bindings: list[ConfiguredInferModel.Bindings], timeout: int) -> None:
        with ExceptionWrapper():
            job = self.run_async(bindings)
            job.wait(timeout)

    def run_async(
        self,
        bindings: list[ConfiguredInferModel.Bindings],
        callback: Callable[..., None] | None = None,
    ) -> AsyncInferJob:
        buffers = []
        for b in bindings:
            for name in self._input_names:
                buffers.append(b.input(name).get_buffer())
            for name in self._output_names:
                buffers.append(b.output(name).get_buffer(None))
        self._buffer_guards.append(buffers)

        def callback_wrapper(error_code: int) -> None:
            cpp_cb_exception = (
                ExceptionWrapper.create_exception_from_status(error_code) if error_code else None
            )
            if callback:
                callback(completion_info=AsyncInferCompletionInfo(cpp_cb_exception))
            self._buffer_guards.popleft()

        with ExceptionWrapper():
            cpp_job = self._cim().run_async([b.get() for b in bindings], callback_wrapper)
        return AsyncInferJob(cpp_job)

    def get_async_queue_size(self) -> int:
        with ExceptionWrapper():
            return self._cim().get_async_queue_size()

    def shutdown(self) -> None:
        with ExceptionWrapper():
            self._cim().shutdown()


class Control:
    def __init__(self, device: _pyhailort.Device) -> None:
        self.__device = device
        # The real Control identifies the device when it is made (one control round trip).
        self._identify_info = self._device.identify()

    @property
    def _device(self) -> _pyhailort.Device:
        if not self.__device.is_valid():
            raise HailoRTInvalidOperationException(
                "The device in use has been released. This can happen if 'device.release()' has been "
                "called, or one-liner usage of control 'Device().control.XX()'"
            )
        return self.__device

    def get_chip_temperature(self) -> _pyhailort.TemperatureInfo:
        with ExceptionWrapper():
            return self._device.get_chip_temperature()


class Device:
    @classmethod
    def scan(cls) -> list[str]:
        return _pyhailort.Device.scan()

    def __init__(self, device_id: str | None = None) -> None:
        gc.collect()  # as the real constructor does, on every Device made
        self._device = None
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        self._device_id = device_id
        # The real class calls _pyhailort.Device.create without ExceptionWrapper (pyhailort.py).
        self._device = _pyhailort.Device.create(device_id)
        self._control_object = Control(self._device)

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def control(self) -> Control:
        return self._control_object

    def release(self) -> None:
        if self._device is not None:
            with ExceptionWrapper():
                self._device.release()
            self._device = None


class VDevice:
    def __init__(
        self, params: _pyhailort.VDeviceParams | None = None, *, device_ids: list[str] | None = None
    ) -> None:
        gc.collect()  # as the real constructor does
        self._vdevice: _pyhailort.VDevice | None = None
        self._params = params
        self._creation_pid = os.getpid()
        self._device_ids = device_ids
        self._open_vdevice()

    def _open_vdevice(self) -> None:
        if self._params is None:
            self._params = VDevice.create_params()
        with ExceptionWrapper():
            device_ids = [] if self._device_ids is None else self._device_ids
            self._vdevice = _pyhailort.VDevice.create(self._params, device_ids)

    def __enter__(self) -> VDevice:
        return self

    def release(self) -> None:
        if self._vdevice is not None:
            self._vdevice.release()
            self._vdevice = None

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()

    @staticmethod
    def create_params() -> _pyhailort.VDeviceParams:
        with ExceptionWrapper():
            return _pyhailort.VDeviceParams.default()

    def get_physical_devices_ids(self) -> list[str]:
        assert self._vdevice is not None
        with ExceptionWrapper():
            return self._vdevice.get_physical_devices_ids()

    def get_physical_devices(self) -> list[Device]:
        # A new Device (gc.collect, a handle of its own, an identify) for every id, every call.
        return [Device(dev_id) for dev_id in self.get_physical_devices_ids()]

    def create_infer_model(self, hef_source: str, name: str = "") -> InferModel:
        if os.getpid() != self._creation_pid:
            raise HailoRTException("InferModel can be created only from the process VDevice was created in.")
        assert self._vdevice is not None
        with ExceptionWrapper():
            infer_model_cpp_obj = self._vdevice.create_infer_model_from_file(hef_source, name)
        return InferModel(infer_model_cpp_obj, hef_source)

"""Hailo mode: HailoRT's Python API (module hailo_platform, InferModel API) on a Hailo-8/8L.

hailo_platform is imported here and nowhere else. The device is opened once at load() and kept
open; a VDevice belongs to the process that created it, so the server runs one process and
serialises inference calls on one thread.

What HailoRT's own sources define, and this module follows (hailo-ai/hailort, v4.23.0):
- The async queue is bounded. ConfiguredInferModel.run(list) is run_async + wait, and run_async
  pushes bindings one at a time; a push with no free slot fails with status 82
  (HAILO_QUEUE_IS_FULL) and shuts the configured model down (infer_model.cpp,
  async_infer_runner.cpp). So windows go to the device in chunks of at most
  get_async_queue_size(), each after wait_for_async_ready(frames_count=len(chunk)) (4.23's
  pipeline holds about twice that: the documented size is the one relied on).
- A frame that fails on the device does not fail job.wait(): the status reaches the job's callback
  only (infer_model.cpp, AsyncInferJobImpl::wait). Every chunk gets a callback that keeps it.
- Errors arrive as Python classes re-raised ``from`` the extension's HailoRTStatusException(str(status))
  (pyhailort.py, ExceptionWrapper): the status number, not the message, decides the kind. A failure
  delivered to the callback is built by create_exception_from_status and raised from nothing
  (pyhailort.py, run_async's callback_wrapper): its status is read from its text
  ("libhailort failed with error: N (NAME)") or its class.
- Every buffer is handed over through pybind11's mutable_data() (infer_model_api.cpp set_buffer):
  a read-only array (a binary body's np.frombuffer view) raises ValueError, so input is made
  writeable and C-contiguous once per call, where it is not already.
- A VDevice keeps every core op it configured (vdevice.cpp VDeviceBase::configure) and the device
  refuses the 33rd (vdma_device.cpp create_core_ops_metadata, status 6): DeviceHandle counts them,
  and the service opens a fresh VDevice for a swap that would need a 33rd.
- In 4.23 a missing driver is status 74 like a busy device (driver_os_specific.cpp list_devices:
  no /sys/class/hailo_chardev is an empty list): the host's sysfs tells them apart.
- Stream shapes have no batch axis: NHWC inputs are [H, W, C], NC outputs [C], NHW [H, W]
  (bindings_common.hpp, get_pybind_shape).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, ModelLoadError
from ..shape import CHANNELS, LATENT_DIM, WINDOW_LEN
from ..versions import dist_version
from .base import ModelInfo, file_sha256

RUN_TIMEOUT_MS = 1000
# Core ops one physical device takes (vdma_device.cpp, CONTROL_PROTOCOL__MAX_CONTEXT_SWITCH_APPLICATIONS).
MAX_CORE_OPS = 32
# Where the host's sysfs is (a container sees the host's, read-only).
SYSFS = Path("/sys")
# create_exception_from_status's text for a status without a class of its own (pyhailort.py).
_STATUS_TEXT = re.compile(r"^libhailort failed with error: (\d+) \(")
# Input shapes as HailoRT reports them that read a (100, 9) window row by row: the time steps stay
# the outer axis and the channels the inner one. [100, 9] is the NHW order's [H, W].
WINDOW_SHAPES = (
    [1, WINDOW_LEN, CHANNELS],
    [WINDOW_LEN, CHANNELS, 1],
    [WINDOW_LEN, 1, CHANNELS],
    [WINDOW_LEN, CHANNELS],
)

# HailoRT status (include/hailo/hailort.h) -> (kind, what to do). While opening, 36 is refined by a
# look at the device node (HailoRT reports a refused open() as a failed driver operation) and 74 by
# a look at the host's sysfs (no driver, no device, or another holder).
_STATUS: dict[int, tuple[str, str]] = {
    4: ("timeout", "the device did not answer in time (status 4 HAILO_TIMEOUT): check `dmesg | grep hailo`"),
    6: (
        "invalid_operation",
        "HailoRT refused the operation (status 6 HAILO_INVALID_OPERATION): hailort.log names the check "
        "that failed (e.g. a 33rd model configured on one VDevice)",
    ),
    8: (
        "internal_failure",
        "HailoRT failed internally (status 8 HAILO_INTERNAL_FAILURE): see hailort.log (HAILORT_LOGGER_PATH) "
        "and `dmesg | grep hailo`; reopening",
    ),
    16: (
        "firmware_mismatch",
        "the device runs another firmware than this HailoRT (status 16 HAILO_UNSUPPORTED_FW_VERSION): "
        "install "
        "hailofw of the same version as hailort and reboot (the firmware is loaded at boot)",
    ),
    26: ("hef_invalid", "the HEF is invalid (status 26 HAILO_INVALID_HEF): compile the release again"),
    36: (
        "driver_error",
        "a hailo_pci driver operation failed (status 36 HAILO_DRIVER_OPERATION_FAILED): see `dmesg | "
        "grep hailo`",
    ),
    63: (
        "pipeline_aborted",
        "the configured model was shut down after an earlier error (status 63 HAILO_STREAM_ABORT): reopening",
    ),
    64: (
        "driver_missing",
        "no Hailo driver is loaded (status 64 HAILO_DRIVER_NOT_INSTALLED): check `dkms status hailo_pci` "
        "and `lsmod | grep hailo_pci`; after a kernel upgrade build it for the running kernel with "
        "`dkms autoinstall -k $(uname -r)` (it needs that kernel's headers) and reboot; without DKMS "
        "install hailo-dkms (or hailo-all)",
    ),
    73: (
        "device_in_use",
        "the Hailo device is in use by another process (status 73 HAILO_DEVICE_IN_USE): "
        "`fuser -v /dev/hailo0`, `docker ps`; stop the other user",
    ),
    74: (
        "device_unavailable",
        "no Hailo device is free (status 74 HAILO_OUT_OF_PHYSICAL_DEVICES) although the driver is loaded "
        "and lists one: another process or a stale container holds it; `fuser -v /dev/hailo0`, "
        "`docker ps`, and stop the other user",
    ),
    76: (
        "driver_mismatch",
        "HailoRT driver and library versions differ (status 76 HAILO_INVALID_DRIVER_VERSION): install "
        "hailo_pci "
        "and libhailort of the same version (hailort role, hailort_version_set) and reboot",
    ),
    82: (
        "queue_full",
        "more frames were pushed than the model's queue holds (status 82 HAILO_QUEUE_IS_FULL); HailoRT "
        "shut the "
        "configured model down: reopening",
    ),
    87: (
        "driver_timeout",
        "the driver timed out waiting for the device (status 87 HAILO_DRIVER_TIMEOUT): see `dmesg | grep "
        "hailo`; an unstable PCIe link (try without dtparam=pciex1_gen=3) or a hung device (reboot); "
        "reopening",
    ),
    91: (
        "hef_corrupted",
        "the HEF file is corrupted (status 91 HAILO_HEF_FILE_CORRUPTED): deploy the release again from "
        "GPUSrv",
    ),
    92: (
        "hef_not_supported",
        "this HailoRT cannot read the HEF (status 92 HAILO_HEF_NOT_SUPPORTED): it was compiled by a Dataflow "
        "Compiler paired with another HailoRT; compile with the DFC paired with this HailoRT (manifest.json "
        "hailort_version) or install the matching HailoRT set",
    ),
    93: (
        "hef_arch",
        "the HEF was compiled for another Hailo architecture than this device (status 93 "
        "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE): a hailo8 HEF does not run on a Hailo-8L; recompile with the "
        "right --hw-arch",
    ),
}
# Classes create_exception_from_status picks by the status's name (pyhailort.py), for an exception
# without a __cause__ (a callback's).
_CLASSES = {
    "HailoRTTimeout": 4,
    "HailoRTInvalidOperationException": 6,
    "HailoRTInvalidHEFException": 26,
    "HailoRTDriverOperationFailedException": 36,
    "HailoRTStreamAborted": 63,
    "HailoRTHEFNotCompatibleWithDevice": 93,
}


def hailort_status(exc: BaseException) -> int | None:
    """The HailoRT status behind an exception: the extension's HailoRTStatusException carries it
    as args[0]; pyhailort raises its own classes ``from`` that one. An exception without that
    cause (a run_async callback's) names the status in its text or by its class."""
    for candidate in (exc.__cause__, exc):
        if candidate is not None and type(candidate).__name__ == "HailoRTStatusException" and candidate.args:
            try:
                return int(candidate.args[0])
            except (TypeError, ValueError):
                return None
    match = _STATUS_TEXT.match(str(exc))
    if match:
        return int(match.group(1))
    names = [cls.__name__ for cls in type(exc).__mro__]
    return next((_CLASSES[n] for n in names if n in _CLASSES), None)


def driver_problem(sysfs: Path) -> tuple[str, str] | None:
    """(kind, why) when the host shows no usable Hailo driver or device, None when it lists one.
    HailoRT 4.23 lists devices from {sysfs}/class/hailo_chardev (no folder: no devices) and the
    loaded module is {sysfs}/module/hailo_pci."""
    chardev, module = sysfs / "class" / "hailo_chardev", sysfs / "module" / "hailo_pci"
    if not module.is_dir() or not chardev.is_dir():
        missing = ", ".join(str(p) for p in (module, chardev) if not p.is_dir())
        return (
            "driver_missing",
            f"the Hailo driver is not loaded ({missing} missing; HailoRT 4.23 reports that as status 74 "
            "HAILO_OUT_OF_PHYSICAL_DEVICES): check `dkms status hailo_pci` and `lsmod | grep hailo_pci`; "
            "when DKMS has no build for the running kernel (after a kernel upgrade) run `dkms autoinstall "
            "-k $(uname -r)` (it needs that kernel's headers) and reboot; without DKMS install hailo-dkms "
            "(or hailo-all)",
        )
    if not any(chardev.iterdir()):
        return (
            "device_missing",
            f"the hailo_pci driver is loaded but lists no device ({chardev} is empty; status 74 "
            "HAILO_OUT_OF_PHYSICAL_DEVICES): check the AI Kit/HAT is seated (`lspci | grep -i hailo`) "
            "and `dmesg | grep -i hailo`; if the PCIe link fails, try without dtparam=pciex1_gen=3",
        )
    return None


def node_access_problem(node: Path) -> tuple[str, str] | None:
    """(kind, why) this process cannot open the device node, or None when it can."""
    try:
        st = node.stat()
    except FileNotFoundError:
        return (
            "device_node_missing",
            f"{node} does not exist in this container: map the host's node under the same name "
            f"(devices: [{node}:{node}]; HailoRT opens /dev/ + the name under /sys/class/hailo_chardev)",
        )
    uid, groups = os.geteuid(), {os.getegid(), *os.getgroups()}
    if uid == 0:
        return None
    if st.st_uid == uid:
        ok = st.st_mode & 0o600 == 0o600
    elif st.st_gid in groups:
        ok = st.st_mode & 0o060 == 0o060
    else:
        ok = st.st_mode & 0o006 == 0o006
    if ok:
        return None
    return (
        "permission_denied",
        f"permission denied on {node} (owner {st.st_uid}, group {st.st_gid}, mode "
        f"{st.st_mode & 0o777:04o}) for "
        f"uid {uid} with groups {sorted(groups)}: give the container the hailo group (group_add: the group's "
        "GID, HAILO_GID) or fix the udev rule (hailort role: GROUP=hailo, MODE=0660)",
    )


def classify(
    exc: BaseException, device: Path, opening: bool = True, sysfs: Path | None = None
) -> tuple[str, str]:
    """Maps a HailoRT exception to (kind, actionable message). While opening, the host is looked
    at: status 36 is HailoRT's report of a refused open() of the node (the node is checked), and
    74 is also what a missing driver or device gives (the sysfs under SYSFS is checked)."""
    status = hailort_status(exc)
    text = f"{type(exc).__name__}: {exc}"
    problem = None
    if status == 36 and opening:
        problem = node_access_problem(device)
    elif status == 74 and opening:
        problem = driver_problem(SYSFS if sysfs is None else sysfs)
    if problem is not None:
        kind, why = problem
        return kind, f"{why} [{text}]"
    if status in _STATUS:
        kind, hint = _STATUS[status]
        return kind, f"{hint} [{text}]"
    suffix = f" (status {status})" if status is not None else ""
    return "hailort", f"HailoRT error{suffix}: {text}"


def root_cause(errors: list[BaseException], device: Path) -> tuple[str, str]:
    """(kind, message) of the failure an inference reports among the ERRORS it saw (callbacks'
    first, then what was raised). HailoRT's AsyncPipeline::shutdown stores the latest status, and
    the abort after a failed push stores HAILO_STREAM_ABORT (63) (async_infer_runner.cpp): a job
    completed or a push made after it reports 63, whatever failed first. So 63 is reported only
    when no other status is known."""
    cause = next((e for e in errors if hailort_status(e) != 63), errors[0])
    return classify(cause, device, opening=False)


def _is_hailort_error(exc: BaseException) -> bool:
    return any(cls.__name__ in ("HailoRTException", "HailoRTStatusException") for cls in type(exc).__mro__)


def _hailort_version(hp: Any) -> str:
    # The binding may come from python3-hailort without dist metadata.
    return dist_version("hailort") or str(getattr(hp, "__version__", "unknown"))


class DeviceHandle:
    """One VDevice, opened once and shared by the models configured on it, with what HailoRT does
    not tell: how many core ops it configured (each model once, a failed configure included:
    vdevice.cpp keeps them all until the VDevice goes), and one Device handle for control reads,
    opened on first use and kept (pyhailort.py's Device() runs gc.collect(), opens the node and
    identifies the device: not something to do every few seconds)."""

    def __init__(self, hp: Any) -> None:
        self._hp = hp
        params = hp.VDevice.create_params()
        # ROUND_ROBIN: the scheduler runs the model without activate(), and several models can
        # share the device (the default is NONE).
        params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
        self.vdevice = hp.VDevice(params)
        self.core_ops = 0
        self._lock = threading.Lock()
        self._control: Any = None
        self._released = False

    @property
    def full(self) -> bool:
        """True when one more configure would be the device's 33rd core op."""
        return self.core_ops >= MAX_CORE_OPS

    def create_infer_model(self, path: Path) -> Any:
        return self.vdevice.create_infer_model(str(path))

    def configure(self, infer_model: Any) -> Any:
        # Counted before the call: a configure that fails may still hold its core op.
        self.core_ops += 1
        return infer_model.configure()

    def temperature(self) -> Any:
        """The chip temperature through the one control handle (Device.control.get_chip_temperature)."""
        with self._lock:
            if self._released:
                raise ModelLoadError("device_closed", "the device is not open")
            if self._control is None:
                (device_id, *_others) = self.vdevice.get_physical_devices_ids()
                self._control = self._hp.Device(device_id)
            try:
                return self._control.control.get_chip_temperature()
            except Exception:
                # A handle that failed is not asked again: the next read opens a new one.
                control, self._control = self._control, None
                with contextlib.suppress(Exception):
                    control.release()
                raise

    def release(self) -> None:
        with self._lock:
            self._released = True
            control, self._control = self._control, None
        for handle in (control, self.vdevice):
            if handle is not None:
                with contextlib.suppress(Exception):  # best effort: the device may have failed
                    handle.release()


class HailoBackend:
    mode = "hailo"
    kind = "hef"
    blocking = True

    def __init__(
        self,
        path: Path,
        num_motifs: int,
        device: Path = Path("/dev/hailo0"),
        expected_input_shape: list[int] | None = None,
        shared: DeviceHandle | None = None,
    ) -> None:
        self._path = path
        self._num_motifs = num_motifs
        self._device = device
        self._expected_input_shape = expected_input_shape
        # A device to share (a second model on the same VDevice); None: this backend opens its own.
        self._shared = shared
        self._handle: DeviceHandle | None = None
        self._configured_ctx: Any = None
        self._cim: Any = None
        self._input = ""
        self._input_shape: list[int] = []
        self._outputs: dict[str, str] = {}  # contract name -> HEF output name
        self._output_shapes: dict[str, list[int]] = {}
        self.queue_size = 1

    @property
    def handle(self) -> DeviceHandle | None:
        return self._handle

    @property
    def core_ops(self) -> int:
        """Core ops configured on this backend's VDevice (what /metrics reports)."""
        return self._handle.core_ops if self._handle is not None else 0

    @property
    def device_full(self) -> bool:
        """A model more on this VDevice would be its 33rd core op: the next one needs a fresh VDevice."""
        return self._handle is not None and self._handle.full

    def take_device_from(self, other: object) -> None:
        """After a swap: this backend, opened on OTHER's VDevice, owns it from now on, so closing
        OTHER releases only its model and leaves the device open."""
        if isinstance(other, HailoBackend) and self._handle is not None and self._handle is other._handle:
            self._shared = None
            other._shared = other._handle

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
            kind, message = classify(exc, self._device)
            raise ModelLoadError(kind, message) from None
        return ModelInfo(
            mode="hailo",
            kind=self.kind,
            model_path=str(self._path),
            sha256=sha,
            device=f"hailo ({self._device})",
            versions={"hailort": _hailort_version(hp)},
            input_shape=list(self._input_shape),
            async_queue_size=self.queue_size,
        )

    def _open(self, hp: Any) -> None:
        self._handle = self._shared if self._shared is not None else DeviceHandle(hp)
        infer_model = self._handle.create_infer_model(self._path)
        infer_model.set_batch_size(1)
        names_in = list(infer_model.input_names)
        if len(names_in) != 1:
            raise ModelLoadError("contract", f"HEF has {len(names_in)} inputs, expected 1")
        self._input = names_in[0]
        inp = infer_model.input(self._input)
        self._input_shape = [int(d) for d in inp.shape]
        self._check_input_shape()
        inp.set_format_type(hp.FormatType.FLOAT32)
        self._outputs = self._match_outputs(infer_model)
        for hef_name in self._outputs.values():
            infer_model.output(hef_name).set_format_type(hp.FormatType.FLOAT32)
            self._output_shapes[hef_name] = [int(d) for d in infer_model.output(hef_name).shape]
        self._configured_ctx = self._handle.configure(infer_model)
        self._cim = self._configured_ctx.__enter__()
        self.queue_size = max(1, int(self._cim.get_async_queue_size()))

    def _check_input_shape(self) -> None:
        shape = self._input_shape
        if shape not in WINDOW_SHAPES:
            raise ModelLoadError(
                "contract",
                f"HEF input {self._input} has shape {shape} (HailoRT reports [H, W, C] without a batch "
                "axis); "
                f"a window of {WINDOW_LEN} time steps x {CHANNELS} channels is read row by row only by "
                f"{', '.join(str(s) for s in WINDOW_SHAPES)}. Compile from an ONNX input [N, {WINDOW_LEN}, "
                f"{CHANNELS}] or [N, 1, {WINDOW_LEN}, {CHANNELS}] (the DFC reads NCHW and lays it out NHWC), "
                "or move the transpose into the model",
            )
        expected = self._expected_input_shape
        if expected is not None and list(expected) != shape:
            raise ModelLoadError(
                "contract",
                f"HEF input {self._input} has shape {shape}, but the release's manifest.json says the "
                "compiler "
                f"parsed {list(expected)}: this HEF is not the one that release was compiled into",
            )

    def device_status(self) -> dict[str, float]:
        """The device's chip temperatures (°C, by sensor) through the VDevice's one control handle:
        Device.control.get_chip_temperature() returns ts0_temperature and ts1_temperature
        (pyhailort.py, Control). Called from a reader thread a few seconds apart, never on the
        inference path (a control read does not wait for inference); raises what HailoRT raises."""
        handle = self._handle
        if handle is None:
            raise ModelLoadError("device_closed", "the device is not open")
        info = handle.temperature()
        return {"ts0": float(info.ts0_temperature), "ts1": float(info.ts1_temperature)}

    def _match_outputs(self, infer_model: Any) -> dict[str, str]:
        """Finds the latent (64) and motif (NUM_MOTIFS) outputs by name, else by size."""
        sizes = {n: int(np.prod(infer_model.output(n).shape)) for n in infer_model.output_names}
        found: dict[str, str] = {}
        for contract_name, size in (("latent", LATENT_DIM), ("motif_scores", self._num_motifs)):
            by_name = [n for n in sizes if contract_name.split("_", maxsplit=1)[0] in n.lower()]
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
        # set_buffer needs a writeable, C-contiguous array (pybind11's mutable_data): a copy only
        # where x is not one already (a binary body is a read-only view of the request's bytes).
        x = np.require(x, np.float32, ("C_CONTIGUOUS", "WRITEABLE"))
        n = x.shape[0]
        latent = np.empty((n, LATENT_DIM), np.float32)
        motifs = np.empty((n, self._num_motifs), np.float32)
        views = {self._outputs["latent"]: latent, self._outputs["motif_scores"]: motifs}
        failures: list[BaseException] = []

        def done(completion_info: Any) -> None:  # runs on a HailoRT thread
            if completion_info.exception is not None:
                failures.append(completion_info.exception)

        try:
            jobs = []
            for start in range(0, n, self.queue_size):
                stop = min(start + self.queue_size, n)
                # Never more frames than the queue has free slots: a push past them is status 82
                # and shuts the configured model down.
                self._cim.wait_for_async_ready(RUN_TIMEOUT_MS, frames_count=stop - start)
                bindings = []
                for i in range(start, stop):
                    b = self._cim.create_bindings(
                        output_buffers={
                            name: out[i].reshape(self._output_shapes[name]) for name, out in views.items()
                        }
                    )
                    b.input(self._input).set_buffer(x[i].reshape(self._input_shape))
                    bindings.append(b)
                jobs.append(self._cim.run_async(bindings, done))
            for job in jobs:
                job.wait(RUN_TIMEOUT_MS)
        except Exception as exc:
            if not _is_hailort_error(exc):
                raise
            raise DeviceError(*root_cause([*failures, exc], self._device)) from None
        if failures:
            raise DeviceError(*root_cause(failures, self._device))
        return latent, motifs

    def close(self) -> None:
        ctx, handle = self._configured_ctx, self._handle
        self._cim = self._configured_ctx = self._handle = None
        # Best effort: the device may have failed already.
        if ctx is not None:
            with contextlib.suppress(Exception):
                ctx.__exit__(None, None, None)
        if handle is not None and handle is not self._shared:
            handle.release()

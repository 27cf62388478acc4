"""Stand-in only (not in HailoRT): the faults a test injects into the simulated device, and HEFs.

Faults come from ``CONTROL`` (in-process) and the JSON file named by HAILO_STANDIN_CONTROL (read on
every call, so a test can change them while a server process runs):
  device: bool            a Hailo-8 is present (default true); false: VDevice() fails with 74
  sysfs: str              a folder read as /sys: the device is listed only when its
                          class/hailo_chardev holds an entry (no folder: no driver, 74 as in 4.23)
  open_status: int        VDevice() and Device() fail with this status (74 busy, 76 driver,
                          16 firmware, 36 ioctl/permission, 64 no driver as 4.17-4.22 said it)
  device_arch: str        the device ("hailo8" or "hailo8l"); configure() of another arch's HEF: 93
  async_queue_size: int   the configured model's queue (default 4)
  frame_time_s: float     device time per frame (default 0.0002)
  delay_s: float          run_async sleeps this long first (requests in flight for shutdown tests)
  fail_frames: int        the next N frames fail on the device with fail_status (default 36); the
                          pipeline is shut down by the first one (decremented in the file too)
  temperature_c: float    what get_chip_temperature reports (default 47.5)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hailo_platform.pyhailort import _pyhailort

CONTROL: dict[str, Any] = {}


def control() -> dict[str, Any]:
    data = dict(CONTROL)
    path = os.environ.get("HAILO_STANDIN_CONTROL")
    if path and Path(path).exists():
        data.update(json.loads(Path(path).read_text() or "{}"))
    return data


def consume_frame_failure() -> int:
    """The status of the next injected frame failure, or 0 (one is used up per call)."""
    if CONTROL.get("fail_frames", 0) > 0:
        CONTROL["fail_frames"] -= 1
        return int(CONTROL.get("fail_status", 36))
    path = os.environ.get("HAILO_STANDIN_CONTROL")
    if path and Path(path).exists():
        data = json.loads(Path(path).read_text() or "{}")
        if data.get("fail_frames", 0) > 0:
            data["fail_frames"] -= 1
            Path(path).write_text(json.dumps(data))
            return int(data.get("fail_status", 36))
    return 0


def held_vdevices() -> int:
    """VDevices of this process that hold the simulated device."""
    return len(_pyhailort._HELD)


def configured_core_ops() -> int:
    """Core ops configured on the device through the VDevice that holds it (0: none holds it)."""
    return sum(vdevice.core_ops for vdevice in _pyhailort._HELD)


def hailort_log() -> list[str]:
    """The lines libhailort would have written to hailort.log."""
    return list(_pyhailort.LOG)


def devices_opened() -> int:
    """Device handles opened with Device.create (each Device() and get_physical_devices() opens one)."""
    return len(_pyhailort.OPENED)


def released_under_models() -> list[int]:
    """VDevice releases that left configured models alive (a use-after-free in HailoRT), each with
    how many."""
    return list(_pyhailort.RELEASED_UNDER_MODELS)


def reset() -> None:
    for vdevice in list(_pyhailort._HELD):
        vdevice.release()
    CONTROL.clear()
    _pyhailort.LOG.clear()
    _pyhailort.OPENED.clear()
    _pyhailort.RELEASED_UNDER_MODELS.clear()


def write_standin_hef(
    path: Path,
    num_motifs: int = 12,
    arch: str = "hailo8",
    input_shape: tuple[int, ...] = (100, 9, 1),
    latent: int = 64,
    net: str = "imu_encoder",
) -> Path:
    """A stand-in HEF as the stand-in DFC compiles it (input [H, W, C]; fc2 = latent, fc3 = motifs)."""
    import standin_hef

    spec = standin_hef.network(
        net, arch, list(input_shape), {"fc2": latent, "fc3": num_motifs}, {"fc3": "sigmoid"}
    )
    Path(path).write_bytes(standin_hef.encode(spec))
    return Path(path)

"""The Hailo device watched off the request path (hailo mode, the faithful stand-in): its chip
temperature (Device.control.get_chip_temperature through one Device handle kept with the VDevice)
and whether it answers, as metrics the fleet's alerts read."""

from __future__ import annotations

import re
import time
from pathlib import Path

from conftest import ClientFactory
from hailo_platform import standin


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_metric(client, name: str, want: float, timeout: float = 5.0) -> float | None:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = metric(client.get("/metrics").text, name)
        if value == want:
            return value
        time.sleep(0.05)
    return value


def test_temperature_and_device_up_are_read_in_the_background(make_client: ClientFactory, hef: Path) -> None:
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, DEVICE_POLL_S="0.05")
    assert wait_metric(client, 'hailo_sidecar_device_temperature_celsius{sensor="ts0"}', 47.5) == 47.5
    assert (
        metric(client.get("/metrics").text, 'hailo_sidecar_device_temperature_celsius{sensor="ts1"}') == 47.9
    )
    assert metric(client.get("/metrics").text, "hailo_sidecar_device_up") == 1.0
    standin.CONTROL["temperature_c"] = 86.0
    assert wait_metric(client, 'hailo_sidecar_device_temperature_celsius{sensor="ts0"}', 86.0) == 86.0
    # Inference is not held up by the reader.
    assert client.post("/infer", json={"x": [[0.1] * 9] * 100}).status_code == 200


def test_the_temperature_is_read_through_one_device_opened_once(
    make_client: ClientFactory, hef: Path
) -> None:
    """pyhailort's VDevice.get_physical_devices() makes a new Device on every call (gc.collect(),
    a handle of its own, an identify control): the reader opens one and keeps it."""
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, DEVICE_POLL_S="0.02")
    for value in (60.0, 61.0, 62.0):
        standin.CONTROL["temperature_c"] = value
        assert wait_metric(client, 'hailo_sidecar_device_temperature_celsius{sensor="ts0"}', value) == value
    assert standin.devices_opened() == 1


def test_no_device_metrics_without_a_device(make_client: ClientFactory) -> None:
    client = make_client(INFER_MODE="stub", DEVICE_POLL_S="0.05")
    time.sleep(0.2)
    text = client.get("/metrics").text
    assert "hailo_sidecar_device_temperature_celsius{" not in text
    assert metric(text, "hailo_sidecar_device_up") == 0.0

"""Image and Compose checks against the real Docker engine and the lab registry.

They read build/images.json, the record images/runtime/build.sh writes (`make images`, which the
test command runs first). The runtime image is linux/arm64 only: here it runs under QEMU.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from dockerutil import IMAGES_JSON


@pytest.fixture(scope="session")
def images() -> dict[str, Any]:
    if not IMAGES_JSON.is_file():
        pytest.fail(f"{IMAGES_JSON} is missing: build the image first (make images)")
    data: dict[str, Any] = json.loads(IMAGES_JSON.read_text())
    return data

"""Image and Compose checks against the real Docker engine and the lab registry.

They read build/images.json, written by scripts/images.sh (`make images`), which the test
command runs first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from dockerutil import IMAGES_JSON


@pytest.fixture(scope="session")
def images() -> dict[str, Any]:
    if not IMAGES_JSON.is_file():
        pytest.fail(f"{IMAGES_JSON} is missing: build the images first (make images)")
    data: dict[str, Any] = json.loads(IMAGES_JSON.read_text())
    return data


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`platform` parameters come from the images that were built."""
    if "platform" in metafunc.fixturenames:
        built = sorted(json.loads(IMAGES_JSON.read_text())["platforms"]) if IMAGES_JSON.is_file() else []
        metafunc.parametrize("platform", built or ["(no images built)"])

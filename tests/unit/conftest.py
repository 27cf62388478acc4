"""Fixtures: apps built from explicit settings, the reference ONNX model, stand-in HEF files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

# The stand-ins (HailoRT's binding, the DFC) live with the lab: lab/standins.
STANDINS = Path(__file__).resolve().parents[2] / "lab" / "standins"
if str(STANDINS) not in sys.path:
    sys.path.insert(0, str(STANDINS))

from hailo_platform import standin  # noqa: E402  (the stand-in's fault controls)

from sidecar_app.app import create_app  # noqa: E402
from sidecar_app.backends.base import file_sha256  # noqa: E402
from sidecar_app.settings import load_settings  # noqa: E402
from sidecar_app.tools.refmodel import reference_model, sample_windows  # noqa: E402


@pytest.fixture
def on_path(tmp_path: Path) -> Callable[[str, str], dict[str, str]]:
    """on_path(NAME, SCRIPT): a test double of the command NAME (a shell SCRIPT) first on PATH;
    returns the environment entries that put it there."""
    bin_dir = tmp_path / "bin"

    def put(name: str, script: str) -> dict[str, str]:
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
        return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    return put


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_model(tmp_path_factory.mktemp("models") / "model.onnx")


@pytest.fixture(scope="session")
def onnx_sha(onnx_model: Path) -> str:
    return file_sha256(onnx_model)


@pytest.fixture
def hef(tmp_path: Path) -> Path:
    return standin.write_standin_hef(tmp_path / "model.hef")


@pytest.fixture(autouse=True)
def _reset_standin() -> Iterator[None]:
    standin.reset()
    yield
    standin.reset()


@pytest.fixture(autouse=True)
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _reset_standin: None) -> Path:
    """A host's /sys with the hailo_pci driver loaded and one device listed, read by the stand-in
    HailoRT (its device scan) and by the sidecar's look at the host; a test removes parts of it."""
    from sidecar_app.backends import hailo

    root = tmp_path / "sys"
    (root / "class" / "hailo_chardev" / "hailo0").mkdir(parents=True)
    (root / "module" / "hailo_pci").mkdir(parents=True)
    (root / "module" / "hailo_pci" / "version").write_text("4.23.0\n")
    monkeypatch.setattr(hailo, "SYSFS", root)
    standin.CONTROL["sysfs"] = str(root)
    return root


@pytest.fixture
def windows() -> np.ndarray:
    return sample_windows(8)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """make_client(INFER_MODE="onnx", ONNX_PATH=...) -> a started TestClient."""
    clients: list[TestClient] = []

    def factory(**env: object) -> TestClient:
        settings = load_settings(**{k.lower(): v for k, v in env.items()})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def stub(make_client: ClientFactory) -> TestClient:
    return make_client(INFER_MODE="stub")

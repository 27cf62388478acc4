"""The collection tarball as `make collection` builds it, checked the way Galaxy and Automation Hub
import it and the way the oldest supported Ansible runs it (`make galaxy-check`). The venvs these
tests use next to .venv are made by venvs.py from pinned files."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import venvs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tarball() -> Path:
    """dist/NAMESPACE-NAME-VERSION.tar.gz, built now by `make collection`."""
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = ROOT / "dist" / f"{galaxy['namespace']}-{galaxy['name']}-{version}.tar.gz"
    built.unlink(missing_ok=True)
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True, capture_output=True)
    assert built.is_file()
    return built


@pytest.fixture(scope="session")
def collection(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball unpacked where ansible-test wants a collection: ansible_collections/NS/NAME."""
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    where = tmp_path_factory.mktemp("tree") / "ansible_collections" / galaxy["namespace"] / galaxy["name"]
    where.mkdir(parents=True)
    with tarfile.open(tarball) as t:
        t.extractall(where, filter="data")
    return where


@pytest.fixture(scope="session")
def galaxy_venv() -> Path:
    return venvs.ensure("galaxy")


@pytest.fixture(scope="session")
def oldest_venv() -> Path:
    return venvs.ensure("oldest")

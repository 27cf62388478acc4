"""The lab's tests run against the lab's hosts (lab/inventory) after the steps of the test
command's lab stage (lab/scripts/test.py): bare/ on the hosts as `lab.py hosts` leaves them, converged/
after `make lab`, then rollout/ (it changes the release the Pis serve) and pull/; drills/ (faults
injected into the Pis, each repaired) after them, by `lab/scripts/test.py drills`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import subprocess
from collections.abc import Iterator

import pytest
from labplay import ROOT


@pytest.fixture(scope="session")
def installed_playbooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The collection as a Galaxy user gets it: the tarball `make collection` builds, installed into
    a collections folder of its own; returns its playbooks/ (labplay.play then uses that install)."""
    work = tmp_path_factory.mktemp("galaxy")
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    subprocess.run([galaxy, "collection", "build", "--force", "--output-path", str(work), str(ROOT)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    (tarball,) = work.glob("synchrony-hailo_pipeline-*.tar.gz")
    subprocess.run([galaxy, "collection", "install", "--force", "--no-deps", "-p", str(work / "collections"),
                    str(tarball)], check=True, capture_output=True, text=True)  # fmt: skip
    yield work / "collections" / "ansible_collections" / "synchrony" / "hailo_pipeline" / "playbooks"

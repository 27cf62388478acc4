"""Fault drills on the lab's Pis (docs/reliability.md): each test injects a fault a fleet of Pis
meets, then checks the outcome and that nothing was lost. They run after the rollout tests (both
Pis serve release C, lab-C) and leave the Pis serving a complete release, as the next run of
pi.yml expects. Tools: drill.py."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from drill import note
from labplay import LAB, image_record, play, release


@pytest.fixture(scope="session")
def releases() -> dict[str, Path]:
    """The lab's releases (lab/playbooks/releases.yml; made by the rollout tests already)."""
    built = play("lab/playbooks/releases.yml")
    assert built.rc == 0, built.out[-3000:]
    return {v: release(v) for v in ("1.0.0", "1.1.0", "1.2.0", "1.5.0")}


@pytest.fixture
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Records the drill's own time (what it adds to the test command)."""
    t0 = time.monotonic()
    yield
    note(request.node.name, ci_seconds=round(time.monotonic() - t0))


@pytest.fixture(scope="session")
def drill_image() -> str:
    """Another runtime image for the image-change drills: the lab's image and one more layer (32
    MB that do not compress, so a pull takes a while), pushed to the lab registry's repository of
    the lab image (make lab-down deletes its tags). Built FROM the pushed image with a COPY only:
    nothing runs under QEMU. Returns it by digest."""
    base = image_record()["ref"]
    work = LAB / "drill-image"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "filler").write_bytes(random.Random(28).randbytes(32 * 2**20))
    (work / "Dockerfile").write_text(f"FROM {base}\nCOPY filler /opt/drill-filler\n")
    repo = base.split("@")[0]
    meta = work / "meta.json"
    subprocess.run(["docker", "buildx", "build", "--platform", "linux/arm64", "--push", "-t", f"{repo}:drill",
                    "--metadata-file", str(meta), str(work)], check=True, capture_output=True)  # fmt: skip
    return f"{repo}@{json.loads(meta.read_text())['containerimage.digest']}"

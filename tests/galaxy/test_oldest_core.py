"""The unit stage again in .venv-oldest (ansible 10.7.0: ansible-core 2.17, community.docker 3.13.3,
community.crypto 2.22.3, molecule and ansible-lint of that time), so the oldest ansible-core
requires_ansible names builds the tarball, reads the filter docs and role specs and passes every
unit test. The Molecule scenario on it is `make molecule-oldest` (it shares the default
scenario's hosts, so it runs in Molecule's turn, not here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(1800)
ROOT = Path(__file__).resolve().parents[2]


def test_the_unit_stage_passes_on_the_oldest_ansible_core(oldest_venv: Path) -> None:
    version = subprocess.run([str(oldest_venv / "bin" / "ansible"), "--version"], capture_output=True,
                             text=True, check=True).stdout.splitlines()[0]  # fmt: skip
    assert "core 2.17." in version, version
    env = {**os.environ, "PATH": f"{oldest_venv / 'bin'}:{os.environ['PATH']}"}
    run = subprocess.run([str(oldest_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-rfE", "--tb=short", "tests/unit"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]

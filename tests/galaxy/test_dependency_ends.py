"""galaxy.yml's dependency ranges at both ends: the tarball installs into an empty collections
path with its dependencies as the oldest venv's `ansible` package (10.7.0, ansible-core 2.17)
bundles them and as the newest's (12.3.0, 2.19) does; ansible-galaxy refuses a version a range
does not accept. The lower bounds are exactly the oldest ones (what the tests run), and that
ansible-core parses the installed collection's playbooks, called by their FQCN."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import venvs
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DEPS = yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]


def _version(path: Path) -> Version:
    return Version(json.loads((path / "MANIFEST.json").read_text())["collection_info"]["version"])


@pytest.mark.parametrize("end", ["oldest", "newest"])
def test_the_tarball_installs_with_each_end_and_its_core_reads_the_playbooks(
    end: str, tarball: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    venv = request.getfixturevalue("oldest_venv") if end == "oldest" else ROOT / ".venv"
    dest = tmp_path / "collections"
    venvs.install_collections([tarball, *venvs.dependencies(venv)], dest)
    for fqcn, spec in DEPS.items():
        version = _version(dest.joinpath("ansible_collections", *fqcn.split(".")))
        lower = next(Version(s.version) for s in SpecifierSet(spec) if s.operator == ">=")
        upper = next(Version(s.version) for s in SpecifierSet(spec) if s.operator == "<")
        if end == "oldest":
            assert version == lower, (
                f"{fqcn}: the lower bound {lower} is not what the oldest venv runs ({version})"
            )
        else:
            assert version.major == upper.major - 1, (
                f"{fqcn} {version}: the upper bound {upper} is not the next major"
            )
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(dest)}
    env.pop("ANSIBLE_CONFIG", None)
    # By their FQCN, as the README tells Galaxy users to run them.
    for playbook in ("gpusrv", "pi", "acceptance"):
        run = subprocess.run([str(venv / "bin" / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                              f"synchrony.hailo_pipeline.{playbook}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, f"{end}: {playbook}\n{run.stdout}{run.stderr}"

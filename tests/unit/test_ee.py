"""The execution environment (execution-environment.yml): `ansible-builder create` writes its
build context from the collection tarball, and the context installs what the collection needs.
The image itself is built on a build host (no container registry for its base image here)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_ansible_builder_create_writes_a_context_that_installs_the_collection(tmp_path: Path) -> None:
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(ROOT / "dist"), str(ROOT)], check=True, capture_output=True)  # fmt: skip
    context = tmp_path / "ee"
    run = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml",
                          "-c", str(context)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    dockerfile = (context / "Dockerfile").read_text()
    tarball = f"synchrony-hailo_pipeline-{VERSION}.tar.gz"
    assert (context / "_build" / "collection" / tarball).is_file()
    assert "ansible-galaxy collection install --offline --no-deps" in dockerfile
    assert "ansible-runner" in dockerfile and "ansible-core" in dockerfile
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert "openssh-client" in bindep and "git" in bindep and "tar" in bindep


def test_the_ee_carries_every_collection_the_collection_depends_on() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    ee = yaml.safe_load((ROOT / "ee" / "requirements.yml").read_text())
    assert sorted(c["name"] for c in ee["collections"]) == sorted(galaxy["dependencies"])

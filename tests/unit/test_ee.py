"""The execution environment (execution-environment.yml): `ansible-builder create` writes its
build context from the collection tarball, and the context installs what the collection needs.
The image itself is built on a build host (no container registry for its base image here)."""

from __future__ import annotations

import os
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


def test_an_installed_collection_tells_ansible_builder_what_it_needs(tmp_path: Path) -> None:
    """Any execution environment that installs this collection from Galaxy (not only ours) gets its
    Python packages and system tools: ansible-builder reads them through meta/execution-environment.yml."""
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)  # fmt: skip
    (tarball,) = tmp_path.glob("*.tar.gz")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p",
                    str(tmp_path / "c"), str(tarball)], check=True, capture_output=True,
                   env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "c")})  # fmt: skip
    run = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(tmp_path / "c")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    found = yaml.safe_load(run.stdout.split("---", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"]]
    system = [line.split("#")[0].strip() for line in found["system"]]
    assert python == [ln for ln in (ROOT / "ee" / "requirements.txt").read_text().splitlines()
                      if ln and not ln.startswith("#")]  # fmt: skip
    assert "openssh-client [platform:dpkg]" in system and "git [platform:rpm platform:dpkg]" in system

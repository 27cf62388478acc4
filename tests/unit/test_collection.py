"""The collection tarball as Galaxy users install it: ansible-galaxy builds it from this checkout
(galaxy.yml's manifest is an allowlist) and every member must be something users need, with the
version taken from one place (pyproject.toml)."""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from test_build_contexts import build_context

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# What may ship: top-level files, and folders with everything under them.
FILES = {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.md",
         "CONTRIBUTING.md", "SECURITY.md", "pyproject.toml", "requirements", "requirements/constraints.txt",
         "meta", "meta/runtime.yml", "meta/execution-environment.yml", "ee", "ee/requirements.txt",
         "ee/bindep.txt", "changelogs", "changelogs/changelog.yaml", "changelogs/config.yaml",
         "tests", "tests/sanity", "tests/sanity/ignore-2.17.txt", "tests/sanity/ignore-2.18.txt",
         "tests/sanity/ignore-2.19.txt"}  # fmt: skip
FOLDERS = ("docs", "playbooks", "roles", "plugins", "sidecar_app", "hef_compiler", "images")
# What users run or the roles build from: must be there.
REQUIRED = ["playbooks/gpusrv.yml", "playbooks/pi.yml", "playbooks/acceptance.yml",
            "plugins/filter/reports.py", "plugins/lookup/controller_path.py",
            "images/runtime/Dockerfile", "images/runtime/build.sh",
            "images/runtime/install-hailort.sh", "images/runtime/target-pip.sh",
            "images/compiler/Dockerfile", "images/compiler/build.sh", "sidecar_app/app.py",
            "hef_compiler/cli.py", "roles/sidecar_stack/files/compose.yml"]  # fmt: skip


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    (built,) = out.glob("*.tar.gz")
    assert built.name == f"{GALAXY['namespace']}-{GALAXY['name']}-{VERSION}.tar.gz"
    return built


@pytest.fixture(scope="module")
def members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as t:
        names = [m.name.rstrip("/") for m in t.getmembers()]
        manifest = json.load(t.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert manifest["collection_info"]["version"] == VERSION
    assert manifest["collection_info"]["readme"] in names
    return names


def test_only_what_users_need_ships(members: list[str]) -> None:
    stray = [
        m for m in members
        if m not in FILES and m not in FOLDERS and not m.startswith(tuple(f + "/" for f in FOLDERS))
    ]  # fmt: skip
    assert stray == [], f"not for users: {stray}"
    junk = [m for m in members if "__pycache__" in m or m.endswith((".pyc", ".orig", ".rej", "~"))
            or any(part.startswith(".") for part in m.split("/"))]  # fmt: skip
    assert junk == [], f"local state in the tarball: {junk}"


def test_what_the_roles_build_from_ships(members: list[str]) -> None:
    missing = [r for r in REQUIRED if r not in members]
    assert missing == []
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    specs = [r for r in roles if f"roles/{r}/meta/argument_specs.yml" not in members]
    assert specs == [], f"roles without argument_specs in the tarball: {specs}"


def test_the_role_build_contexts_are_in_the_tarball(members: list[str]) -> None:
    """sidecar_image and hef_compile pack the paths images/<image>/Dockerfile.dockerignore lists
    from the installed collection's root (the lookup plugin names it): all must be there."""
    assert "plugins/lookup/controller_path.py" in members
    for image in ("runtime", "compiler"):
        listed = [f"images/{image}/Dockerfile.dockerignore", *build_context(image)]
        absent = [p for p in listed if p not in members]
        assert absent == [], f"the {image} image's context names {absent}, which the tarball lacks"


def test_one_version() -> None:
    """pyproject.toml is the version; galaxy.yml must repeat it and the package reports it."""
    import sidecar_app

    assert GALAXY["version"] == VERSION, "galaxy.yml and pyproject.toml disagree on the version"
    assert sidecar_app.__version__ == VERSION, "reinstall the venv (make setup): its metadata is stale"


# A Markdown link or image: [text](target) or ![alt](target); the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)")


def test_every_link_in_what_ships_resolves_inside_the_tarball(tarball: Path, members: list[str]) -> None:
    """An installed collection (and Galaxy's rendering of its READMEs) has only what the tarball
    holds: a relative link to lab/, tests/ or the repository's README is a dead link there."""
    have = set(members)
    dead = []
    with tarfile.open(tarball) as t:
        for name in (m for m in members if m.endswith(".md")):
            text = t.extractfile(name).read().decode()  # type: ignore[union-attr]
            text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks are not links
            for target in LINK.findall(text):
                if re.match(r"^[a-z]+:|^#", target):
                    continue
                path = posixpath.normpath(posixpath.join(posixpath.dirname(name), target.split("#")[0]))
                if path not in have:
                    dead.append(f"{name}: {target}")
    assert dead == [], "links to what the tarball leaves out:\n" + "\n".join(dead)

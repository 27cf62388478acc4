"""One list of collection dependencies (galaxy.yml) and one ansible-core range (meta/runtime.yml):
the execution environment, the checkout's requirements and the pull agent repeat them, every
collection the shipped content calls is in the list, and what this venv runs (the newest
supported ansible-core and the collections the `ansible` package bundles) is inside the ranges.
The oldest end runs in tests/galaxy (requirements/oldest.txt)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ansible_collections
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
DEPS: dict[str, str] = GALAXY["dependencies"]
REQUIRES = SpecifierSet(yaml.safe_load((ROOT / "meta/runtime.yml").read_text())["requires_ansible"])
BUNDLED = Path(ansible_collections.__path__[0])
SHIPPED = ("roles", "playbooks", "plugins")
# Versions on both sides of every bound a range could have.
PROBES = [Version(v) for v in ("2.15.13", "2.16.0", "2.16.19", "2.17.0", "2.17.14", "2.18.0", "2.19.14",
                               "2.20.0", "2.21.0")]  # fmt: skip


def _requirements(path: str) -> dict[str, str]:
    return {c["name"]: c["version"] for c in yaml.safe_load((ROOT / path).read_text())["collections"]}


def _installed(name: str) -> tuple[Version, SpecifierSet]:
    path = BUNDLED.joinpath(*name.split("."))
    version = json.loads((path / "MANIFEST.json").read_text())["collection_info"]["version"]
    runtime = yaml.safe_load((path / "meta/runtime.yml").read_text())
    return Version(version), SpecifierSet(runtime["requires_ansible"])


def _same_versions(a: SpecifierSet, b: SpecifierSet) -> bool:
    return all((v in a) == (v in b) for v in PROBES)


def test_every_range_has_a_lower_and_an_upper_bound() -> None:
    for name, spec in DEPS.items():
        ops = {s.operator for s in SpecifierSet(spec)}
        assert ops == {">=", "<"}, f"galaxy.yml {name}: {spec!r} needs a tested lower and an upper bound"
    assert {s.operator for s in REQUIRES} == {">=", "<"}, "meta/runtime.yml requires_ansible"


@pytest.mark.parametrize("path", ["ee/requirements.yml", "collections/requirements.yml"])
def test_the_other_lists_repeat_galaxy_yml(path: str) -> None:
    listed = _requirements(path)
    assert {n: listed.get(n) for n in DEPS} == DEPS, f"{path} disagrees with galaxy.yml's dependencies"
    extra = set(listed) - set(DEPS)
    if path.startswith("ee/"):
        assert extra == set(), f"the execution environment installs what the collection does not use: {extra}"


def test_every_collection_the_shipped_content_calls_is_a_dependency() -> None:
    used = set()
    for folder in SHIPPED:
        for f in (ROOT / folder).rglob("*"):
            if f.suffix in (".yml", ".yaml", ".j2", ".py") and f.is_file():
                used |= set(re.findall(r"\b([a-z_]+\.[a-z_]+)\.[a-z_0-9]+:", f.read_text()))
    used -= {"ansible.builtin", GALAXY["namespace"] + "." + GALAXY["name"]}
    # Keys such as `sidecar_stack.port:` in a template are no FQCN: only collections that exist.
    used = {u for u in used if BUNDLED.joinpath(*u.split(".")).is_dir()}
    assert used - set(DEPS) == set(), "shipped content calls collections galaxy.yml does not list"
    assert set(DEPS) - used == set(), "galaxy.yml lists collections nothing calls"


def test_this_venv_runs_inside_the_ranges() -> None:
    from ansible.release import __version__ as core

    assert Version(core) in REQUIRES, f"ansible-core {core} is outside requires_ansible {REQUIRES}"
    for name, spec in DEPS.items():
        version, _ = _installed(name)
        assert version in SpecifierSet(spec), f"the venv's {name} {version} is outside galaxy.yml's {spec}"


def test_requires_ansible_is_what_the_dependencies_need() -> None:
    """Each dependency's own requires_ansible (the newest in range, as bundled here) accepts the
    oldest ansible-core this collection claims: community.crypto 3.x needs 2.17."""
    lowest = min(v for v in PROBES if v in REQUIRES)
    for name in DEPS:
        version, needs = _installed(name)
        assert lowest in needs, f"{name} {version} needs ansible-core {needs}, not {lowest}"


def test_the_execution_environment_and_the_pull_agent_install_that_ansible_core() -> None:
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    pull = yaml.safe_load((ROOT / "roles/pull_agent/defaults/main.yml").read_text())
    for where, pip in [("execution-environment.yml", ee["dependencies"]["ansible_core"]["package_pip"]),
                       ("pull_agent_ansible_core", pull["pull_agent_ansible_core"])]:  # fmt: skip
        spec = SpecifierSet(pip.removeprefix("ansible-core"))
        assert _same_versions(spec, REQUIRES), f"{where} installs {pip}, requires_ansible says {REQUIRES}"

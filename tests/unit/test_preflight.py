"""The preflight role (the playbooks' first play) checks each role through the role's own
`preflight` entry point: Ansible validates the role's variables, defaults included, against the
entry point's options (meta/argument_specs.yml, the same as `main`'s) before the role's checks
run. No path is built from role_path to reach another role's files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKED = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/tasks/preflight.yml"))


@pytest.mark.parametrize("role", CHECKED)
def test_each_checked_role_has_a_preflight_entry_point_with_mains_options(role: str) -> None:
    text = (ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text()
    specs = yaml.safe_load(text)["argument_specs"]
    assert "preflight" in specs, f"{role}: the preflight role would run its checks unvalidated"
    assert specs["preflight"]["options"] == specs["main"]["options"]


def test_the_preflight_role_includes_the_entry_point() -> None:
    tasks = yaml.safe_load((ROOT / "roles" / "preflight" / "tasks" / "main.yml").read_text())
    includes = [t["ansible.builtin.include_role"] for t in tasks if "ansible.builtin.include_role" in t]
    # `preflight`, not `preflight.yml`: the entry point's name is what tasks_from says.
    assert [i["tasks_from"] for i in includes] == ["preflight"]


def _preflight(tmp_path: Path, extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "synchrony.hailo_pipeline.preflight"},
                   "vars": {"preflight_roles": ["sidecar_image"]}}],
    }]))  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", str(play), "-e", json.dumps(extra)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)  # fmt: skip


def test_a_bad_variable_stops_before_the_roles_checks_naming_it(tmp_path: Path) -> None:
    good = {"sidecar_image_registry": "registry.example:5000"}
    ok = _preflight(tmp_path, good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Validating arguments against arg spec 'preflight'" in ok.stdout
    assert "Check the registry and tags" in ok.stdout
    bad = _preflight(tmp_path, {**good, "sidecar_image_cache_from": {"ref": "x"}})
    assert bad.returncode != 0
    # ansible-core 2.19 names the type (native_type_name), 2.17 prints it as "<class 'dict'>"
    # (ansible/module_utils/common/parameters.py, _validate_argument_types).
    wording = r"argument 'sidecar_image_cache_from' is of type (dict|<class 'dict'>)"
    assert re.search(wording, bad.stdout), bad.stdout
    assert "Check the registry and tags" not in bad.stdout

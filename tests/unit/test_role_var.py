"""A role's variable where the role is not running (plugins/lookup/role_var.py): the host's value,
else the role's own default, so the playbooks wire roles together without writing a default a
second time. Run through ansible as the playbooks run it; and no playbook or role restates a
role's default next to a `| default(...)`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {p.parent.parent.name: yaml.safe_load(p.read_text()) or {}
            for p in (ROOT / "roles").glob("*/defaults/main.yml")}  # fmt: skip
ALL_DEFAULTS = {k for d in DEFAULTS.values() for k in d}


def _query(tmp: Path, names: list[str], host_vars: dict[str, object]) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"h": {"ansible_connection": "local", **host_vars}}}}))
    query = "query('synchrony.hailo_pipeline.role_var', " + ", ".join(repr(n) for n in names) + ")"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}  # fmt: skip
    return subprocess.run([str(Path(sys.executable).parent / "ansible"), "h", "-i", str(inventory),
                           "-m", "ansible.builtin.debug",
                           "-a", f"msg={{{{ {query} | to_json }}}}"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_hosts_value_else_the_roles_default_with_its_type(tmp_path: Path) -> None:
    names = ["hailort_group", "sidecar_stack_port", "monitoring_enabled", "hailort_mirror_port"]
    run = _query(tmp_path, names, {"site": "lab", "hailort_group": "{{ site }}-hailo"})
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout[run.stdout.index("{") :])["plays"][0]["tasks"][0]["hosts"]["h"]["msg"]
    # hailort_mirror_port is hailort_mirror's (the longest role name), not hailort's.
    assert json.loads(out) == ["lab-hailo", DEFAULTS["sidecar_stack"]["sidecar_stack_port"],
                               DEFAULTS["monitoring"]["monitoring_enabled"],
                               DEFAULTS["hailort_mirror"]["hailort_mirror_port"]]  # fmt: skip


def test_a_templated_default_or_an_unknown_name_fails_naming_it(tmp_path: Path) -> None:
    run = _query(tmp_path, ["sidecar_stack_state_file"], {})
    assert run.returncode != 0 and "sidecar_stack_state_file's default is a template" in run.stdout
    run = _query(tmp_path, ["sidecar_stack_no_such_thing"], {})
    assert run.returncode != 0 and "sidecar_stack_no_such_thing has no default" in run.stdout


def test_a_host_that_sets_a_variable_with_a_templated_default_gets_its_value(tmp_path: Path) -> None:
    """The host's value wins before the role's default is read: a templated default refuses only
    a host that leaves the variable unset ("set X instead" to a host that did set it)."""
    state_file = {"sidecar_stack_state_file": "/srv/sidecar/release.json"}
    run = _query(tmp_path, ["sidecar_stack_state_file"], state_file)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout[run.stdout.index("{") :])["plays"][0]["tasks"][0]["hosts"]["h"]["msg"]
    assert json.loads(out) == ["/srv/sidecar/release.json"]


def test_no_playbook_or_role_default_restates_a_roles_default() -> None:
    """`<role variable> | default(...)` in a playbook, or in another role's defaults, writes the
    role's default a second time."""
    files = [*(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").glob("*/defaults/main.yml")]
    found = []
    for path in sorted(files):
        rel = str(path.relative_to(ROOT))
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name in re.findall(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(", line):
                if name in ALL_DEFAULTS:
                    found.append(f"{rel}:{n}: {name}")
    assert found == []


def test_what_the_playbooks_read_has_a_literal_default() -> None:
    names = set()
    for path in [*(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").glob("*/defaults/main.yml")]:
        names |= set(re.findall(r"role_var', '([a-z0-9_]+)'\)", path.read_text()))
    assert names, "the playbooks no longer use role_var: drop this test or the plugin"
    for name in sorted(names):
        assert name in ALL_DEFAULTS, name
        value = next(d[name] for d in DEFAULTS.values() if name in d)
        assert not (isinstance(value, str) and "{{" in value), f"{name}'s default is a template"


def test_monitoring_agent_reads_the_release_file_of_the_hosts_stack_dir(tmp_path: Path) -> None:
    """A host whose stack lives elsewhere: the collector reads that stack's release.json, as it
    reads its desired.json (a restated '/opt/hailo-sidecar/release.json' made the drift alert fire)."""
    (tmp_path / "hosts.json").write_text(json.dumps({"all": {"hosts": {"h": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "sidecar_stack_dir": "/srv/sidecar"}}}}))  # fmt: skip
    (tmp_path / "play.yml").write_text("""
- hosts: h
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: synchrony.hailo_pipeline.monitoring_agent
        tasks_from: preflight
        public: true
    - ansible.builtin.debug:
        msg: "{{ [monitoring_agent_release_file, monitoring_agent_desired_file] }}"
""")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}  # fmt: skip
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    run = subprocess.run([playbook, "-i", "hosts.json", "play.yml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout[run.stdout.index("{") :])
    assert out["plays"][0]["tasks"][-1]["hosts"]["h"]["msg"] == ["/srv/sidecar/release.json",
                                                                  "/srv/sidecar/desired.json"]  # fmt: skip

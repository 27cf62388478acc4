"""Where the roles read sources and write outputs on the controller (plugins/lookup/
controller_path.py), run through ansible as a play runs it: from the user's working folder,
outside the collection, with the variables set in an inventory (templated) or not at all. And no
role or playbook finds a path by walking out of its own folder (role_path, playbook_dir)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOKUP = "query('synchrony.hailo_pipeline.controller_path', 'output', 'sources')"


def _paths(cwd: Path, inventory_vars: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
    inventory = cwd / "hosts.yml"
    host = {"ansible_connection": "local", **(inventory_vars or {})}
    inventory.write_text(json.dumps({"all": {"hosts": {"controller": host}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}  # fmt: skip
    return subprocess.run([str(Path(sys.executable).parent / "ansible"), "controller", "-i", str(inventory),
                           "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {LOOKUP} }}}}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def _msg(run: subprocess.CompletedProcess[str]) -> list[str]:
    assert run.returncode == 0, run.stdout + run.stderr
    # The json callback of an ad-hoc run: the one task's one host result.
    result = json.loads(run.stdout[run.stdout.index("{") :])["plays"][0]["tasks"][0]["hosts"]["controller"]
    return list(result["msg"])


def test_outputs_go_to_build_in_the_working_folder_and_sources_are_the_collection(tmp_path: Path) -> None:
    # Empty is unset: the default.
    output, sources = _msg(_paths(tmp_path, {"hailo_pipeline_output_dir": ""}))
    assert output == str(tmp_path / "build")
    assert not output.startswith(str(ROOT) + "/"), "the default output is inside the collection"
    # The checkout is linked into .ansible/collections (make setup): the lookup names the real tree.
    assert Path(sources) == ROOT
    assert (Path(sources) / "images" / "runtime" / "Dockerfile.dockerignore").is_file()


def test_the_variables_win_templated_and_relative_to_the_working_folder(tmp_path: Path) -> None:
    got = _msg(_paths(tmp_path, {"site": "/srv/site", "hailo_pipeline_output_dir": "{{ site }}/out",
                                  "hailo_pipeline_source_dir": "checkout/../src"}))  # fmt: skip
    assert got == ["/srv/site/out", str(tmp_path / "src")]


def test_a_value_that_is_no_path_fails_naming_the_variable(tmp_path: Path) -> None:
    run = _paths(tmp_path, {"hailo_pipeline_output_dir": ["/srv/out"]})
    assert run.returncode != 0
    assert "hailo_pipeline_output_dir must be a path" in run.stdout + run.stderr
    assert not (tmp_path / "build").exists()


def test_no_role_or_playbook_walks_out_of_its_folder() -> None:
    """Paths found from role_path or playbook_dir point inside an installed collection (or an
    execution environment's image): sources come from controller_path's `sources`, outputs go to
    its `output`."""
    found = []
    for path in sorted([*(ROOT / "roles").rglob("*"), *(ROOT / "playbooks").rglob("*")]):
        if path.is_file() and path.suffix in (".yml", ".yaml", ".j2"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\b(role_path|playbook_dir)\b", line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []

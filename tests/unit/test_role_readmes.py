"""Every role has a README as galaxy-importer wants one ("No role readme found" refused the
upload): a hand-written opening with an example play and what the role needs, then every option
of its meta/argument_specs.yml with type, default and description, written by
scripts/role_readme.py and failing here when stale. The table is read back here as a user reads
it, not through the generator's own code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \| (.*?) \| (.*) \|$")


def _spec(role: str) -> dict[str, Any]:
    """Every entry point's options (main; _common has one per tasks file, an option shared by
    several entry points described the same in each)."""
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = {}
    for entry in specs["argument_specs"].values():
        options.update(entry.get("options") or {})
    return options


def _words(text: Any) -> str:
    return " ".join((" ".join(text) if isinstance(text, list) else str(text)).split())


def test_every_role_with_tasks_has_an_argument_spec() -> None:
    with_tasks = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    assert with_tasks == ROLES


def test_the_readmes_are_current() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "role_readme.py"), "--check"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("role", ROLES)
def test_the_readme_lists_every_option_with_type_default_and_description(role: str) -> None:
    readme = (ROOT / "roles" / role / "README.md").read_text()
    rows = {m[1]: m for m in map(ROW.match, readme.splitlines()) if m and m[1] != "option"}
    spec = _spec(role)
    assert sorted(rows) == sorted(spec), f"{role}: README options differ from argument_specs"
    for name, opt in spec.items():
        _, kind, default, description = rows[name].groups()
        want_kind = opt.get("type", "str")
        assert kind.strip().split()[0] == want_kind, f"{name}: type {kind!r}, spec says {want_kind}"
        assert _words(opt["description"]).replace("|", "\\|") in description, f"{name}: description"
        if opt.get("required"):
            assert default == "(required)", name
        elif "default" in opt and len(json.dumps(opt["default"])) <= 60:
            assert default == f"`{json.dumps(opt['default'])}`".replace("|", "\\|"), name
        else:
            assert default, f"{name}: no default shown"
        if default == "(below)":
            assert f"```yaml\n{name}:" in readme, f"{name}: its long default is not shown"


@pytest.mark.parametrize("role", ROLES)
def test_the_opening_says_what_it_does_shows_a_play_and_what_it_needs(role: str) -> None:
    opening = (ROOT / "roles" / role / "README.md").read_text().split("<!-- BEGIN options", 1)[0]
    assert opening.startswith(f"# {role}\n")
    assert "## Example" in opening and "## Requirements" in opening
    (play,) = re.findall(r"```yaml\n(.*?)```", opening, re.S)
    assert f"synchrony.hailo_pipeline.{role}" in play


def test_the_example_plays_pass_a_syntax_check(tmp_path: Path) -> None:
    """Every README's example, as a user would paste it, against the collection on the
    checkout's collections path (make setup links it)."""
    plays = []
    for role in ROLES:
        opening = (ROOT / "roles" / role / "README.md").read_text().split("<!-- BEGIN options", 1)[0]
        plays += yaml.safe_load(re.findall(r"```yaml\n(.*?)```", opening, re.S)[0])
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump(plays))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check",
                          "-i", "localhost,", str(playbook)],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr

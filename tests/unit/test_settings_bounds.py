"""One source for the sidecar's settings: sidecar_app/settings.py. The sidecar_stack role's copy of
their names, defaults and bounds (files/sidecar-settings.json), its defaults, argument specs, .env
template, compose.yml and env.example must say what the class says (and so must the README's table
and the contract), and its preflight must refuse exactly what the sidecar would refuse at start.
Each test fails on one kind of drift."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar_app.cli import main
from sidecar_app.settings import ConfigError, load_settings, table

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "sidecar_stack"
_spec = importlib.util.spec_from_file_location("stack", ROOT / "plugins" / "filter" / "stack.py")
assert _spec and _spec.loader
stack: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stack)

COPY = json.loads((ROLE / "files" / "sidecar-settings.json").read_text())
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
PASSED: dict[str, str] = VARS["_sidecar_stack_sidecar_settings"]
ROLE_BOUNDS: dict[str, dict[str, Any]] = VARS["_sidecar_stack_role_bounds"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
SPECS = SPECS["options"]
ENV_J2 = (ROLE / "templates" / "env.j2").read_text()
COMPOSE = (ROLE / "files" / "compose.yml").read_text()
ENV_EXAMPLE = (ROLE / "files" / "env.example").read_text()
README = (ROOT / "README.md").read_text()
CONTRACT = (ROOT / "docs" / "contract.md").read_text()


def test_the_roles_copy_is_what_the_sidecar_says(tmp_path):
    assert table() == COPY, "run `make settings` (sidecar_app/settings.py changed)"
    # ... byte for byte as `make settings` writes it (a regenerated file shows no diff).
    assert main(["settings", "--out", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text() == (ROLE / "files" / "sidecar-settings.json").read_text()


@pytest.mark.parametrize("var", list(PASSED))
def test_each_passed_setting_has_the_sidecars_default_everywhere(var):
    entry = COPY[PASSED[var]]
    assert DEFAULTS[var] == entry["default"], f"defaults/main.yml {var}"
    assert SPECS[var]["default"] == entry["default"], f"meta/argument_specs.yml {var}"
    assert SPECS[var].get("choices") == entry.get("choices"), f"meta/argument_specs.yml {var} choices"


def test_the_env_template_writes_each_sidecar_setting_from_its_variable():
    written = dict(re.findall(r"^([A-Z_]+)=\{\{ (sidecar_stack_[a-z_0-9]+) \}\}$", ENV_J2, re.M))
    for env, var in written.items():
        if env in COPY:
            assert PASSED.get(var) == env, f"env.j2 writes {env} from {var}, vars/main.yml does not map it"
    unwritten = {v for v, e in PASSED.items() if e not in written}
    # The published port and the motif count reach the sidecar another way (SIDECAR_PORT, the pointer).
    assert unwritten == {"sidecar_stack_port", "sidecar_stack_num_motifs"}


def test_compose_passes_each_setting_with_the_sidecars_default():
    written = dict(re.findall(r"^([A-Z_]+)=\{\{ (sidecar_stack_[a-z_0-9]+) \}\}$", ENV_J2, re.M))
    for var, env in PASSED.items():
        if written.get(env) != var:
            continue
        defaults = set(re.findall(rf"^\s+{env}: \$\{{{env}:-([^}}]*)\}}$", COMPOSE, re.M))
        assert defaults, f"compose.yml does not pass {env} to the sidecar"
        assert {type(COPY[env]["default"])(d) for d in defaults} == {COPY[env]["default"]}, env


def _same(text: str, entry: dict[str, Any]) -> bool:
    """TEXT (a document's default, backticks stripped) says ENTRY's default."""
    if entry["type"] in ("int", "float"):
        return float(text) == entry["default"]
    return text == entry["default"]


def test_the_readmes_settings_table_gives_the_sidecars_defaults():
    table = README.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set()
    for row in table.strip().splitlines()[1:]:
        names_cell, defaults_cell = row.split(" | ")[:2]
        names = re.findall(r"`([A-Z_0-9]+)`", names_cell)
        defaults = [d.strip().strip("`") for d in defaults_cell.split(" / ")]
        assert len(names) == len(defaults), row
        for name, text in zip(names, defaults, strict=True):
            documented.add(name)
            if COPY[name]["default"] is not None:
                assert _same(text, COPY[name]), f"README.md says {name}'s default is {text}"
    assert set(COPY) - documented == {"USE_REAL_MODEL"}  # in INFER_MODE's row


def test_the_contract_and_the_env_example_give_the_sidecars_defaults():
    (batch,) = re.findall(r"1\.\.MAX_BATCH \((\d+)\)", CONTRACT)
    assert _same(batch, COPY["MAX_BATCH"]), "docs/contract.md: MAX_BATCH's default"
    example = dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", ENV_EXAMPLE, re.M))
    assert "MAX_BATCH" in example
    for name, text in example.items():
        if name in COPY:
            entry = COPY[name]
            assert (text == "") if entry["default"] is None else _same(text, entry), f"env.example {name}"


def values_outside(entry: dict[str, Any]) -> list[Any]:
    """Values just outside ENTRY's bounds (and one of the wrong kind)."""
    if "choices" in entry:
        return ["not-a-choice"]
    if entry["type"] not in ("int", "float"):
        return []  # a path: any is taken
    step = 1 if entry["type"] == "int" else 0.001
    out: list[Any] = ["abc"]
    out += [entry["ge"] - step] if "ge" in entry else [entry["gt"]] if "gt" in entry else []
    out += [entry["le"] + step] if "le" in entry else [entry["lt"]] if "lt" in entry else []
    return out


@pytest.mark.parametrize("var", list(PASSED))
def test_preflight_refuses_what_the_sidecar_refuses_naming_the_variable_and_the_range(var, monkeypatch):
    env = PASSED[var]
    entry = COPY[env]
    assert stack.setting_problems({var: entry["default"]}, {}, COPY, PASSED) == []
    for value in values_outside(entry):
        (problem,) = stack.setting_problems({var: value}, {}, COPY, PASSED)
        assert problem.startswith(f"{var} is {value}: it must be ") and f"(the sidecar's {env})" in problem
        if "choices" in entry:
            assert ", ".join(entry["choices"]) in problem
        else:
            assert all(f"{entry[k]:g}" in problem for k in ("ge", "gt", "le", "lt") if k in entry), problem
        # ... and the sidecar refuses the same value at start, naming the same variable.
        if env != "PORT":  # the role's port is the published one; the container's is always 9000
            monkeypatch.setenv(env, str(value))
            with pytest.raises(ConfigError, match=env):
                load_settings()
            monkeypatch.delenv(env)


def test_the_issues_case_is_refused_with_the_range():
    problems = stack.setting_problems({"sidecar_stack_max_batch": "0"}, {}, COPY, PASSED)
    assert problems == [
        "sidecar_stack_max_batch is 0: it must be an integer from 1 to 4096 (the sidecar's MAX_BATCH)."
    ]


@pytest.mark.parametrize(
    ("var", "good", "bad", "words"),
    [
        ("sidecar_stack_mem_limit", "512m", "5m", "a size (512m, 1g) at least 6m"),
        ("sidecar_stack_mem_limit", "1g", "lots", "a size (512m, 1g) at least 6m"),
        ("sidecar_stack_health_timeout", "500ms", "0s", "a duration (5s, 500ms, 2m) at least 1ms"),
        ("sidecar_stack_health_interval", "15s", "15", "a duration (5s, 500ms, 2m) at least 1ms"),
        ("sidecar_stack_pids_limit", 128, 0, "an integer at least 1"),
        ("sidecar_stack_wait_timeout", "180", "-1", "an integer at least 1"),
        ("sidecar_stack_min_free_mb", 0, -5, "an integer at least 0"),
        ("sidecar_stack_max_clock_skew_s", 300, 0, "an integer at least 1"),
    ],
)
def test_the_roles_own_bounds(var, good, bad, words):
    assert var in DEFAULTS and var in SPECS, f"{var} is no variable of the role"
    assert stack.setting_problems({var: DEFAULTS[var]}, ROLE_BOUNDS) == [], "the default is refused"
    assert stack.setting_problems({var: good}, ROLE_BOUNDS) == []
    (problem,) = stack.setting_problems({var: bad}, ROLE_BOUNDS)
    assert problem == f"{var} is {bad}: it must be {words}."


def test_every_bounded_variable_is_the_roles_and_none_is_checked_twice():
    assert set(ROLE_BOUNDS) <= set(DEFAULTS) and set(PASSED) <= set(DEFAULTS)
    assert not set(ROLE_BOUNDS) & set(PASSED)


FLOATS = [v for v, e in PASSED.items() if COPY[e]["type"] == "float"]


@pytest.mark.parametrize("var", FLOATS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_nan_and_infinity_are_refused_in_preflight_as_the_sidecar_refuses_them(var, value, monkeypatch):
    """float("nan") parses, and every comparison with it is False: a check written as `n < ge or
    n > le` lets it through, pydantic's (`n >= ge`) does not, so the sidecar crash-looped on it."""
    (problem,) = stack.setting_problems({var: value}, {}, COPY, PASSED)
    assert problem.startswith(f"{var} is {value}: it must be a number")
    monkeypatch.setenv(PASSED[var], value)
    with pytest.raises(ConfigError, match=PASSED[var]):
        load_settings()


@pytest.mark.parametrize("var", FLOATS)
@pytest.mark.parametrize("value", ["1e-300", "1e-9", "0.005"])
def test_a_poll_or_wait_too_short_to_leave_the_cpu_is_refused(var, value, monkeypatch):
    """RELEASE_POLL_S=1e-300 passed gt=0: the pointer was read in a loop without sleeping."""
    (problem,) = stack.setting_problems({var: value}, {}, COPY, PASSED)
    assert "0.01" in problem, problem
    monkeypatch.setenv(PASSED[var], value)
    with pytest.raises(ConfigError, match=PASSED[var]):
        load_settings()


@pytest.mark.parametrize("env", [e for e, entry in COPY.items() if "off" in entry])
def test_zero_still_turns_off_what_it_turned_off(env, monkeypatch):
    var = next(v for v, e in PASSED.items() if e == env)
    assert stack.setting_problems({var: 0}, {}, COPY, PASSED) == []
    (problem,) = stack.setting_problems({var: -1}, {}, COPY, PASSED)
    allowed = f"it must be a number 0 (off) or from 0.01 to {COPY[env]['le']} (the sidecar's {env})."
    assert problem.endswith(allowed), problem
    monkeypatch.setenv(env, "0")
    assert getattr(load_settings(), env.lower()) == 0

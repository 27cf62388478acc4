"""Each filter has its own documentation as ansible-doc reads it (plugins/filter/<name>.yml, the form
ansible-core takes for a file that holds several filters): its own name, its arguments as the
function takes them, examples and a return value. Before, the two files shared one block each and
`ansible-doc -t filter` showed the file's name and no examples."""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FILTERS = ROOT / "plugins" / "filter"
FQCN = "synchrony.hailo_pipeline"


def _filters() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for path in sorted(FILTERS.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_filter_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found |= module.FilterModule().filters()
    return found


FUNCS = _filters()


def _ansible_doc() -> dict[str, Any]:
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "filter", "--json",
                          *(f"{FQCN}.{n}" for n in sorted(FUNCS))],
                         cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "WARNING" not in run.stderr, run.stderr
    docs: dict[str, Any] = json.loads(run.stdout)
    return docs


def test_one_doc_file_per_filter_and_no_other() -> None:
    assert sorted(p.stem for p in FILTERS.glob("*.yml")) == sorted(FUNCS)


def test_ansible_doc_shows_each_filter_with_its_own_name_examples_and_return() -> None:
    docs = _ansible_doc()
    assert sorted(docs) == sorted(f"{FQCN}.{n}" for n in FUNCS)
    for name in FUNCS:
        doc = docs[f"{FQCN}.{name}"]
        assert doc["doc"]["name"] == name
        assert doc["doc"]["short_description"] and doc["doc"]["description"]
        assert f"{FQCN}.{name}" in doc["examples"], f"{name}: the examples do not use it"
        yaml.safe_load(doc["examples"])
        assert doc["return"]["_value"]["description"] and doc["return"]["_value"]["type"]


def test_the_documented_arguments_are_the_functions() -> None:
    """_input is the value before the pipe; the other options are the function's other parameters,
    in order (positional), required exactly when the function has no default for them."""
    for name, func in FUNCS.items():
        doc = yaml.safe_load((FILTERS / f"{name}.yml").read_text())["DOCUMENTATION"]
        params = list(inspect.signature(func).parameters.values())
        options = doc["options"]
        assert options.pop("_input")["required"] is True, name
        assert list(options) == [p.name for p in params[1:]], f"{name}: options differ from the function's"
        positional = [p.strip() for p in doc.get("positional", "").split(",") if p.strip()]
        assert positional == [p.name for p in params[1:]], f"{name}: positional order"
        for p in params[1:]:
            required = p.default is inspect.Parameter.empty
            assert bool(options[p.name].get("required")) == required, f"{name}: {p.name} required"
            if not required:
                assert options[p.name]["default"] == p.default, f"{name}: {p.name} default"

"""docs/security.md names the test that shows each attack stopped: every name it gives is a test
that exists, and every attack test here is named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "security.md").read_text()


def functions_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_the_threat_model_names_exists() -> None:
    named: list[tuple[str, str]] = []
    current = None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?", DOC):
        current = path or current
        if name:
            named.append((current or "", name))
    assert len(named) > 30
    missing = [f"{p}::{n}" for p, n in named if not (ROOT / p).is_file() or n not in functions_of(ROOT / p)]
    assert missing == [], f"docs/security.md names tests that do not exist: {missing}"


def test_every_attack_test_is_in_the_threat_model() -> None:
    here = Path(__file__).parent
    unnamed = [f"{p.name}::{n}" for p in sorted(here.glob("test_*.py")) if p != Path(__file__)
               for n in sorted(functions_of(p)) if n not in DOC]  # fmt: skip
    assert unnamed == [], f"attack tests docs/security.md does not name: {unnamed}"

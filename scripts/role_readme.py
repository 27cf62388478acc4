"""Writes each role's options into its README (roles/<role>/README.md) from its
meta/argument_specs.yml, so the README cannot drift from what the role checks. The README's
hand-written opening (what the role does, an example play, what it needs) stays as it is; only
the block between the two markers below is written. Defaults the spec leaves out come from the
role's defaults/main.yml (what the role really uses). Not shipped: the READMEs it writes are.

  python scripts/role_readme.py            write every role's README
  python scripts/role_readme.py --check    exit 1 naming each README that is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN options: generated from meta/argument_specs.yml by scripts/role_readme.py -->"
END = "<!-- END options -->"
# A default longer than this goes below the table as YAML instead of into its cell.
CELL_MAX = 60


def roles() -> list[Path]:
    return sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def _type(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "str")
    return f"list of {spec.get('elements', 'str')}" if kind == "list" else kind


def _text(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value or "")
    return " ".join(text.split()).replace("|", "\\|")


def _flatten(options: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, spec in options.items():
        rows.append((prefix + name, spec))
        if spec.get("options"):
            rows += _flatten(spec["options"], f"{prefix}{name}.")
    return rows


def options_block(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.is_file() else {}
    out = [BEGIN, "", "## Options", ""]
    long: list[tuple[str, Any]] = []
    for entry, spec in specs.items():
        out.append(f"Entry point `{entry}`: {_text(spec.get('short_description'))}.")
        if spec.get("description"):
            out += ["", _text(spec["description"])]
        if entry != "main" and spec.get("options") == specs.get("main", {}).get("options"):
            out += ["", "The same options as `main`.", ""]
            continue
        out += ["", "| option | type | default | description |", "| --- | --- | --- | --- |"]
        for name, opt in _flatten(spec.get("options") or {}):
            if "default" in opt:
                default: Any = opt["default"]
            elif name in defaults:
                default = defaults[name]
            else:
                default = None
            if opt.get("required"):
                cell = "(required)"
            elif default is None:
                cell = "(none)"
            else:
                rendered = json.dumps(default)
                if len(rendered) > CELL_MAX:
                    long.append((name, default))
                    cell = "(below)"
                else:
                    cell = f"`{rendered}`".replace("|", "\\|")
            text = _text(opt.get("description"))
            if opt.get("choices"):
                text += " One of: " + ", ".join(f"`{c}`" for c in opt["choices"]) + "."
            out.append(f"| `{name}` | {_type(opt)} | {cell} | {text} |")
        out.append("")
    if long:
        out += ["Longer defaults:", ""]
        for name, default in long:
            dumped = yaml.safe_dump({name: default}, default_flow_style=False, sort_keys=False, width=100)
            out += ["```yaml", dumped.rstrip("\n"), "```", ""]
    out.append(END)
    return "\n".join(out) + "\n"


def render(role: Path) -> str:
    """The README with its options block written (after the opening when there is none yet)."""
    readme = role / "README.md"
    text = readme.read_text() if readme.is_file() else f"# {role.name}\n\n"
    block = options_block(role)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1].lstrip("\n")
    return text.rstrip("\n") + "\n\n" + block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a README is stale")
    args = parser.parse_args()
    stale = []
    for role in roles():
        want = render(role)
        readme = role / "README.md"
        if readme.is_file() and readme.read_text() == want:
            continue
        stale.append(readme.relative_to(ROOT))
        if not args.check:
            readme.write_text(want)
    if args.check and stale:
        print("stale (python scripts/role_readme.py writes them):", *map(str, stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

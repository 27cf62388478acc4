"""galaxy-importer (the code galaxy.ansible.com and Automation Hub import uploads with) on the tarball,
with Galaxy's configuration and a Hub-like one: the import succeeds with nothing to say (no
warning, no error: ansible-lint's findings, a missing role README and a missing changelog are all
warnings or errors there) but the count of the shipped sanity ignore files' lines, which the
importer reports for a reviewer to read (tests/sanity/ignore-2.X.txt: each says why), and what it
found is the whole collection."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
pytestmark = pytest.mark.timeout(1200)
ROOT = HERE.parents[1]
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
FILTERS = sorted(p.stem for p in (ROOT / "plugins" / "filter").glob("*.yml"))


@pytest.mark.parametrize("config", ["galaxy", "hub"])
def test_the_import_passes_with_nothing_to_say(
    config: str, tarball: Path, galaxy_venv: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PATH": f"{galaxy_venv / 'bin'}:{os.environ['PATH']}",
           "GALAXY_IMPORTER_CONFIG": str(HERE / f"galaxy-importer-{config}.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}  # fmt: skip
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(galaxy_venv / "bin" / "python"), "-m", "galaxy_importer.main", str(tarball)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "Importer processing completed successfully" in log, log
    said = [ln for ln in log.splitlines() if ln.startswith(("WARNING", "ERROR", "CRITICAL"))]
    # galaxy-importer 0.4.44 gives flake8 every file of a plugin, the YAML documentation that
    # ansible-core reads for a filter (plugins/filter/NAME.yml) too: E999, Python syntax, on YAML.
    # Only that is let through, and only for those files.
    yaml_docs = [ln for ln in said if re.match(r"WARNING: plugins/filter/[a-z_]+\.yml:\d+:\d+: E999 ", ln)]
    assert (config == "hub") == bool(yaml_docs), "flake8 runs with the Hub-like configuration only"
    said = [ln for ln in said if ln not in yaml_docs]
    # Each ignore file is reported with its count of lines, and nothing else is said of them.
    sanity = ROOT / "tests" / "sanity"
    ignores = {p.name: len(p.read_text().splitlines()) for p in sanity.glob("ignore-*.txt")}
    told = r"WARNING: Ignore files skip ansible-test sanity tests, found (\S+) with (\d+) statement\(s\)"
    reported = {m.group(1): int(m.group(2)) for ln in said if (m := re.fullmatch(told, ln))}
    assert reported == ignores
    said = [ln for ln in said if not ln.startswith("WARNING: Ignore files skip ansible-test sanity tests")]
    assert said == [], "\n".join(said)

    result = json.loads((tmp_path / "importer_result.json").read_text())
    contents = {(c["content_type"], c["name"]) for c in result["contents"]}
    assert {("role", r) for r in ROLES} <= contents
    assert {("filter", f) for f in FILTERS} <= contents
    assert {("playbook", p) for p in ("gpusrv.yml", "pi.yml", "acceptance.yml")} <= contents
    docs = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
    for role in ROLES:
        assert docs[("role", role)]["readme_html"], f"{role}: no README in the import"
    for name in FILTERS:
        assert docs[("filter", name)]["doc_strings"]["doc"]["name"] == name
    # Galaxy shows the root README.md (whatever galaxy.yml's readme says): the users' part is there.
    readme = result["docs_blob"]["collection_readme"]
    assert readme["name"] == "README.md" and "Install from Galaxy" in readme["html"]
    assert result["requires_ansible"] == (ROOT / "meta" / "runtime.yml").read_text().split('"')[1]

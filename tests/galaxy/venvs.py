"""The two venvs next to .venv that the Galaxy checks use, made with .venv's uv from pinned files
and made again only when those files change (a stamp of their sha256):

  .venv-galaxy  galaxy-importer and antsibull-changelog (requirements/galaxy.txt), and the
                collection's dependencies as .venv's `ansible` package bundles them, where
                ansible-lint finds them when galaxy-importer runs it (site-packages)
  .venv-oldest  the oldest supported Ansible (ansible 10.7.0, ansible-core 2.17): the project's
                dev set as in constraints.txt with requirements/oldest.txt's pins instead

  python tests/galaxy/venvs.py galaxy|oldest     prints the venv's folder (make molecule-oldest)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv" / "bin" / "uv"
REQ = ROOT / "requirements"
INPUTS = {
    "galaxy": [REQ / "galaxy.txt", REQ / "constraints.txt", ROOT / "galaxy.yml"],
    "oldest": [REQ / "constraints.txt", REQ / "oldest.txt", ROOT / "pyproject.toml"],
}


def _pins(path: Path) -> dict[str, str]:
    lines = (ln.strip() for ln in path.read_text().splitlines())
    return dict(ln.split("==", 1) for ln in lines if ln and not ln.startswith("#"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def ensure(name: str) -> Path:
    venv = ROOT / f".venv-{name}"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in INPUTS[name])).hexdigest()
    stamp = venv / ".hailo-stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        return venv
    subprocess.run([str(UV), "venv", "-q", "--clear", "--python", sys.executable, str(venv)], check=True)
    install = [str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    env = {"UV_LINK_MODE": "copy"}
    if name == "galaxy":
        subprocess.run([*install, "-r", str(REQ / "galaxy.txt")], check=True, env=_env(env))
        (site,) = (venv / "lib").glob("python3*/site-packages")
        install_collections(dependencies(ROOT / ".venv"), site)
    else:
        # constraints.txt without the names oldest.txt pins, which then override pyproject's ranges.
        oldest = {_norm(n) for n in _pins(REQ / "oldest.txt")}
        kept = {n: v for n, v in _pins(REQ / "constraints.txt").items() if _norm(n) not in oldest}
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
            constraints.write("".join(f"{n}=={v}\n" for n, v in kept.items()))
            constraints.flush()
            subprocess.run([*install, "-e", f"{ROOT}[dev]", "-c", constraints.name,
                            "--override", str(REQ / "oldest.txt")], check=True, env=_env(env))  # fmt: skip
    stamp.write_text(digest)
    return venv


def bundled(venv: Path, fqcn: str) -> Path:
    """Where VENV's `ansible` package keeps the collection FQCN."""
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site.joinpath("ansible_collections", *fqcn.split("."))


def dependencies(venv: Path) -> list[Path]:
    """galaxy.yml's dependencies and what they depend on, as VENV's `ansible` package bundles them."""
    import yaml

    todo, found = list(yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]), {}
    while todo:
        fqcn = todo.pop()
        if fqcn not in found:
            found[fqcn] = bundled(venv, fqcn)
            manifest = json.loads((found[fqcn] / "MANIFEST.json").read_text())
            todo += list(manifest["collection_info"]["dependencies"] or {})
    return list(found.values())


def install_collections(sources: list[Path], dest: Path) -> subprocess.CompletedProcess[str]:
    """ansible-galaxy collection install of tarballs and collection folders into DEST (a folder
    that gets ansible_collections/), offline: each dependency's range must accept what is given."""
    lines = [f"  - name: {s}\n    type: {'file' if s.is_file() else 'dir'}\n" for s in sources]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as req:
        req.write("collections:\n" + "".join(lines))
        req.flush()
        return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-galaxy"), "collection", "install",
                               "--offline", "--force", "-p", str(dest), "-r", req.name],
                              env=_env({"ANSIBLE_COLLECTIONS_PATH": str(dest)}), capture_output=True,
                              text=True, check=True)  # fmt: skip


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def ansible_test_bootstrap(venv: Path) -> None:
    """ansible-test downloads get-pip.py from a host this machine cannot reach: give it the
    stand-in (lab/standins/get_pip.py) under the name it looks for, unless one is there."""
    source = next((venv / "lib").glob("python3*/site-packages/ansible_test/_internal/python_requirements.py"))
    (pip,) = re.findall(r"pip='([0-9.]+)'", source.read_text())
    cache = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{pip.replace('.', '_')}.py"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text((ROOT / "lab" / "standins" / "get_pip.py").read_text())


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in INPUTS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(INPUTS)}")
    print(ensure(sys.argv[1]))

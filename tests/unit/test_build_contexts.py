"""Each image's sources are listed once, in images/<image>/Dockerfile.dockerignore: BuildKit reads
that file for the image's Dockerfile, its build script names the image's revision or tag from its
`!` lines, and the role that builds the image on GPUSrv packs those paths. Here: the list is one
a line with no patterns (so a shell `sed` and Ansible read it as BuildKit does), every file the
Dockerfile copies is in it, and the compiler's list holds the compiler alone: hef_compiler imports
nothing from the sidecar (its shape constants are a copy, checked equal here)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("runtime", "compiler")
# A path inside the repository: names of letters, digits, '_', '.', '-', none of them '.' or '..'
# (a '..' would pack, and let the image copy, what lies outside it).
PLAIN_PATH = re.compile(r"(?!\.\.?(/|$))[A-Za-z0-9_.-]+(/(?!\.\.?(/|$))[A-Za-z0-9_.-]+)*")


def build_context(image: str) -> list[str]:
    """The image's sources as its build script and role read them: the `!` lines."""
    text = (ROOT / "images" / image / "Dockerfile.dockerignore").read_text()
    return [line[1:] for line in text.splitlines() if line.startswith("!")]


def _copied(image: str) -> list[str]:
    """The context paths the Dockerfile's COPY and ADD instructions read (not --from a stage or
    another named context)."""
    text = (ROOT / "images" / image / "Dockerfile").read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(w.startswith("--from=") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += args[:-1]
    return sources


@pytest.mark.parametrize("image", IMAGES)
def test_the_context_list_is_plain_paths_that_exist(image: str) -> None:
    lines = (ROOT / "images" / image / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    # Everything is left out first; the rest only includes paths or leaves out compiled files.
    assert rules[0] == "*", rules
    for rule in rules[1:]:
        assert rule.startswith("!") or rule in ("**/__pycache__", "**/*.pyc"), rule
    for path in build_context(image):
        assert PLAIN_PATH.fullmatch(path), f"{path!r} is not a plain path"
        assert (ROOT / path).exists(), f"{image}: {path} is listed but missing"
    assert f"images/{image}" in build_context(image), "the build script needs the image's own folder"


def test_a_plain_path_stays_in_the_repository() -> None:
    inside = ("images/runtime", "sidecar_app", ".dockerignore", "a/..b/c..")
    assert all(PLAIN_PATH.fullmatch(p) for p in inside)
    outside = ("..", "../etc", "images/../../etc", "images/..", ".", "./images", "images/./x", "/etc", "a//b")
    assert not any(PLAIN_PATH.fullmatch(p) for p in outside)


@pytest.mark.parametrize("image", IMAGES)
def test_every_file_the_dockerfile_copies_is_listed(image: str) -> None:
    listed = build_context(image)
    copied = _copied(image)
    assert copied, "no COPY found: the parser no longer reads this Dockerfile"
    unlisted = [c for c in copied if not any(c == p or c.startswith(p + "/") for p in listed)]
    assert unlisted == [], f"{image} copies {unlisted}, which its Dockerfile.dockerignore leaves out"


@pytest.mark.parametrize("image", IMAGES)
def test_the_build_script_reads_the_same_list(image: str) -> None:
    """What the script's `sed` prints is what BuildKit and the role read."""
    out = subprocess.run(["sed", "-n", "s/^!//p", f"images/{image}/Dockerfile.dockerignore"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.split() == build_context(image)
    script = (ROOT / "images" / image / "build.sh").read_text()
    assert f"sed -n 's/^!//p' images/{image}/Dockerfile.dockerignore" in script


@pytest.mark.parametrize("role,image", [("sidecar_image", "runtime"), ("hef_compile", "compiler")])
def test_the_role_packs_the_listed_context(role: str, image: str) -> None:
    """The role's context is read from the list, not written out a second time."""
    text = (ROOT / "roles" / role / "vars" / "main.yml").read_text()
    assert f"'/images/{image}/Dockerfile.dockerignore'" in text
    assert "sidecar_app" not in text and "pyproject.toml" not in text


def test_the_compiler_context_holds_no_sidecar() -> None:
    assert build_context("compiler") == ["hef_compiler", "images/compiler"]


def test_hef_compiler_imports_nothing_outside_itself() -> None:
    project = {"sidecar_app", "hef_compiler"}
    for path in sorted((ROOT / "hef_compiler").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in project - {"hef_compiler"}, f"{path.relative_to(ROOT)} imports {name}"


def test_the_compiler_runs_from_its_context_alone(tmp_path: Path) -> None:
    """As in the compiler image: only the listed context on the path, the sidecar unimportable."""
    for name in build_context("compiler"):
        src = ROOT / name
        shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.modules['sidecar_app'] = None; sys.path.insert(0, sys.argv[1]); "
            "import hef_compiler.cli, hef_compiler.golden, hef_compiler.inputs, hef_compiler.pipeline; "
            "assert hef_compiler.cli.__file__.startswith(sys.argv[1]), hef_compiler.cli.__file__; "
            "sys.argv = ['hailo-compile', '--help']; hef_compiler.cli.main(['--help'])")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "--onnx" in run.stdout


def test_the_compiler_checks_the_shapes_the_sidecar_serves() -> None:
    from hef_compiler import shape as compiler
    from sidecar_app import shape as sidecar

    for name in ("WINDOW_LEN", "CHANNELS", "LATENT_DIM"):
        assert getattr(compiler, name) == getattr(sidecar, name), name

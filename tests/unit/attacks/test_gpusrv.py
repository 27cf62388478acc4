"""Attacks on GPUSrv's release path (roles/hef_compile/files/collect-release.py), from the side of a
compromised compiler (a DFC wheel that runs as the container's user and writes its output folder):
links to the release key or any root-readable file, hard links, FIFOs, folders, extra files,
manifests that do not hold together, files too large. Each is refused in one line, the key never
reaches the folder that is signed and fetched, and a release collected before stays as it was.
The lab runs one of them through the role on lab-gpusrv (tests/lab/converged/test_release_key.py).
docs/security.md names each case."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "hef_compile" / "files" / "collect-release.py"
KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nthe release key\n-----END OPENSSH PRIVATE KEY-----\n"


def write_release(folder: Path) -> None:
    """A release as hailo-compile writes it (hef_compiler/pipeline.py: _write_release)."""
    folder.mkdir(parents=True)
    files = {"model.hef": b"HEF", "model.onnx": b"ONNX", "golden.json": b'{"format":1}\n'}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    sha = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    (folder / "model.hef.sha256").write_text(f"{sha['model.hef']}  model.hef\n")
    golden = {"file": "golden.json", "sha256": sha["golden.json"]}
    manifest = {
        "model": "imu-encoder",
        "version": "1.0.0",
        "hef": "model.hef",
        "hef_sha256": sha["model.hef"],
        "onnx_sha256": sha["model.onnx"],
        "golden": golden,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def gpusrv(tmp_path: Path) -> dict[str, Path]:
    key = tmp_path / "etc" / "id_ed25519"
    key.parent.mkdir()
    key.write_bytes(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    write_release(out / "imu-encoder" / "1.0.0")
    return {"out": out, "release": out / "imu-encoder" / "1.0.0", "key": key, "dest": tmp_path / "releases"}


def collect(g: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), str(g["out"]), "imu-encoder", "1.0.0", str(g["dest"])]
    return subprocess.run(argv, capture_output=True, text=True)


def leaked(g: dict[str, Path]) -> list[Path]:
    return [p for p in g["dest"].rglob("*") if p.is_file() and KEY in p.read_bytes()]


def test_a_release_is_collected_once_into_a_folder_of_roots(gpusrv: dict[str, Path]) -> None:
    run = collect(gpusrv)
    assert run.returncode == 0 and "imu-encoder 1.0.0 collected" in run.stdout, run.stderr
    got = gpusrv["dest"] / "imu-encoder" / "1.0.0"
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in gpusrv["release"].iterdir())
    assert all((got / p.name).read_bytes() == p.read_bytes() for p in gpusrv["release"].iterdir())
    assert {oct(p.stat().st_mode & 0o777) for p in got.iterdir()} == {
        "0o644"
    } and got.stat().st_mode & 0o777 == 0o755
    (got / "manifest.json.sig").write_text("a signature")  # signed after the first run: kept
    # A signature the role's earlier versions made in the compiler's folder is never read, even a
    # link to the key.
    (gpusrv["release"] / "manifest.json.sig").symlink_to(gpusrv["key"])
    again = collect(gpusrv)
    assert (
        "imu-encoder 1.0.0 unchanged" in again.stdout
        and (got / "manifest.json.sig").read_text() == "a signature"
    )
    assert leaked(gpusrv) == []


def to_key(name: str) -> Callable[[dict[str, Path]], None]:
    def damage(g: dict[str, Path]) -> None:
        (g["release"] / name).unlink()
        (g["release"] / name).symlink_to(g["key"])

    return damage


def hard_link(g: dict[str, Path]) -> None:
    (g["release"] / "model.onnx").unlink()
    os.link(g["key"], g["release"] / "model.onnx")


def fifo(g: dict[str, Path]) -> None:
    (g["release"] / "model.onnx").unlink()
    os.mkfifo(g["release"] / "model.onnx")


def a_folder(g: dict[str, Path]) -> None:
    (g["release"] / "golden.json").unlink()
    (g["release"] / "golden.json").mkdir()


def folder_link(g: dict[str, Path]) -> None:
    """The version folder itself a link to the key's folder (the key named as a release file)."""
    (g["key"].parent / "model.hef").write_bytes(KEY)
    for p in g["release"].iterdir():
        p.unlink()
    g["release"].rmdir()
    g["release"].symlink_to(g["key"].parent)


def manifest(**changes: object) -> Callable[[dict[str, Path]], None]:
    def damage(g: dict[str, Path]) -> None:
        path = g["release"] / "manifest.json"
        m = {**json.loads(path.read_text()), **changes}
        path.write_text(json.dumps({k: v for k, v in m.items() if v is not None}))

    return damage


def huge(g: dict[str, Path]) -> None:
    with (g["release"] / "model.hef").open("r+b") as f:
        f.truncate(5 << 30)  # sparse: 5 GiB in no time


CASES: dict[str, tuple[Callable[[dict[str, Path]], None], str]] = {
    "model.hef links to the key": (to_key("model.hef"), "model.hef is a symbolic link"),
    "model.onnx links to the key": (to_key("model.onnx"), "model.onnx is a symbolic link"),
    "manifest.json links to the key": (to_key("manifest.json"), "manifest.json is a symbolic link"),
    "a hard link to the key": (hard_link, "model.onnx has 2 links"),
    "a FIFO": (fifo, "model.onnx is not a regular file"),
    "a folder": (a_folder, "golden.json is not a regular file"),
    "the release folder a link": (folder_link, "1.0.0: a symbolic link, not the compiler's folder"),
    "a file hailo-compile never writes": (
        lambda g: (g["release"] / "id_ed25519").write_bytes(KEY),
        "id_ed25519: not a file hailo-compile writes",
    ),
    "too large": (huge, "model.hef is 5368709120 bytes, more than"),
    "another model's manifest": (manifest(model="other"), "it is model 'other' version '1.0.0'"),
    "hef elsewhere": (manifest(hef="../x"), "hef must be model.hef"),
    "empty sha256": (manifest(hef_sha256=""), "hef_sha256 must be 64 lower-case hex digits"),
    "no onnx sha256": (manifest(onnx_sha256=None), "onnx_sha256 must be 64 lower-case hex digits"),
    "golden not an object": (manifest(golden="golden.json"), "golden must be an object naming golden.json"),
    "golden names the model": (
        manifest(golden={"file": "model.hef", "sha256": "0" * 64}),
        "golden must be an object naming golden.json",
    ),
    "golden data without golden": (
        manifest(golden=None),
        "golden.json is there but the manifest names no golden",
    ),
    "golden named, data missing": (
        lambda g: (g["release"] / "golden.json").unlink(),
        "golden.json is missing",
    ),
    "a file changed": (lambda g: (g["release"] / "model.onnx").write_bytes(b"X"), "model.onnx does not have"),
    "model.hef.sha256 disagrees": (
        lambda g: (g["release"] / "model.hef.sha256").write_text("0" * 64 + "  model.hef\n"),
        "model.hef.sha256 does not say what the manifest says",
    ),
    "manifest not JSON": (
        lambda g: (g["release"] / "manifest.json").write_text("{"),
        "manifest.json is not JSON",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_compromised_compiler_output_is_refused(gpusrv: dict[str, Path], case: str) -> None:
    assert collect(gpusrv).returncode == 0  # the release collected before: it must stay as it was
    before = {p: p.read_bytes() for p in gpusrv["dest"].rglob("*") if p.is_file()}
    damage, reason = CASES[case]
    damage(gpusrv)
    run = collect(gpusrv)
    assert run.returncode == 1 and reason in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Nothing was signed or fetched" in run.stderr
    assert leaked(gpusrv) == [], "the key reached the folder that is signed and fetched"
    after = {p: p.read_bytes() for p in gpusrv["dest"].rglob("*") if p.is_file()}
    assert after == before, "the collected release changed"


def test_a_refused_first_release_leaves_nothing_behind(gpusrv: dict[str, Path]) -> None:
    """A compiler output refused before any release of its model was collected: no file, and no
    empty model folder either (the next run, or a person, would take it for a collected model).
    A version of another shape than dotted numbers is not collected (the Pis could not order it)."""
    (gpusrv["release"] / "model.hef").unlink()
    (gpusrv["release"] / "model.hef").symlink_to(gpusrv["key"])
    run = collect(gpusrv)
    assert run.returncode == 1 and "Nothing was signed or fetched" in run.stderr, run.stderr
    assert not (gpusrv["dest"] / "imu-encoder").exists() and leaked(gpusrv) == []
    argv = [sys.executable, str(SCRIPT), str(gpusrv["out"]), "imu-encoder", "1.0.0-rc1", str(gpusrv["dest"])]
    run = subprocess.run(argv, capture_output=True, text=True)
    assert run.returncode == 1 and "a version of dotted numbers" in run.stderr, run.stderr

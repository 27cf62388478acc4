"""roles/sidecar_stack/files/verify-release.py, the check a Pi makes before it writes a release:
the signature (ssh-keygen -Y, as hef_compile signs) and every file against the signed manifest.
Each bad input is refused with its reason; the lab runs the same script on the Pis
(tests/lab/rollout/test_signed_releases.py). The attacks on it are in tests/unit/attacks/test_push.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "sidecar_stack" / "files" / "verify-release.py"
NS = "hailo-pipeline-release"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def sign(key: Path, manifest: Path, ns: str = NS) -> None:
    manifest.with_name("manifest.json.sig").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", ns, str(manifest)], check=True)


def make_release(tmp_path: Path) -> dict[str, Path]:
    """A release as hef_compile makes it, signed by a key of the allowed signers."""
    rel = tmp_path / "release"
    rel.mkdir()
    files = {"model.hef": b"hef", "model.onnx": b"onnx", "golden.json": b"{}"}
    for name, data in files.items():
        (rel / name).write_bytes(data)
    sha = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    manifest = {
        "model": "imu-encoder",
        "version": "1.2.0",
        "hef": "model.hef",
        "hef_sha256": sha["model.hef"],
        "onnx_sha256": sha["model.onnx"],
        "golden": {"file": "golden.json", "sha256": sha["golden.json"]},
    }
    (rel / "manifest.json").write_text(json.dumps(manifest))
    key = tmp_path / "key"
    public = keygen(key)
    sign(key, rel / "manifest.json")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'release@gpusrv namespaces="{NS}" {public}\n')
    return {"release": rel, "key": key, "allowed": allowed, "public": tmp_path / "key.pub", "tmp": tmp_path}


@pytest.fixture
def signed(tmp_path: Path) -> dict[str, Path]:
    return make_release(tmp_path)


def verify(
    p: dict[str, Path],
    require: str = "true",
    revoked: Path | None = None,
    files: Path | None = None,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), *options, str(p["release"]), NS, require, str(p["allowed"])]
    if revoked is not None or files is not None:
        argv.append(str(revoked or ""))
    if files is not None:
        argv.append(str(files))
    return subprocess.run(argv, capture_output=True, text=True)


def test_a_signed_release_verifies(signed: dict[str, Path]) -> None:
    run = verify(signed)
    assert run.returncode == 0, run.stderr
    assert 'Good "hailo-pipeline-release" signature for release@gpusrv' in run.stdout
    assert run.stdout.count("(as signed)") == 3


def other_key(p: dict[str, Path]) -> None:
    keygen(p["tmp"] / "other")
    sign(p["tmp"] / "other", p["release"] / "manifest.json")


def expire(p: dict[str, Path]) -> None:
    text = (
        p["allowed"].read_text().replace(f'namespaces="{NS}"', f'namespaces="{NS}",valid-before="20240101"')
    )
    p["allowed"].write_text(text)


CASES: dict[str, tuple[Callable[[dict[str, Path]], object], str]] = {
    "unsigned": (lambda p: (p["release"] / "manifest.json.sig").unlink(), "unsigned: no manifest.json.sig"),
    "unknown key": (other_key, "signed by a key that is not in the allowed signers"),
    "expired key": (expire, "signed by a key that is not valid now"),
    "other namespace": (lambda p: sign(p["key"], p["release"] / "manifest.json", "other"), "does not verify"),
    "manifest edited": (
        lambda p: (p["release"] / "manifest.json").write_text(
            (p["release"] / "manifest.json").read_text() + " "
        ),
        "manifest.json was changed after signing",
    ),
    "model edited": (lambda p: (p["release"] / "model.hef").write_bytes(b"HEF"), "model.hef has sha256"),
    "golden edited": (lambda p: (p["release"] / "golden.json").write_bytes(b"[]"), "golden.json has sha256"),
    "file missing": (lambda p: (p["release"] / "golden.json").unlink(), "golden.json is missing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_release_is_refused_with_its_reason(signed: dict[str, Path], case: str) -> None:
    damage, reason = CASES[case]
    damage(signed)
    run = verify(signed)
    assert run.returncode != 0 and reason in run.stderr, run.stderr


def test_a_revoked_key_is_refused_and_rotation_keeps_two_keys(signed: dict[str, Path]) -> None:
    revoked = signed["tmp"] / "revoked_keys"
    revoked.write_text(signed["public"].read_text())
    run = verify(signed, revoked=revoked)
    assert run.returncode != 0 and "with a revoked key" in run.stderr
    # Rotation: the new key signs, both are allowed while the fleet changes over.
    new_public = keygen(signed["tmp"] / "new")
    with signed["allowed"].open("a") as f:
        f.write(f'release-2027@gpusrv namespaces="{NS}" {new_public}\n')
    sign(signed["tmp"] / "new", signed["release"] / "manifest.json")
    run = verify(signed, revoked=revoked)
    assert run.returncode == 0 and "signature for release-2027@gpusrv" in run.stdout, run.stderr


def test_unsigned_is_accepted_only_when_signatures_are_not_required(signed: dict[str, Path]) -> None:
    (signed["release"] / "manifest.json.sig").unlink()
    run = verify(signed, require="false")
    assert run.returncode == 0 and "signature: none" in run.stdout
    other_key(signed)  # a wrong signature is never accepted
    assert verify(signed, require="false").returncode != 0


def in_place(
    incoming: Path, folder: Path, allowed: Path, revoked: str = ""
) -> subprocess.CompletedProcess[str]:
    """verify-release.py --in-place, as the role runs it (ansible.builtin.script): the incoming
    manifest and signature base64-encoded in the environment, the keys as text."""
    sig = incoming / "manifest.json.sig"
    env = {
        "PATH": os.environ["PATH"],
        "RELEASE_MANIFEST_B64": base64.b64encode((incoming / "manifest.json").read_bytes()).decode(),
        "RELEASE_SIGNATURE_B64": base64.b64encode(sig.read_bytes()).decode() if sig.exists() else "",
        "RELEASE_ALLOWED_SIGNERS": allowed.read_text().strip(),
        "RELEASE_REVOKED_KEYS": revoked,
        "TMPDIR": str(folder.parent / "tmp"),
    }
    argv = [sys.executable, str(SCRIPT), "--in-place", str(folder), NS, "true"]
    return subprocess.run(argv, capture_output=True, text=True, env=env)


def test_files_are_checked_in_the_folder_already_in_place(signed: dict[str, Path]) -> None:
    """When the release's folder is in place, only the incoming manifest and signature are
    checked (--in-place, one run): the signature is the incoming one's, the files are the
    folder's, the manifest must be the folder's own; the stage is removed."""
    incoming = signed["tmp"] / "incoming"
    incoming.mkdir()
    (signed["tmp"] / "tmp").mkdir()
    for name in ("manifest.json", "manifest.json.sig"):
        (incoming / name).write_bytes((signed["release"] / name).read_bytes())
    run = in_place(incoming, signed["release"], signed["allowed"])
    assert run.returncode == 0 and run.stdout.count("(as signed)") == 3, run.stderr
    run = in_place(incoming, signed["release"], signed["allowed"], signed["public"].read_text())
    assert run.returncode != 0 and "with a revoked key" in run.stderr
    # Another manifest, validly signed, under a name already in place: never swapped in.
    m = json.loads((incoming / "manifest.json").read_text())
    (incoming / "manifest.json").write_text(json.dumps({**m, "config_version": "other"}))
    sign(signed["key"], incoming / "manifest.json")
    run = in_place(incoming, signed["release"], signed["allowed"])
    assert run.returncode != 0 and "in place with another manifest.json" in run.stderr, run.stderr
    for name in ("manifest.json", "manifest.json.sig"):
        (incoming / name).write_bytes((signed["release"] / name).read_bytes())
    (signed["release"] / "model.onnx").write_bytes(b"ONNX")  # changed on the host
    run = in_place(incoming, signed["release"], signed["allowed"])
    assert run.returncode != 0 and "model.onnx has sha256" in run.stderr
    other_key({**signed, "release": incoming})  # the incoming manifest re-signed by an unknown key
    run = in_place(incoming, signed["release"], signed["allowed"])
    assert run.returncode != 0 and "not in the allowed signers" in run.stderr
    (incoming / "manifest.json.sig").unlink()  # unsigned, signatures required
    run = in_place(incoming, signed["release"], signed["allowed"])
    assert run.returncode != 0 and "unsigned" in run.stderr
    assert list((signed["tmp"] / "tmp").iterdir()) == [], "a stage was left behind"

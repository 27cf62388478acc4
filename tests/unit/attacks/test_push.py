"""Attacks on push mode's check of a release (roles/sidecar_stack/files/verify-release.py), from the
side of someone who can write a release folder (on the controller, or on the host before an
in-place check), or who holds a release once validly signed: each case signs what it crafts with a
key of the allowed signers where a signature would be wanted, and must be refused in one line with
its reason. Then the sidecar's own check of the golden windows (sidecar_app/release.py), which must
apply the same rule. Real ssh-keygen; docs/security.md names each case."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_verify_release import NS, SCRIPT, in_place, keygen, make_release, sign, verify

from sidecar_app.errors import ModelLoadError
from sidecar_app.release import Release, check_golden

Rel = dict[str, Path]


@pytest.fixture
def rel(tmp_path: Path) -> Rel:
    return make_release(tmp_path)


def edit(p: Rel, **changes: Any) -> None:
    """Changes the manifest and signs it again with the allowed key (what a key holder, or a
    compromised build, could produce)."""
    path = p["release"] / "manifest.json"
    m = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in m.items() if v is not None}))
    sign(p["key"], path)


def refused(run: subprocess.CompletedProcess[str], reason: str) -> None:
    assert run.returncode == 1 and reason in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr


def serving(p: Rel, version: str) -> tuple[str, ...]:
    record = p["tmp"] / "release.json"
    record.write_text(json.dumps({"current": {"model": {"name": "imu-encoder", "version": version}}}))
    return ("--serving", str(record))


def test_an_older_release_signed_with_a_valid_key(rel: Rel) -> None:
    """1.2.0 with a good signature, on a host that serves 1.10.0: refused, naming the variable that
    lets the operator go back for one run."""
    refused(verify(rel, options=serving(rel, "1.10.0")), "is older than 1.10.0, which this host serves")
    assert "sidecar_stack_allow_downgrade=true" in verify(rel, options=serving(rel, "1.10.0")).stderr
    run = verify(rel, options=(*serving(rel, "1.10.0"), "--allow-older"))
    assert run.returncode == 0 and "replaces 1.10.0 (sidecar_stack_allow_downgrade)" in run.stdout, run.stderr
    assert verify(rel, options=serving(rel, "1.2.0")).returncode == 0, "the release it serves again"
    assert verify(rel, options=serving(rel, "1.1.9")).returncode == 0


@pytest.mark.parametrize(
    ("old", "served"),
    [("1.2.0-rc1", "1.2.0"), ("1.2.0rc1", "1.2.0"), ("1.2.0-beta", "1.2.0"), ("v1", "2")],
    ids=["pre-release -rc1", "pre-release rc1", "pre-release -beta", "letters sort above numbers"],
)
def test_an_older_pre_release_is_not_taken_for_a_newer_one(rel: Rel, old: str, served: str) -> None:
    """A validly signed 1.2.0-rc1 (the release candidate, older than 1.2.0) replayed to a host that
    serves 1.2.0: compared as text, letters sorted after numbers and it passed the rule against
    older releases. A version that is not dotted numbers has no order: refused, naming the
    variable for a deliberate replacement (hef_compile makes only dotted numbers)."""
    edit(rel, version=old)
    refused(verify(rel, options=serving(rel, served)), f"{old} cannot be ordered against {served}")
    assert "sidecar_stack_allow_downgrade=true" in verify(rel, options=serving(rel, served)).stderr
    run = verify(rel, options=(*serving(rel, served), "--allow-older"))
    assert run.returncode == 0 and "(sidecar_stack_allow_downgrade)" in run.stdout, run.stderr


def signed_manifest(p: Rel, text: str) -> None:
    (p["release"] / "manifest.json").write_text(text)
    sign(p["key"], p["release"] / "manifest.json")


def escape(p: Rel) -> None:
    (p["tmp"] / "x").write_bytes(b"hef")
    edit(p, hef="../x")


def absolute(p: Rel) -> None:
    edit(p, hef=str(p["release"] / "model.hef"))


def link(p: Rel, name: str) -> None:
    target = p["tmp"] / f"{name}.elsewhere"
    (p["release"] / name).rename(target)
    (p["release"] / name).symlink_to(target)


def extra_file(p: Rel) -> None:
    (p["release"] / "run-me.sh").write_text("#!/bin/sh\n")


def golden_as(value: object) -> Callable[[Rel], None]:
    return lambda p: edit(p, golden=value)


def sha_of(p: Rel, name: str) -> str:
    return hashlib.sha256((p["release"] / name).read_bytes()).hexdigest()


CASES: dict[str, tuple[Callable[[Rel], object], str]] = {
    "name with ..": (escape, "hef must be model.hef (got '../x')"),
    "absolute name": (absolute, "hef must be model.hef"),
    "model a symbolic link": (lambda p: link(p, "model.hef"), "model.hef is a symbolic link"),
    "golden a symbolic link": (lambda p: link(p, "golden.json"), "golden.json is a symbolic link"),
    "manifest a symbolic link": (lambda p: link(p, "manifest.json"), "manifest.json is a symbolic link"),
    "model a directory": (
        lambda p: ((p["release"] / "model.hef").unlink(), (p["release"] / "model.hef").mkdir()),
        "model.hef is not a regular file",
    ),
    "a file the manifest does not name": (extra_file, "run-me.sh: not named by the signed manifest"),
    "empty sha256": (lambda p: edit(p, hef_sha256=""), "hef_sha256 must be 64 lower-case hex digits"),
    "missing sha256": (lambda p: edit(p, onnx_sha256=None), "onnx_sha256 must be 64 lower-case hex digits"),
    "upper-case sha256": (
        lambda p: edit(p, hef_sha256=sha_of(p, "model.hef").upper()),
        "hef_sha256 must be 64 lower-case hex digits",
    ),
    "golden not an object": (golden_as("golden.json"), "golden must be an object"),
    "golden a list": (golden_as([]), "golden must be an object"),
    "golden replaces the model": (
        lambda p: edit(p, golden={"file": "model.hef", "sha256": sha_of(p, "golden.json")}),
        "golden.file must be golden.json (got 'model.hef')",
    ),
    "golden without sha256": (golden_as({"file": "golden.json"}), "golden.sha256 must be 64"),
    "unsigned model.hef.sha256": (
        lambda p: (p["release"] / "model.hef.sha256").write_text("0" * 64 + "  model.hef\n"),
        "model.hef.sha256 does not say what the signed manifest says",
    ),
    "manifest not an object": (lambda p: signed_manifest(p, "[]"), "manifest.json is not a JSON object"),
    "manifest not JSON": (lambda p: signed_manifest(p, "{"), "manifest.json is not JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_release_signed_with_a_valid_key_is_refused(rel: Rel, case: str) -> None:
    damage, reason = CASES[case]
    damage(rel)
    refused(verify(rel), reason)


@pytest.mark.parametrize("case", ["a directory", "a dangling link"])
def test_a_signature_that_is_not_a_file_is_not_unsigned(rel: Rel, case: str) -> None:
    """Even where unsigned releases are accepted (sidecar_stack_require_signature: false)."""
    sig = rel["release"] / "manifest.json.sig"
    sig.unlink()
    if case == "a directory":
        sig.mkdir()
    else:
        sig.symlink_to(rel["tmp"] / "nowhere")
    what = "not a regular file" if case == "a directory" else "a symbolic link"
    refused(verify(rel, require="false"), f"manifest.json.sig is {what}")


def test_every_principal_of_the_allowed_signers_is_tried(rel: Rel) -> None:
    """The release key is listed twice: first under a principal for another namespace (ssh-keygen's
    find-principals prints only that one), then for releases."""
    line = rel["allowed"].read_text()
    rel["allowed"].write_text(
        line.replace(f'release@gpusrv namespaces="{NS}"', 'ci@gpusrv namespaces="ci"') + line
    )
    run = verify(rel)
    assert run.returncode == 0 and "signature for release@gpusrv" in run.stdout, run.stderr


def test_a_garbage_revocation_list_is_not_a_revoked_key(rel: Rel) -> None:
    revoked = rel["tmp"] / "revoked_keys"
    revoked.write_text("this is not a key\n")
    refused(
        verify(rel, revoked=revoked), "revoked keys list (sidecar_stack_revoked_keys) is unreadable: line 1"
    )
    krl = rel["tmp"] / "krl"
    krl.write_bytes(b"SSHKRL\n\0garbage")
    refused(verify(rel, revoked=krl), "is a KRL ssh-keygen cannot read")
    # A real KRL that revokes another key: the release verifies.
    keygen(rel["tmp"] / "other")
    subprocess.run(["ssh-keygen", "-k", "-q", "-f", str(krl), str(rel["tmp"] / "other.pub")], check=True)
    assert verify(rel, revoked=krl).returncode == 0


def test_the_in_place_check_refuses_a_folder_changed_on_the_host(rel: Rel) -> None:
    """The release's folder already on the host, checked against an incoming validly signed
    manifest: a file added there, or a model replaced by a link to the same bytes, is refused."""
    incoming = rel["tmp"] / "incoming"
    incoming.mkdir()
    (rel["tmp"] / "tmp").mkdir()
    for name in ("manifest.json", "manifest.json.sig"):
        (incoming / name).write_bytes((rel["release"] / name).read_bytes())
    assert in_place(incoming, rel["release"], rel["allowed"]).returncode == 0
    extra_file(rel)
    refused(in_place(incoming, rel["release"], rel["allowed"]), "run-me.sh: not named by the signed manifest")
    (rel["release"] / "run-me.sh").unlink()
    link(rel, "model.onnx")
    refused(in_place(incoming, rel["release"], rel["allowed"]), "model.onnx is a symbolic link")


def test_bad_arguments_get_one_line_not_a_traceback(rel: Rel) -> None:
    argv = [sys.executable, str(SCRIPT), str(rel["tmp"] / "nowhere"), NS, "true", str(rel["allowed"])]
    run = subprocess.run(argv, capture_output=True, text=True)
    refused(run, "the check failed: FileNotFoundError")


# -- the sidecar applies the same rule to the golden windows ---------------------------------------
class Echo:
    """A backend that returns what the golden file expects (the check must stop before it matters)."""

    def infer(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(windows), 64), np.float32), np.zeros((len(windows), 12), np.float32)


@pytest.mark.parametrize(
    ("golden", "reason"),
    [
        ("golden.json", "golden must be an object"),
        ([], "golden must be an object"),
        ({"file": "model.hef", "sha256": "0" * 64}, "golden.file must be golden.json"),
        ({"file": "golden.json", "sha256": ""}, "golden.sha256 must be 64 lower-case hex digits"),
        ({"file": "golden.json"}, "golden.sha256 must be 64 lower-case hex digits"),
    ],
    ids=["a string", "a list", "the model's name", "empty sha256", "no sha256"],
)
def test_the_sidecar_refuses_the_same_golden_entries(tmp_path: Path, golden: object, reason: str) -> None:
    folder = tmp_path / "imu-encoder-1.2.0-abc"
    folder.mkdir()
    release = Release(folder.name, "model.onnx", "0" * 64, "c", 12, root=tmp_path)
    with pytest.raises(ModelLoadError) as err:
        check_golden(Echo(), release, {"golden": golden})  # type: ignore[arg-type]
    assert err.value.kind == "golden" and reason in err.value.message

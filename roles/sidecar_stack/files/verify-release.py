"""verify-release: the check a host makes of a model release before it is used (sidecar_stack role).

  verify-release.py [--serving RELEASE_JSON [--allow-older]] DIR NAMESPACE REQUIRE_SIGNATURE
                    ALLOWED_SIGNERS [REVOKED_KEYS [FILES_DIR]]
  1. DIR/manifest.json.sig is an ssh-keygen -Y signature of DIR/manifest.json in NAMESPACE by a key
     in ALLOWED_SIGNERS that is valid now and not in REVOKED_KEYS (public keys, one a line, or a
     KRL; an unreadable list refuses, it is never taken for "nothing revoked"), every principal
     of the allowed signers tried; REQUIRE_SIGNATURE=false accepts a release without any signature
     file (never a wrongly signed one, nor a signature that is not a regular file);
  2. the signed manifest names model, version, hef (model.hef), hef_sha256 and onnx_sha256 (64
     lower-case hex each) and, when it has golden windows, golden: {file: golden.json, sha256};
  3. FILES_DIR (default DIR: the folder already on the host when only the incoming manifest and
     signature were staged) holds only the manifest, its signature and the files it names, each a
     regular file opened without following links, each with the manifest's sha256 (model.onnx may
     be absent: releases made before it travelled; model.hef.sha256 may stay when it says what
     the manifest says);
  4. with --serving (the host's release.json): a release older than the one the host serves (same
     model, lower version; versions are dotted numbers, and one of another shape, which has no
     order, counts as older) is refused, unless --allow-older (the operator's rollback, for one run).
Prints what it checked; exits 1 with one line naming the problem. Reads only.

  verify-release.py --in-place FOLDER NAMESPACE REQUIRE_SIGNATURE [--serving ... [--allow-older]]
the same checks for a release whose folder is already on the host, in one run (the role's every run
after the first): the incoming manifest and signature come base64-encoded in RELEASE_MANIFEST_B64
and RELEASE_SIGNATURE_B64 (empty: unsigned), the keys in RELEASE_ALLOWED_SIGNERS and
RELEASE_REVOKED_KEYS; they are staged in a temporary folder of its own, removed on exit. FOLDER's
files are checked against the incoming signed manifest, which must also be FOLDER's own manifest (a
release folder never changes).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SHA256 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# The versions that have an order: one to four numbers without leading zeros (hef_compile's inputs).
VERSION = re.compile(r"(?:0|[1-9][0-9]{0,8})(?:\.(?:0|[1-9][0-9]{0,8})){0,3}")
MANIFEST_MAX = 1 << 20


class Refused(Exception):
    """Why the release is not used; one line."""


# -- files, never through a link --------------------------------------------------------------
def open_regular(dirfd: int, name: str) -> int:
    """NAME in the folder DIRFD, opened for reading without following a link; a regular file only."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symbolic link
            raise Refused(f"{name} is a symbolic link: a release holds regular files only") from None
        raise Refused(f"{name} cannot be opened: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{name} is not a regular file: a release holds regular files only")
    return fd


def read_small(dirfd: int, name: str) -> bytes:
    fd = open_regular(dirfd, name)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MANIFEST_MAX + 1)
    if len(data) > MANIFEST_MAX:
        raise Refused(f"{name} is larger than {MANIFEST_MAX} bytes")
    return data


def sha256_of(dirfd: int, name: str) -> str:
    fd = open_regular(dirfd, name)
    with os.fdopen(fd, "rb") as f:
        h = hashlib.sha256()  # no hashlib.file_digest: Python 3.10 (Ubuntu 22.04) runs this too
        while chunk := f.read(1 << 20):
            h.update(chunk)
        return h.hexdigest()


def is_absent(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    return False


# -- the signature -------------------------------------------------------------------------------
def principals_of(allowed: Path) -> list[str]:
    """Every principal named literally in the allowed signers."""
    names: list[str] = []
    for line in allowed.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        field = line.split('"')[1] if line.startswith('"') else line.split()[0]
        names += [p for p in field.split(",") if p and not set(p) & set("*?!")]
    return names


def checked_revocations(path: Path | None) -> Path | None:
    """The revocation list if it has entries, after checking ssh-keygen can read all of it."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Refused(
            f"the revoked keys list (sidecar_stack_revoked_keys) is unreadable: {exc.strerror}"
        ) from None
    if not data.strip():
        return None
    if data.startswith(b"SSHKRL\n\0"):
        krl = subprocess.run(["ssh-keygen", "-Q", "-l", "-f", str(path)], capture_output=True, check=False)
        if krl.returncode != 0:
            raise Refused(
                "the revoked keys list (sidecar_stack_revoked_keys) is a KRL ssh-keygen cannot read"
            )
        return path
    with tempfile.TemporaryDirectory(prefix="verify-release-keys.") as d:
        one = Path(d) / "key.pub"
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            one.write_text(line + "\n")
            key = subprocess.run(["ssh-keygen", "-l", "-f", str(one)], capture_output=True, check=False)
            if key.returncode != 0:
                raise Refused(
                    f"the revoked keys list (sidecar_stack_revoked_keys) is unreadable: line {n} is not a "
                    "public key (one OpenSSH public key per line, or a KRL)"
                )
    return path


def verify_signature(manifest: bytes, sig: Path, ns: str, allowed: Path, revoked: Path | None) -> str:
    """ssh-keygen -Y verify at this host's current time, every principal tried; the good line."""
    try:
        if not allowed.read_text().strip():
            raise Refused("signed, but no allowed signers are configured (sidecar_stack_allowed_signers)")
    except OSError as exc:
        raise Refused(f"the allowed signers cannot be read: {exc.strerror}") from None
    revoked = checked_revocations(revoked)
    find = ["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed)]
    found = subprocess.run(find, capture_output=True, text=True, check=False)
    named = re.split(r"[,\n]", found.stdout) if found.returncode == 0 else []
    principals = list(dict.fromkeys(p.strip() for p in named + principals_of(allowed) if p.strip()))
    errors = [found.stderr]

    def verify(principal: str, with_revocations: bool) -> subprocess.CompletedProcess[bytes]:
        argv = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", ns, "-s", str(sig)]
        if with_revocations and revoked:
            argv += ["-r", str(revoked)]
        return subprocess.run(argv, input=manifest, capture_output=True, check=False)

    for principal in principals:
        proc = verify(principal, True)
        if proc.returncode == 0:
            return proc.stdout.decode(errors="replace").strip()
        errors.append(proc.stderr.decode(errors="replace"))
    if revoked:
        for principal in principals:
            if verify(principal, False).returncode == 0:
                raise Refused(f"signed by {principal} with a revoked key (sidecar_stack_revoked_keys)")
    stale = re.search(r"[^\n]*(?:expired|not yet valid)[^\n]*", "\n".join(errors))
    if stale:
        raise Refused(f"signed by a key that is not valid now: {stale.group(0).strip()}")
    if found.returncode != 0:
        raise Refused("signed by a key that is not in the allowed signers (or the signature is damaged)")
    raise Refused(
        f"the signature does not verify: manifest.json was changed after signing, or it was signed for "
        f"another namespace than {ns}"
    )


# -- the manifest and the files -----------------------------------------------------------------
def expected_files(m: dict[str, Any]) -> dict[str, str]:
    """The files the signed manifest names, with their sha256; Refused when it is not well formed."""
    problems = []
    for key in ("model", "version"):
        if not (isinstance(m.get(key), str) and NAME.fullmatch(m[key])):
            problems.append(f"{key} must be a name (letters, digits, . _ + -)")
    if m.get("hef", "model.hef") != "model.hef":
        problems.append(f"hef must be model.hef (got {m.get('hef')!r})")
    files: dict[str, str] = {}
    for name, key in (("model.hef", "hef_sha256"), ("model.onnx", "onnx_sha256")):
        if not (isinstance(m.get(key), str) and SHA256.fullmatch(m[key])):
            problems.append(f"{key} must be 64 lower-case hex digits (got {m.get(key)!r})")
        files[name] = str(m.get(key))
    if "golden" in m:
        gold = m["golden"]
        if not isinstance(gold, dict):
            problems.append("golden must be an object (file, sha256)")
        else:
            if gold.get("file", "golden.json") != "golden.json":
                problems.append(f"golden.file must be golden.json (got {gold.get('file')!r})")
            if not (isinstance(gold.get("sha256"), str) and SHA256.fullmatch(gold["sha256"])):
                problems.append(
                    f"golden.sha256 must be 64 lower-case hex digits (got {gold.get('sha256')!r})"
                )
            files["golden.json"] = str(gold.get("sha256"))
    if problems:
        raise Refused("the signed manifest is not well formed: " + "; ".join(problems))
    return files


def check_files(m: dict[str, Any], files_dir: Path) -> list[str]:
    """Every file of FILES_DIR against the signed manifest; the lines to print."""
    want = expected_files(m)
    dirfd = os.open(files_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        extra = sorted(
            set(os.listdir(dirfd)) - set(want) - {"manifest.json", "manifest.json.sig", "model.hef.sha256"}
        )
        if extra:
            raise Refused(
                f"{', '.join(extra)}: not named by the signed manifest (a release holds only its own files)"
            )
        lines = []
        for name, sha in want.items():
            if name == "model.onnx" and is_absent(dirfd, name):
                continue
            try:
                got = sha256_of(dirfd, name)
            except FileNotFoundError:
                raise Refused(f"{name} is missing (the signed manifest names it)") from None
            if got != sha:
                raise Refused(
                    f"{name} has sha256 {got}, the signed manifest says {sha}: changed after signing"
                )
            lines.append(f"file: {name} sha256 {got} (as signed)")
        if not is_absent(dirfd, "model.hef.sha256") and (
            read_small(dirfd, "model.hef.sha256").decode(errors="replace")
            != f"{want['model.hef']}  model.hef\n"
        ):
            raise Refused("model.hef.sha256 does not say what the signed manifest says of model.hef")
        return lines
    finally:
        os.close(dirfd)


def version_key(version: str) -> tuple[int, ...] | None:
    """1.10.0 after 1.9.0: one to four dotted numbers (hef_compile's versions, as the pull agent's
    tags), padded to four; None for any other shape, which has no order (is 1.2.0-rc1 before
    1.2.0, or after it as text sorts it?)."""
    if not VERSION.fullmatch(version):
        return None
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def check_not_older(m: dict[str, Any], serving: Path, allow_older: bool) -> str | None:
    try:
        record = json.loads(serving.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the release this host serves ({serving}): {exc}") from None
    current = ((record.get("current") or {}).get("model") or {}) if isinstance(record, dict) else {}
    name, version = current.get("name"), current.get("version")
    if name != m["model"] or not isinstance(version, str):
        return None
    new, served = version_key(m["version"]), version_key(version)
    if new is not None and served is not None and new >= served:
        return None
    if new is None or served is None:
        if allow_older:
            return (
                f"unordered: {m['model']} {m['version']} replaces {version} (sidecar_stack_allow_downgrade)"
            )
        raise Refused(
            f"{m['model']} {m['version']} cannot be ordered against {version}, which this host serves: "
            "versions are compared as dotted numbers (1.4.0), and a release candidate or any other shape "
            "could be an older release. To replace it on purpose, run once with "
            "-e sidecar_stack_allow_downgrade=true"
        )
    if allow_older:
        return f"older: {m['model']} {m['version']} replaces {version} (sidecar_stack_allow_downgrade)"
    raise Refused(
        f"{m['model']} {m['version']} is older than {version}, which this host serves: an older signed "
        "release is not deployed over a newer one. To go back on purpose, run once with "
        "-e sidecar_stack_allow_downgrade=true"
    )


def verify(a: argparse.Namespace, release: Path, files_dir: Path) -> list[str]:
    lines = []
    dirfd = os.open(release, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            manifest = read_small(dirfd, "manifest.json")
        except FileNotFoundError:
            raise Refused("no manifest.json") from None
        if is_absent(dirfd, "manifest.json.sig"):
            if a.require != "false":
                raise Refused("unsigned: no manifest.json.sig (sidecar_stack_require_signature is true)")
            lines.append(
                "signature: none (unsigned release accepted: sidecar_stack_require_signature is false)"
            )
        else:
            os.close(open_regular(dirfd, "manifest.json.sig"))
            sig = release / "manifest.json.sig"
            good = verify_signature(
                manifest, sig, a.namespace, Path(a.allowed), Path(a.revoked) if a.revoked else None
            )
            lines.append(f"signature: {good}")
    finally:
        os.close(dirfd)
    try:
        m = json.loads(manifest)
    except ValueError as exc:
        raise Refused(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(m, dict):
        raise Refused("manifest.json is not a JSON object")
    lines += check_files(m, files_dir)
    if a.serving:
        older = check_not_older(m, Path(a.serving), a.allow_older)
        if older:
            lines.append(older)
    return lines


def in_place(a: argparse.Namespace) -> list[str]:
    folder = Path(a.folder)
    with tempfile.TemporaryDirectory(prefix="verify-release.") as stage:
        release = Path(stage) / "release"
        release.mkdir()
        try:
            (release / "manifest.json").write_bytes(
                base64.b64decode(os.environ["RELEASE_MANIFEST_B64"], validate=True)
            )
            if os.environ.get("RELEASE_SIGNATURE_B64"):
                sig = base64.b64decode(os.environ["RELEASE_SIGNATURE_B64"], validate=True)
                (release / "manifest.json.sig").write_bytes(sig)
        except (KeyError, binascii.Error) as exc:
            raise Refused(
                f"the incoming manifest or signature is not base64 in the environment: {exc}"
            ) from None
        (Path(stage) / "allowed_signers").write_text(os.environ.get("RELEASE_ALLOWED_SIGNERS", "") + "\n")
        (Path(stage) / "revoked_keys").write_text(os.environ.get("RELEASE_REVOKED_KEYS", "") + "\n")
        a.allowed, a.revoked = str(Path(stage) / "allowed_signers"), str(Path(stage) / "revoked_keys")
        lines = verify(a, release, folder)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            own = read_small(fd, "manifest.json")
        finally:
            os.close(fd)
        if own != (release / "manifest.json").read_bytes():
            raise Refused(
                f"{folder} is in place with another manifest.json than this release's: a release folder "
                "never changes. Give the new release a version of its own."
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in-place", action="store_true")
    ap.add_argument("--serving", default="", help="the host's release.json: an older release is refused")
    ap.add_argument("--allow-older", action="store_true", help="the operator's rollback, for this run")
    ap.add_argument("folder")
    ap.add_argument("namespace")
    ap.add_argument("require", choices=["true", "false"])
    ap.add_argument("allowed", nargs="?", default="")
    ap.add_argument("revoked", nargs="?", default="")
    ap.add_argument("files", nargs="?", default="")
    a = ap.parse_args(argv)
    name = os.path.basename(os.path.normpath(a.folder))
    try:
        lines = in_place(a) if a.in_place else verify(a, Path(a.folder), Path(a.files or a.folder))
    except Refused as exc:
        print(f"release {name}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, never a traceback
        print(f"release {name}: the check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

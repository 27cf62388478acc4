"""collect-release (hef_compile role): brings a release out of the compiler container's folder into a
root-owned one, where it is checked and only then signed and fetched.

  collect-release.py OUT MODEL VERSION DEST

OUT is the folder the container writes (owned by its user: whatever runs in it, the DFC wheel
included, may have put anything there). OUT/MODEL/VERSION is walked without following links, and
only regular files with one link, named as hailo-compile names them (manifest.json, model.hef,
model.onnx, golden.json, model.hef.sha256) and no larger than the limit, are copied; anything else
refuses the release, but for a manifest.json.sig, which is never read (the role's earlier versions
signed in that folder; the copy is signed on its own). The copy is checked: the manifest names this
model and version, hef is model.hef, every sha256 is present, 64 lower-case hex and the file's,
golden data is there when the manifest has it (and only then), model.hef.sha256 says what the
manifest says. Only then does the copy replace DEST/MODEL/VERSION (root's, 0755; files 0644), and
only when it differs (its signature then goes with it). Prints "collected" or "unchanged"; exits 1
with one line naming the problem, leaving DEST as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

NAMES = ("manifest.json", "model.hef", "model.onnx", "golden.json", "model.hef.sha256")
# Left in the compiler's folder by the role's earlier versions, which signed there: never read.
SKIPPED = ("manifest.json.sig",)
PART = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
# A release's version: dotted numbers (the Pis order releases by it; preflight.yml checks the same).
VERSION = re.compile(r"(?:0|[1-9][0-9]{0,8})(?:\.(?:0|[1-9][0-9]{0,8})){0,3}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BYTES = 4 << 30  # a file larger than this is not a release's
MANIFEST_MAX = 1 << 20


class Refused(Exception):
    """Why the release is not collected; one line."""


def open_dir(name: str, dirfd: int | None = None) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
    except OSError as exc:
        what = "a symbolic link" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise Refused(f"{name}: {what}, not the compiler's folder") from None


def copy_out(dirfd: int, name: str, dest: Path) -> None:
    """Copies NAME (a regular file with one link, opened without following a link) to DEST."""
    if name not in NAMES:
        raise Refused(f"{name}: not a file hailo-compile writes ({', '.join(NAMES)})")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except OSError as exc:
        what = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise Refused(f"{name} is {what}: a release holds regular files only") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Refused(f"{name} is not a regular file: a release holds regular files only")
    with os.fdopen(fd, "rb") as src:
        if st.st_nlink != 1:
            raise Refused(f"{name} has {st.st_nlink} links: a hard link to another file is not a release's")
        if st.st_size > MAX_BYTES:
            raise Refused(f"{name} is {st.st_size} bytes, more than {MAX_BYTES}")
        with dest.open("xb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
                if out.tell() > MAX_BYTES:  # it grows while it is copied
                    raise Refused(f"{name} grew past {MAX_BYTES} bytes while copied")
    dest.chmod(0o644)


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        h = hashlib.sha256()  # no hashlib.file_digest: GPUSrv may be Ubuntu 22.04 (Python 3.10)
        while chunk := f.read(1 << 20):
            h.update(chunk)
        return h.hexdigest()


def check(copy: Path, model: str, version: str) -> None:
    """The collected files against the release's schema; Refused names every problem."""
    if not (copy / "manifest.json").exists():
        raise Refused("no manifest.json")
    if (copy / "manifest.json").stat().st_size > MANIFEST_MAX:
        raise Refused(f"manifest.json is larger than {MANIFEST_MAX} bytes")
    try:
        m: Any = json.loads((copy / "manifest.json").read_bytes())
    except ValueError as exc:
        raise Refused(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(m, dict):
        raise Refused("manifest.json is not a JSON object")
    problems = []
    if (m.get("model"), m.get("version")) != (model, version):
        problems.append(f"it is model {m.get('model')!r} version {m.get('version')!r}, not {model} {version}")
    if m.get("hef", "model.hef") != "model.hef":
        problems.append(f"hef must be model.hef (got {m.get('hef')!r})")
    want = {"model.hef": m.get("hef_sha256"), "model.onnx": m.get("onnx_sha256")}
    gold = m.get("golden")
    if "golden" in m:
        if not isinstance(gold, dict) or gold.get("file", "golden.json") != "golden.json":
            problems.append("golden must be an object naming golden.json")
        else:
            want["golden.json"] = gold.get("sha256")
    elif (copy / "golden.json").exists():
        problems.append("golden.json is there but the manifest names no golden windows")
    for name, sha in want.items():
        key = {"model.hef": "hef_sha256", "model.onnx": "onnx_sha256"}.get(name, "golden.sha256")
        if not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            problems.append(f"{key} must be 64 lower-case hex digits (got {sha!r})")
        elif not (copy / name).exists():
            # Releases made before the ONNX travelled with the HEF have none.
            if name != "model.onnx":
                problems.append(f"{name} is missing")
        elif sha256(copy / name) != sha:
            problems.append(f"{name} does not have the manifest's sha256")
    side = copy / "model.hef.sha256"
    if side.exists() and side.read_text(errors="replace") != f"{m.get('hef_sha256')}  model.hef\n":
        problems.append("model.hef.sha256 does not say what the manifest says")
    if problems:
        raise Refused("the release does not hold together: " + "; ".join(problems))


def same(a: Path, b: Path) -> bool:
    """The same files, byte for byte (a signature beside them aside)."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir() if p.name != "manifest.json.sig"):
        return False
    return all(sha256(a / n) == sha256(b / n) for n in names)


def collect(out: Path, model: str, version: str, dest: Path) -> str:
    if not (PART.fullmatch(model) and VERSION.fullmatch(version)):
        raise Refused(f"{model} {version}: not a model name and a version of dotted numbers (1.4.0)")
    target = dest / model / version
    created = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    copy = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
    try:
        fds = [open_dir(str(out))]
        for part in (model, version):
            fds.append(open_dir(part, fds[-1]))
        try:
            for name in sorted(set(os.listdir(fds[-1])) - set(SKIPPED)):
                copy_out(fds[-1], name, copy / name)
        finally:
            for fd in fds:
                os.close(fd)
        check(copy, model, version)
        if target.is_dir() and not target.is_symlink() and same(copy, target):
            return "unchanged"
        copy.chmod(0o755)
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{version}.old.", dir=target.parent))
            os.rename(target, old / "release")
        os.rename(copy, target)
        if old is not None:
            shutil.rmtree(old)
        return "collected"
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        if created:  # a refused first release leaves no empty model folder behind
            with contextlib.suppress(OSError):
                target.parent.rmdir()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    out, model, version, dest = args
    try:
        print(f"collect-release: {model} {version} {collect(Path(out), model, version, Path(dest))}")
    except Refused as exc:
        print(
            f"collect-release: {out}/{model}/{version}: {exc}. Nothing was signed or fetched.",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # one line, never a traceback
        print(f"collect-release: {out}/{model}/{version}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The HailoRT mirror on GPUSrv: the pinned HailoRT .deb sets, kept and served as a signed apt
repository (the hailort_mirror role runs this; Python 3.10+, stdlib, gpg and gpgv).

  hailort_mirror.py key  --state DIR --root DIR --name NAME [--check]
      makes the mirror's signing key once (DIR/gnupg, private key never leaves the host) and
      writes its public half to ROOT/hailort-mirror.asc.
  hailort_mirror.py sync --state DIR --root DIR --upstream URI --keyring FILE.asc
                         --suite S [--suite S ...] --arch A [--arch A ...]
                         --set name=version,name=version [--set ...] [--check]
                         (or --sets-json '[{"name": "version", ...}, ...]' for the sets)
      fetches every package of every set that is not kept yet, for each suite and architecture,
      from the upstream archive the way apt does (InRelease verified with the upstream key, the
      Packages index checked against it, each .deb against the index), keeps it in ROOT/pool
      and writes ROOT/dists/SUITE (Packages indexes of the configured sets, Release signed as
      InRelease and Release.gpg). What was kept once is never fetched again: when the archive
      drops a version, the mirror still serves it.

Each prints one JSON object ({"changed": bool, ...}); --check changes nothing and says what it
would do. A set the archive does not have exits 2 with the versions it does have.
"""

from __future__ import annotations

import argparse
import base64
import bz2
import gzip
import hashlib
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from email.utils import formatdate
from pathlib import Path

KEPT = "kept.json"
PUBLIC_KEY = "hailort-mirror.asc"
# The index files apt reads, best first (Python decompresses each).
INDEXES = (("Packages.xz", lzma.decompress), ("Packages.gz", gzip.decompress),
           ("Packages.bz2", bz2.decompress), ("Packages", bytes))  # fmt: skip


class MirrorError(Exception):
    pass


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 - http(s) or file
        return bytes(resp.read())


def dearmor(text: str) -> bytes:
    """An ASCII-armored OpenPGP key as the binary keyring gpgv reads."""
    lines = text.strip().splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"))
        end = next(i for i, ln in enumerate(lines) if ln.startswith("-----END PGP PUBLIC KEY BLOCK"))
    except StopIteration:
        raise MirrorError("the upstream key is not an ASCII-armored OpenPGP public key") from None
    body = lines[start + 1 : end]
    while body and ":" in body[0]:  # armor headers
        body.pop(0)
    body = [ln for ln in body if ln.strip() and not ln.startswith("=")]  # blank line, CRC24
    return base64.b64decode("".join(body))


def verified(inrelease: bytes, keyring_asc: Path) -> str:
    """The Release text inside INRELEASE when the keyring's key signed it (gpgv), else an error."""
    with tempfile.TemporaryDirectory() as tmp:
        ring, signed, out = Path(tmp, "ring.gpg"), Path(tmp, "InRelease"), Path(tmp, "Release")
        ring.write_bytes(dearmor(keyring_asc.read_text()))
        signed.write_bytes(inrelease)
        proc = subprocess.run(["gpgv", "--keyring", str(ring), "--output", str(out), str(signed)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise MirrorError(f"InRelease is not signed by the given key: {proc.stderr.strip()}")
        return out.read_text()


def fields(stanza: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t") and key:
            out[key] += "\n" + line
        elif ":" in line:
            key, _sep, value = line.partition(":")
            out[key] = value.strip()
    return out


def release_sums(release: str) -> dict[str, tuple[str, int]]:
    sums = {}
    for line in fields(release).get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            sums[parts[2]] = (parts[0], int(parts[1]))
    return sums


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upstream_index(uri: str, suite: str, arch: str, keyring: Path) -> list[dict[str, str]]:
    base = f"{uri.rstrip('/')}/dists/{suite}"
    sums = release_sums(verified(fetch(f"{base}/InRelease"), keyring))
    for name, decompress in INDEXES:
        path = f"main/binary-{arch}/{name}"
        if path in sums:
            data = fetch(f"{base}/{path}")
            if (sha256(data), len(data)) != sums[path]:
                raise MirrorError(f"{base}/{path} does not match its InRelease checksum")
            text = decompress(data).decode()
            return [{**fields(s), "_stanza": s.strip()} for s in text.split("\n\n") if s.strip()]
    raise MirrorError(f"{base}/InRelease lists no Packages index for main/binary-{arch}")


def parse_sets(a: argparse.Namespace) -> list[dict[str, str]]:
    sets = []
    if a.sets_json:
        loaded = json.loads(a.sets_json)
        if not isinstance(loaded, list) or not all(isinstance(s, dict) and s for s in loaded):
            raise MirrorError("--sets-json: expected a list of non-empty {name: version} objects")
        sets += [{str(k): str(v) for k, v in s.items()} for s in loaded]
    for value in a.set or []:
        pairs = [p.split("=", 1) for p in value.split(",") if p]
        if not pairs or any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
            raise MirrorError(f"--set {value!r}: expected name=version[,name=version...]")
        sets.append(dict(pairs))
    if not sets:
        raise MirrorError("no set given (--set or --sets-json)")
    return sets


def load_kept(state: Path) -> dict[str, dict[str, str]]:
    path = state / KEPT
    return json.loads(path.read_text()) if path.is_file() else {}


def wanted(
    suites: list[str], arches: list[str], sets: list[dict[str, str]]
) -> list[tuple[str, str, str, str]]:
    return sorted({(s, a, n, v) for s in suites for a in arches for pkg in sets for n, v in pkg.items()})


def is_kept(root: Path, entry: dict[str, str] | None) -> bool:
    if not entry:
        return False
    f = root / entry["file"]
    return f.is_file() and f.stat().st_size == int(entry["size"])


def rewrite_filename(stanza: str, filename: str) -> str:
    lines = [f"Filename: {filename}" if ln.startswith("Filename:") else ln for ln in stanza.splitlines()]
    return "\n".join(lines)


def cmd_sync(a: argparse.Namespace) -> dict:
    root, state = Path(a.root), Path(a.state)
    sets = parse_sets(a)
    kept = load_kept(state)
    todo = [w for w in wanted(a.suite, a.arch, sets) if not is_kept(root, kept.get("/".join(w)))]
    result: dict = {"changed": False, "fetched": [], "kept": len(kept)}
    if a.check:
        result["would_fetch"] = ["/".join(w) for w in todo]
        result["changed"] = bool(todo) or index_due(root, state, a, kept)
        return result
    indexes: dict[tuple[str, str], list[dict[str, str]]] = {}
    for suite, arch, name, version in todo:
        if (suite, arch) not in indexes:
            indexes[(suite, arch)] = upstream_index(a.upstream, suite, arch, Path(a.keyring))
        found = [p for p in indexes[(suite, arch)] if p.get("Package") == name]
        match = [p for p in found if p.get("Version") == version and p.get("Architecture") in (arch, "all")]
        if not match:
            have = ", ".join(sorted({p.get("Version", "?") for p in found})) or "none"
            raise MirrorError(
                f"{name}={version} is not in {a.upstream} {suite}/{arch} (the archive has: {have}). "
                f"Pin a set the archive has, or copy its .debs into {root}/pool/{suite} and list them "
                f"in {state / KEPT}."
            )
        pkg = match[0]
        rel = f"pool/{suite}/{Path(pkg['Filename']).name}"
        target = root / rel
        if not (target.is_file() and sha256(target.read_bytes()) == pkg["SHA256"]):
            data = fetch(f"{a.upstream.rstrip('/')}/{pkg['Filename']}")
            if sha256(data) != pkg["SHA256"]:
                raise MirrorError(f"{pkg['Filename']} does not match the archive's index (SHA256)")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(target)
        kept["/".join((suite, arch, name, version))] = {
            "file": rel, "sha256": pkg["SHA256"], "size": pkg["Size"],
            "stanza": rewrite_filename(pkg["_stanza"], rel),
        }  # fmt: skip
        result["fetched"].append(f"{suite}/{arch}/{name}={version}")
    if todo:
        state.mkdir(parents=True, exist_ok=True)
        (state / KEPT).write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    changed_index = write_indexes(root, state, a, kept)
    result["kept"] = len(kept)
    result["changed"] = bool(todo) or changed_index
    return result


def index_files(a: argparse.Namespace, kept: dict[str, dict[str, str]]) -> dict[str, bytes]:
    sets = parse_sets(a)
    files = {}
    for suite in a.suite:
        for arch in a.arch:
            keys = ["/".join(w) for w in wanted([suite], [arch], sets)]
            text = "\n\n".join(kept[k]["stanza"] for k in keys if k in kept) + "\n"
            files[f"dists/{suite}/main/binary-{arch}/Packages"] = text.encode()
            files[f"dists/{suite}/main/binary-{arch}/Packages.gz"] = gzip.compress(text.encode(), mtime=0)
    return files


def signature_ok(root: Path, suite: str) -> bool:
    inrelease, key = root / f"dists/{suite}/InRelease", root / PUBLIC_KEY
    if not (inrelease.is_file() and key.is_file()):
        return False
    try:
        verified(inrelease.read_bytes(), key)
    except MirrorError:
        return False
    return True


def index_due(root: Path, state: Path, a: argparse.Namespace, kept: dict[str, dict[str, str]]) -> bool:
    for rel, data in index_files(a, kept).items():
        f = root / rel
        if not f.is_file() or f.read_bytes() != data:
            return True
    return not all(signature_ok(root, s) for s in a.suite)


def write_indexes(root: Path, state: Path, a: argparse.Namespace, kept: dict[str, dict[str, str]]) -> bool:
    if not index_due(root, state, a, kept):
        return False
    files = index_files(a, kept)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for suite in a.suite:
        dist = root / "dists" / suite
        sums = []
        for rel, data in sorted(files.items()):
            prefix = f"dists/{suite}/"
            if rel.startswith(prefix):
                sums.append(f" {sha256(data)} {len(data)} {rel[len(prefix) :]}")
        (dist / "Release").write_text(
            "Origin: hailo-pipeline\nLabel: HailoRT mirror (pinned sets)\n"
            f"Suite: {suite}\nCodename: {suite}\nDate: {formatdate(time.time(), usegmt=True)}\n"
            f"Architectures: {' '.join(a.arch)}\nComponents: main\nAcquire-By-Hash: no\nSHA256:\n"
            + "\n".join(sums) + "\n"
        )  # fmt: skip
        for args in (["--clearsign", "--output", str(dist / "InRelease")],
                     ["--armor", "--detach-sign", "--output", str(dist / "Release.gpg")]):  # fmt: skip
            gpg(state, "--yes", *args, str(dist / "Release"))
    return True


def gpg(state: Path, *args: str) -> str:
    home = state / "gnupg"
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise MirrorError(f"gpg {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def cmd_key(a: argparse.Namespace) -> dict:
    root, state = Path(a.root), Path(a.state)
    home = state / "gnupg"
    has_key = home.is_dir() and bool(gpg(state, "--list-secret-keys", "--with-colons").strip())
    public = root / PUBLIC_KEY
    if a.check:
        return {"changed": not has_key or not public.is_file()}
    changed = False
    if not has_key:
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        gpg(state, "--passphrase", "", "--quick-gen-key", a.name, "ed25519", "sign", "never")
        changed = True
    exported = gpg(state, "--armor", "--export")
    if not public.is_file() or public.read_text() != exported:
        root.mkdir(parents=True, exist_ok=True)
        public.write_text(exported)
        changed = True
    fingerprint = [ln.split(":")[9] for ln in gpg(state, "--list-keys", "--with-colons").splitlines()
                   if ln.startswith("fpr:")][:1]  # fmt: skip
    return {"changed": changed, "fingerprint": fingerprint[0] if fingerprint else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("key", "sync"):
        p = sub.add_parser(name)
        p.add_argument("--state", required=True)
        p.add_argument("--root", required=True)
        p.add_argument("--check", action="store_true")
    sub.choices["key"].add_argument("--name", default="hailo-pipeline HailoRT mirror")
    s = sub.choices["sync"]
    s.add_argument("--upstream", required=True)
    s.add_argument("--keyring", required=True, help="the upstream archive's ASCII-armored key")
    s.add_argument("--suite", action="append", required=True)
    s.add_argument("--arch", action="append", required=True)
    s.add_argument("--set", action="append", help="name=version[,name=version...], one per set")
    s.add_argument("--sets-json", help="the sets as a JSON list of {name: version} objects")
    a = ap.parse_args(argv)
    try:
        result = cmd_key(a) if a.cmd == "key" else cmd_sync(a)
    except (MirrorError, OSError) as err:
        print(f"hailort_mirror: {err}", file=sys.stderr)
        return 2
    finally:
        # gpg starts an agent for the key's home that outlives this run: stop it (a timer's
        # sync would otherwise leave one behind on GPUSrv, a test run one per state folder).
        home = Path(a.state) / "gnupg"
        if home.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True, check=False)  # fmt: skip
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

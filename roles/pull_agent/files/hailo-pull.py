"""The pull agent (pull_agent role): a Pi behind NAT applies the fleet's signed releases itself.

Run by hailo-pull.timer (randomised delay); one run:
  1. fetches the fleet repository (the collection and the site's inventory) from the remote;
  2. verifies every tag matching the pattern that is newer than the one applied, then chooses: a
     tag counts only when its name is PREFIX and a version (fleet-1.4.0), its signed tag object
     names that same tag and points to a commit, it is SSH-signed (never OpenPGP or X.509) by a
     key in the allowed signers that is valid now and not revoked, and it is newer than the tag
     applied before, both by version and by its signed tagger date. The newest such tag is the
     target; every other tag that fails is listed with its reason ("refused" when none counts).
     Signatures are checked newest version first, at most --max-checks a run (the rest counted in
     unchecked_tags), and an object refused under the same keys is not checked again
     (STATE_DIR/refused.json). Nothing is applied while this host's clock is earlier than what it
     has seen happen (the applied tag, its state's last change, a tag that verified);
  3. waits for its wave: wave N applies the target DELAYS[N] minutes after it was signed
     ("waiting"), and a wave after the first applies it only once one of the canaries (the hosts
     named by --canaries) reported it deployed and none reported it failed ("held"); a report
     counts only when it is the canary's own (the reports server lets each host write only its own
     file) and names this tag and commit;
  4. checks the target's commit out and runs the playbook against this host (ansible-playbook,
     connection local) with the repository's own collections, its stats read from the run_stats
     callback installed beside this agent (hailo-pull-callbacks/; "applying" while it runs);
  5. records the outcome (time, tag, commit, result, changed count, reason, and the target with its
     state) in the rollout file the node exporter's hailo collector reads, and sends it to the
     fleet's reports (HTTP PUT REPORTS/TAG/HOST.json), where later waves and people read it.
The repository's and the reports' URLs and credentials come from a file only root reads
(--credentials, JSON: repo_url, reports_url, reports_user, reports_password); they never reach a
command line (git gets the credential as an HTTP header through its environment).
Every run ends with an outcome in the rollout file and exit code 0 (the timer runs again); only
malformed arguments exit 2. One run at a time (flock on STATE_DIR/lock): a run that finds it taken
prints "busy" and leaves the rollout file to the run in progress. The agent owns its clone: git's
lock files a run cut short left there are removed, a clone git no longer reads is cloned again.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Tag names: the pattern's prefix and a version of one to four numbers without leading zeros.
VERSION = re.compile(r"(?:0|[1-9][0-9]{0,8})(?:\.(?:0|[1-9][0-9]{0,8})){0,3}", re.ASCII)
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/]", re.ASCII)
# The lines that start a signature in a tag object, as git finds them (gpg-interface.c).
SIGNATURE_STARTS = {
    b"-----BEGIN PGP SIGNATURE-----": "an OpenPGP signature",
    b"-----BEGIN PGP MESSAGE-----": "an OpenPGP signature",
    b"-----BEGIN SIGNED MESSAGE-----": "an X.509 signature",
    b"-----BEGIN SSH SIGNATURE-----": "ssh",
}
TAGGER = re.compile(rb"^.* <[^<>]*> ([0-9]{1,12}) [+-][0-9]{4}$")
REPORT_MAX_BYTES = 65536
# A tag object larger than this is refused unread (a release tag's object is a few hundred bytes).
TAG_MAX_BYTES = 65536
# The run_stats callback the pull_agent role installs beside the agent (files/hailo-pull-callbacks/):
# the playbook's per-host counts as JSON, written by the agent's own version of it.
CALLBACKS = Path(__file__).resolve().parent / "hailo-pull-callbacks"
# The refused tags an outcome lists (the highest versions; the rest are counted).
REFUSED_LISTED = 20
# How far a signed date may be ahead of this host's clock (the signer's clock and this one differ).
CLOCK_SKEW = 600
# The fields of an outcome the agent writes from checked values (times, counts, names matched by a
# pattern, object ids): never redacted.
STRUCTURED = {"host", "wave", "at", "tag", "commit", "changed", "result"}


class Refused(Exception):
    """A tag, or the whole run's input, that must not be applied; the message says why. LASTING:
    the same tag object gets the same answer while the keys stay the same (not a matter of time)."""

    def __init__(self, message: str, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class Busy(Exception):
    """Another run of the agent holds its lock."""


class ConfigError(Exception):
    """The agent's own configuration or state is unusable; the message names it."""


def now() -> str:
    return iso(time.time())


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Credentials:
    repo_url: str  # without user information
    repo_auth: str | None  # an Authorization header value
    reports_url: str
    reports_auth: str | None
    secrets: tuple[str, ...]  # what never goes into an outcome


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def split_url(name: str, url: object, schemes: tuple[str, ...]) -> tuple[str, str | None, str | None]:
    """URL without its user information, the Basic credential it carried, and the password."""
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or " " in url:
        raise ConfigError(f"{name} must be an ASCII URL without spaces")
    if "ssh" in schemes and SCP_LIKE.match(url):
        return url, None, None
    if "?" in url or "#" in url:
        raise ConfigError(
            f"{name} must have no query or fragment (a token there would reach logs and git's config): "
            "credentials go in user:password@ or in reports_user and reports_password"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in schemes or not (parts.hostname or parts.scheme == "file"):
            raise ValueError
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name} must be a URL: {', '.join(s + '://' for s in schemes)}") from None
    if parts.scheme == "ssh" and parts.password is not None:
        raise ConfigError(
            f"{name}: an ssh:// URL takes no password (git would keep it in its config): use a key"
        )
    if parts.username is None or parts.scheme not in ("http", "https"):
        return url, None, None
    clean = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    return clean, _basic(user, password), password or None


def load_credentials(path: Path) -> Credentials:
    try:
        st = path.stat()
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the credentials file {path}: {exc}") from None
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the credentials file {path} is readable by others (mode {st.st_mode & 0o777:o}): chmod 600"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"the credentials file {path} is not a JSON object")
    repo_url, repo_auth, repo_password = split_url(
        "repo_url", data.get("repo_url"), ("http", "https", "ssh", "file")
    )
    reports_url, reports_auth, reports_password = split_url(
        "reports_url", data.get("reports_url"), ("http", "https")
    )
    user, password = data.get("reports_user"), data.get("reports_password")
    if user or password:
        if not (isinstance(user, str) and HOST.fullmatch(user) and isinstance(password, str) and password):
            raise ConfigError("reports_user must be a host name and reports_password a non-empty string")
        reports_auth, reports_password = _basic(user, password), password
    secrets = tuple(s for s in (repo_password, reports_password, repo_auth, reports_auth) if s)
    return Credentials(repo_url, repo_auth, reports_url.rstrip("/"), reports_auth, secrets)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


def redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """VALUE with every secret in its strings replaced, its structure as it is."""
    if isinstance(value, dict):
        return {k: redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, secrets) for v in value]
    return redact(value, secrets) if isinstance(value, str) else value


def redacted_outcome(outcome: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    """The outcome with every secret in its free text (reasons, output, refused tags, errors)
    replaced; what the agent writes from checked values (STRUCTURED, the target) stays as it is,
    so a short secret cannot rewrite a time or a count."""
    return {k: v if k in STRUCTURED or k == "target" else redacted(v, secrets) for k, v in outcome.items()}


# -- git ------------------------------------------------------------------------------------------
def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, without git configuration it did not set itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    return {**env, "GIT_TERMINAL_PROMPT": "0", **(extra or {})}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env or clean_env(), check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def clear_stale_locks(repo: Path) -> None:
    """Removes git's lock files from the agent's clone: a run that ended mid-way (power lost during
    a checkout) leaves .git/index.lock or a ref's lock, and every git command after it fails. The
    agent owns the clone and holds its own lock (take_lock): any lock file there is stale."""
    git_dir = repo / ".git"
    for path in [*git_dir.glob("*.lock"), *git_dir.glob("refs/**/*.lock"), *git_dir.glob("logs/**/*.lock")]:
        if path.is_file() and not path.is_symlink():
            path.unlink()


def fetch(creds: Credentials, repo: Path) -> None:
    # The credential reaches git as an HTTP header in its environment, never in an argument or a
    # file (.git/config holds the URL without it).
    extra = {"GIT_CONFIG_COUNT": "0"}
    if creds.repo_auth:
        extra = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                 "GIT_CONFIG_VALUE_0": f"Authorization: {creds.repo_auth}"}  # fmt: skip
    env = clean_env(extra)
    if (repo / ".git").exists():
        clear_stale_locks(repo)
        if subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True,
                          env=clean_env(), check=False).returncode != 0:  # fmt: skip
            shutil.rmtree(repo)  # a clone git no longer reads (a power cut): cloned again
    if not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(repo, ignore_errors=True)
        proc = subprocess.run(["git", "clone", "--quiet", "--no-checkout", "--", creds.repo_url, str(repo)],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"git clone: {proc.stderr.strip()[-500:]}")
    elif git(repo, "remote", "get-url", "origin").strip() != creds.repo_url:
        git(repo, "remote", "set-url", "origin", creds.repo_url)
    git(repo, "fetch", "--quiet", "--tags", "--force", "--prune", "--prune-tags", "origin", env=env)


def list_tags(repo: Path) -> list[tuple[str, str, str, int]]:
    """(name, object type, object id, object size) of every tag."""
    out = git(
        repo, "for-each-ref", "--format=%(objecttype) %(objectname) %(objectsize) %(refname)", "refs/tags/"
    )
    tags = []
    for line in out.splitlines():
        kind, oid, size, ref = line.split(" ", 3)
        tags.append((ref.removeprefix("refs/tags/"), kind, oid, int(size)))
    return tags


def read_objects(repo: Path, oids: list[str]) -> dict[str, bytes]:
    """The raw objects OIDS, read by one git cat-file --batch (not one git a tag)."""
    if not oids:
        return {}
    batch = ("\n".join(oids) + "\n").encode()
    proc = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"], input=batch, capture_output=True,
                          check=True, env=clean_env())  # fmt: skip
    out, objects, i = proc.stdout, {}, 0
    while i < len(out):
        end = out.index(b"\n", i)
        head = out[i:end].split(b" ")
        if len(head) != 3:  # "<oid> missing"
            i = end + 1
            continue
        size = int(head[2])
        objects[head[0].decode()] = out[end + 1 : end + 1 + size]
        i = end + 1 + size + 1
    return objects


# -- signatures -----------------------------------------------------------------------------------
@dataclass
class Keys:
    allowed: Path
    revoked: Path | None  # None: no revocation list

    def digest(self) -> str:
        """What the keys are: a tag refused under other keys is checked again."""
        h = hashlib.sha256(self.allowed.read_bytes())
        if self.revoked:
            h.update(b"\0" + self.revoked.read_bytes())
        return h.hexdigest()

    def principals(self) -> list[str]:
        """Every principal named literally in the allowed signers (find-principals prints only one)."""
        names: list[str] = []
        for line in self.allowed.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            field = line.split('"')[1] if line.startswith('"') else line.split()[0]
            names += [p for p in field.split(",") if p and not set(p) & set("*?!")]
        return names


def checked_keys(allowed: Path, revoked: Path | None) -> Keys:
    """The allowed signers and the revocation list, the list checked to be one ssh-keygen reads:
    an unreadable list refuses every tag (it is never taken for "nothing revoked")."""
    try:
        if not allowed.read_text().strip():
            raise ConfigError(f"the allowed signers {allowed} are empty")
    except OSError as exc:
        raise ConfigError(f"cannot read the allowed signers {allowed}: {exc}") from None
    if revoked is None:
        return Keys(allowed, None)
    try:
        data = revoked.read_bytes()
    except FileNotFoundError:
        return Keys(allowed, None)
    except OSError as exc:
        raise Refused(f"the revoked keys list {revoked} is unreadable ({exc}): no tag is applied") from None
    if not data.strip():
        return Keys(allowed, None)
    if data.startswith(b"SSHKRL\n\0"):
        proc = subprocess.run(
            ["ssh-keygen", "-Q", "-l", "-f", str(revoked)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise Refused(f"the revoked keys list {revoked} is an unreadable KRL: no tag is applied")
        return Keys(allowed, revoked)
    with tempfile.TemporaryDirectory(prefix="hailo-pull-keys.") as d:
        one = Path(d) / "key.pub"
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            one.write_text(line + "\n")
            key = subprocess.run(["ssh-keygen", "-l", "-f", str(one)], capture_output=True, check=False)
            if key.returncode != 0:
                raise Refused(
                    f"the revoked keys list {revoked} is unreadable: line {n} is not a public key "
                    "(one OpenSSH public key per line, or a KRL): no tag is applied"
                )
    return Keys(allowed, revoked)


def ssh_verify(payload: bytes, signature: bytes, namespace: str, keys: Keys) -> str:
    """ssh-keygen -Y verify at this host's current time, every principal tried; the good line, or
    Refused saying why (revoked, not valid now, unknown, does not verify)."""
    with tempfile.TemporaryDirectory(prefix="hailo-pull-sig.") as d:
        sig = Path(d) / "signature"
        sig.write_bytes(signature)
        find = ["ssh-keygen", "-Y", "find-principals", "-f", str(keys.allowed), "-s", str(sig)]
        found = subprocess.run(find, capture_output=True, text=True, check=False)
        named = re.split(r"[,\n]", found.stdout) if found.returncode == 0 else []
        principals = list(dict.fromkeys(p.strip() for p in named + keys.principals() if p.strip()))
        errors = [found.stderr]

        def verify(principal: str, revoked: bool) -> subprocess.CompletedProcess[bytes]:
            revoke = ["-r", str(keys.revoked)] if revoked and keys.revoked else []
            argv = ["ssh-keygen", "-Y", "verify", "-f", str(keys.allowed), "-I", principal, "-n", namespace,
                    "-s", str(sig), *revoke]  # fmt: skip
            return subprocess.run(argv, input=payload, capture_output=True, check=False)

        for principal in principals:
            proc = verify(principal, True)
            if proc.returncode == 0:
                return proc.stdout.decode(errors="replace").strip().splitlines()[0]
            errors.append(proc.stderr.decode(errors="replace"))
        if keys.revoked:
            for principal in principals:
                if verify(principal, False).returncode == 0:
                    raise Refused(f"signed by {principal} with a revoked key")
    text = "\n".join(errors)
    stale = re.search(r"[^\n]*(?:expired|not yet valid)[^\n]*", text)
    if stale:
        raise Refused(f"signed by a key that is not valid now ({stale.group(0).strip()})", lasting=False)
    if found.returncode != 0:
        raise Refused("not signed by an allowed key (an unknown key, or a damaged signature)")
    raise Refused(
        "the signature does not verify (the tag was changed after signing, or signed for another "
        f"namespace than {namespace})"
    )


# -- tags -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tag:
    name: str
    object: str  # the tag object's id
    commit: str
    version: str
    tagged_at: int
    good: str  # ssh-keygen's line

    def target(self, state: str) -> dict[str, str]:
        return {"tag": self.name, "version": self.version, "tagged_at": iso(self.tagged_at), "state": state}


def version_of(name: str, prefix: str) -> tuple[int, ...] | None:
    """The version a release tag's name carries (padded to four numbers for comparing), or None."""
    if not name.startswith(prefix) or not VERSION.fullmatch(name[len(prefix) :]):
        return None
    parts = [int(p) for p in name[len(prefix) :].split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def split_signature(raw: bytes) -> tuple[bytes, bytes, str | None]:
    """(payload, signature, kind): the signature starts at the last line that starts one, as git
    splits a tag object; kind is None when there is none."""
    start, kind = len(raw), None
    offset = 0
    for line in raw.split(b"\n"):
        for marker, what in SIGNATURE_STARTS.items():
            if line.startswith(marker):
                start, kind = offset, what
        offset += len(line) + 1
    return raw[:start], raw[start:], kind


@dataclass(frozen=True)
class Claimed:
    """What a tag object says before its signature is checked."""

    commit: str
    tagged_at: int
    payload: bytes
    signature: bytes


def parse_tag(name: str, kind: str, size: int, raw: bytes | None) -> Claimed:
    """The checks that need no signature (no ssh-keygen): an annotated tag object of a sane size
    whose header is object, type, tag, tagger, which names NAME, points to a commit, carries a
    date and one SSH signature block. Refused when one fails."""
    if kind != "tag":
        raise Refused(f"{name} is a lightweight tag: only annotated, signed tags are applied")
    if size > TAG_MAX_BYTES or raw is None:
        raise Refused(f"{name}: its tag object is larger than {TAG_MAX_BYTES} bytes")
    head = raw.split(b"\n\n", 1)[0].split(b"\n")
    fields = [line.split(b" ", 1) for line in head]
    if [f[0] for f in fields] != [b"object", b"type", b"tag", b"tagger"] or any(len(f) != 2 for f in fields):
        raise Refused(f"{name}: its tag object's header is not object, type, tag, tagger")
    header = {f[0].decode(): f[1] for f in fields}
    signed_name = header["tag"].decode(errors="replace")
    if signed_name != name:
        raise Refused(
            f"{name} is the signed tag {signed_name!r} under another name: the name inside the signed "
            "object must be the tag's (an old release pushed again under a new name)"
        )
    if header["type"] != b"commit":
        raise Refused(f"{name} points to a {header['type'].decode(errors='replace')}, not a commit")
    when = TAGGER.match(header["tagger"])
    if not when:
        raise Refused(f"{name}: its tagger line has no date")
    payload, signature, sig_kind = split_signature(raw)
    if sig_kind is None:
        raise Refused(f"{name} is not signed by an allowed key: it carries no signature")
    if sig_kind != "ssh":
        raise Refused(
            f"{name} carries {sig_kind}: only SSH signatures (gpg.format=ssh) by the allowed signers are "
            "accepted, never a key of GnuPG's keyring"
        )
    if not signature.rstrip(b"\n").endswith(b"-----END SSH SIGNATURE-----"):
        raise Refused(f"{name}: its SSH signature is damaged")
    return Claimed(header["object"].decode(), int(when.group(1)), payload, signature)


class Remembered:
    """The tag objects whose signature was refused, by object id, with the keys they were checked
    against (STATE_DIR/refused.json): an object is checked once while the keys stay the same, so
    tags pushed by the thousand cost a Pi their checks once, not every run. Refusals that depend on
    the time (a key not valid now) are not remembered. A file it cannot read is checked again."""

    def __init__(self, path: Path, keys: str) -> None:
        self.path, self.keys, self.changed = path, keys, False
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        objects = data.get("objects") if isinstance(data, dict) and data.get("keys") == keys else None
        self.objects: dict[str, str] = (
            {k: v for k, v in objects.items() if isinstance(v, str)} if isinstance(objects, dict) else {}
        )

    def add(self, oid: str, reason: str) -> None:
        self.objects[oid] = reason
        self.changed = True

    def save(self, present: set[str]) -> None:
        """Written when it changed; objects no tag names any more are forgotten."""
        kept = {k: v for k, v in self.objects.items() if k in present}
        if self.changed or kept != self.objects or not self.path.exists():
            write_json(self.path, {"keys": self.keys, "objects": kept}, 0o600)


def verify_signature(repo: Path, name: str, claimed: Claimed, keys: Keys) -> str:
    """ssh-keygen's good line for the tag, or Refused (lasting unless the key is not valid now)."""
    try:
        good = ssh_verify(claimed.payload, claimed.signature, "git", keys)
    except Refused as exc:
        raise Refused(f"{name} is not signed by an allowed key: {exc}", exc.lasting) from None
    if git(repo, "cat-file", "-t", claimed.commit).strip() != "commit":
        raise Refused(f"{name} points to {claimed.commit}, which is not a commit")
    return good


# -- reports --------------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect would carry the credential elsewhere: an error instead


_OPENER = urllib.request.build_opener(_NoRedirect)


def report_url(creds: Credentials, tag: str, host: str) -> str:
    return f"{creds.reports_url}/{urllib.parse.quote(tag, safe='')}/{urllib.parse.quote(host, safe='')}.json"


def http(creds: Credentials, url: str, data: bytes | None = None) -> bytes | None:
    """GET (or PUT DATA) with the reports' credential; None for a 404."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if creds.reports_auth:
        headers["Authorization"] = creds.reports_auth
    # http(s) only: load_credentials allows no other scheme for the reports.
    req = urllib.request.Request(url, data=data, method="PUT" if data else "GET", headers=headers)  # noqa: S310
    try:
        with _OPENER.open(req, timeout=20) as r:
            body: bytes = r.read(REPORT_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and data is None:
            return None
        raise RuntimeError(f"{'PUT' if data else 'GET'} {url}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{'PUT' if data else 'GET'} {url}: {exc}") from None
    if len(body) > REPORT_MAX_BYTES:
        raise RuntimeError(f"GET {url}: more than {REPORT_MAX_BYTES} bytes")
    return body


def canary_reports(creds: Credentials, tag: Tag, canaries: list[str]) -> dict[str, str]:
    """The result each canary reported for TAG, from its own report; a report that is not a JSON
    object naming that canary, this tag and its commit does not count."""
    found = {}
    for host in canaries:
        body = http(creds, report_url(creds, tag.name, host))
        if body is None:
            continue
        try:
            report = json.loads(body)
        except ValueError:
            continue
        if (isinstance(report, dict) and report.get("host") == host and report.get("tag") == tag.name
                and report.get("commit") == tag.commit
                and isinstance(report.get("result"), str)):  # fmt: skip
            found[host] = report["result"]
    return found


def hold_reason(results: dict[str, str], canaries: list[str]) -> str | None:
    """Why a later wave must wait for this tag, or None when a canary has it and none failed."""
    if not canaries:
        return "no canaries are configured (pull_agent_canaries): a later wave waits for them"
    failed = sorted(h for h, r in results.items() if r in ("failed", "rolled_back"))
    if failed:
        return f"the canary {', '.join(failed)} failed this tag"
    if not any(r in ("deployed", "unchanged") for r in results.values()):
        return "no canary has applied this tag yet"
    return None


# -- the run --------------------------------------------------------------------------------------
def read_state(path: Path, prefix: str) -> dict[str, Any] | None:
    """The tag applied last, or None; an unreadable state stops the agent (it would forget what it
    applied, and with it the protection against going back)."""
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("tag"), str):
            raise ValueError("not a JSON object with the applied tag")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the agent's state {path} is unreadable ({exc}): fix it, or remove it to accept any "
            "signed tag again"
        ) from None
    if version_of(state["tag"], prefix) is None:
        raise ConfigError(f"the agent's state {path} names {state['tag']!r}, not a release tag")
    state.setdefault("version", state["tag"][len(prefix) :])
    state.setdefault("tagged_at", 0)
    return state


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass
class Choice:
    best: Tag | None  # the newest tag that counts
    good: list[Tag]  # every tag that counts
    refused: dict[str, str]  # name: why
    unchecked: int  # candidates left for a later run (--max-checks)


def choose(repo: Path, a: argparse.Namespace, keys: Keys, applied: dict[str, Any] | None) -> Choice:
    """Verify first, then choose: the newest tag that counts, and why each other one does not.
    Candidates (newer than the applied tag) are checked newest version first; at most
    --max-checks signatures a run, an object refused before is not checked again (Remembered)."""
    prefix = a.tag_pattern[:-1]
    floor = version_of(applied["tag"], prefix) if applied else None
    refused: dict[str, str] = {}
    candidates: list[tuple[tuple[int, ...], str, str, str, int]] = []
    for name, kind, oid, size in list_tags(repo):
        if not fnmatch.fnmatchcase(name, a.tag_pattern):
            continue
        version = version_of(name, prefix)
        if version is None:
            refused[name] = f"{name!r} is not a release tag name ({prefix} and a version such as 1.4.0)"
            continue
        if applied and floor is not None and version <= floor:
            if name == applied["tag"] and applied.get("object") not in (None, oid):
                refused[name] = (f"{name} now names another tag object ({oid[:12]}) than the one applied "
                                 f"({applied['object'][:12]}): a released tag never changes")  # fmt: skip
            continue
        candidates.append((version, name, kind, oid, size))
    candidates.sort(reverse=True)
    raw = read_objects(repo, [c[3] for c in candidates if c[2] == "tag" and c[4] <= TAG_MAX_BYTES])
    remembered = Remembered(Path(a.state_dir) / "refused.json", keys.digest())
    good: list[Tag] = []
    checks = unchecked = 0
    for _order, name, kind, oid, size in candidates:
        try:
            claimed = parse_tag(name, kind, size, raw.get(oid))
            if applied and claimed.tagged_at < int(applied["tagged_at"]):
                raise Refused(f"{name} was signed at {iso(claimed.tagged_at)}, before {applied['tag']} "
                              f"(signed at {iso(int(applied['tagged_at']))}): tags apply in the order "
                              "they were signed")  # fmt: skip
            if oid in remembered.objects:
                raise Refused(f"{remembered.objects[oid]} (tag object {oid[:12]}, refused before)")
            if checks >= a.max_checks:
                unchecked += 1
                continue
            checks += 1
            try:
                line = verify_signature(repo, name, claimed, keys)
            except Refused as exc:
                if exc.lasting:
                    remembered.add(oid, str(exc))
                raise
            good.append(Tag(name, oid, claimed.commit, name[len(prefix) :], claimed.tagged_at, line))
        except Refused as exc:
            refused[name] = str(exc)
    remembered.save({c[3] for c in candidates})
    best = max(good, key=lambda t: version_of(t.name, prefix) or ()) if good else None
    return Choice(best, good, refused, unchecked)


def clock_behind(applied: dict[str, Any] | None, state_file: Path,
                 good: list[Tag]) -> str | None:  # fmt: skip
    """Why this host's clock cannot be right, or None: it is earlier than something it has seen
    happen (the applied tag's signed date, when it was applied, the state file's last change, a
    tag that verified). Keys are judged by this clock: one that stopped (a Pi without its RTC
    battery or network time) would make a retired key valid again."""
    seen: list[tuple[float, str]] = [(t.tagged_at, f"{t.name} was signed") for t in good]
    if applied:
        seen.append((int(applied["tagged_at"]), f"{applied['tag']} (applied) was signed"))
        with contextlib.suppress(ValueError):
            at = calendar.timegm(time.strptime(str(applied.get("at")), "%Y-%m-%dT%H:%M:%SZ"))
            seen.append((at, f"{applied['tag']} was applied"))
        with contextlib.suppress(OSError):
            seen.append((state_file.stat().st_mtime, f"{state_file} was written"))
    if not seen:
        return None
    when, what = max(seen)
    clock = time.time()
    if clock + CLOCK_SKEW >= when:
        return None
    return (
        f"this host's clock says {iso(clock)}, but {what} at {iso(when)}: the clock is behind (no "
        "network time, a Pi without its RTC battery?) or that date is wrong; no tag is applied until "
        "the clock is right (keys are checked at this host's time)"
    )


def worst(refused: dict[str, str], prefix: str) -> str:
    """The refused tag an outcome names: the highest version, else the last name."""
    return max(refused, key=lambda n: (version_of(n, prefix) is not None, version_of(n, prefix) or (), n))


def run_stats(path: Path, host: str) -> dict[str, int] | None:
    try:
        stats = json.loads(path.read_text())["hosts"][host]
        return {k: int(stats[k]) for k in ("changed", "failures", "unreachable")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def apply(a: argparse.Namespace, repo: Path, tag: Tag) -> tuple[str, int, str]:
    """Checks TAG's commit out and runs the playbook on this host: (result, changed, last lines)."""
    git(repo, "checkout", "--quiet", "--force", "--detach", tag.commit)
    git(repo, "clean", "-ffdxq")
    state_dir = Path(a.state_dir)
    collections = state_dir / "collections"
    link = collections / "ansible_collections" / "synchrony" / "hailo_pipeline"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(repo)
    stats = state_dir / "run-stats.json"
    stats.unlink(missing_ok=True)
    env = clean_env({"ANSIBLE_COLLECTIONS_PATH": f"{collections}:{repo / 'collections'}",
                     "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
                     "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS), "ANSIBLE_CALLBACKS_ENABLED": "run_stats",
                     "HAILO_RUN_STATS": str(stats)})  # fmt: skip
    # This host only (its name in the site's inventory), over a local connection whatever the
    # inventory says of it: the same inventory serves push runs.
    # pull_agent_run_by_agent: the pull_agent role (when the site's inventory enables it) keeps the
    # credentials a push run wrote; the served inventory holds no secret.
    cmd = [a.ansible_playbook, "-i", str(repo / a.inventory), str(repo / a.playbook), "--limit", a.host,
           "-e", "ansible_connection=local", "-e", "pull_agent_run_by_agent=true"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo, check=False)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    counts = run_stats(stats, a.host)
    if counts is None:  # a tag whose collection has no run_stats callback: the exit code alone
        return ("failed" if proc.returncode else "deployed"), 0, tail
    if proc.returncode != 0 or counts["failures"] or counts["unreachable"]:
        return "failed", counts["changed"], tail
    return ("deployed" if counts["changed"] else "unchanged"), counts["changed"], tail


def run(a: argparse.Namespace, creds: Credentials, rollout: Path) -> dict[str, Any]:
    state_dir = Path(a.state_dir)
    repo, state_file = state_dir / "repo", state_dir / "state.json"
    prefix = a.tag_pattern[:-1]
    out: dict[str, Any] = {
        "host": a.host,
        "wave": a.wave,
        "at": now(),
        "tag": None,
        "commit": None,
        "changed": 0,
    }
    applied = read_state(state_file, prefix)
    keys = checked_keys(Path(a.allowed_signers), Path(a.revoked_keys) if a.revoked_keys else None)
    behind = clock_behind(applied, state_file, [])
    if behind:  # before any signature is checked at this clock
        return {**out, "result": "refused", "reason": behind}
    fetch(creds, repo)
    choice = choose(repo, a, keys, applied)
    tag, refused = choice.best, choice.refused
    if refused:
        listed = sorted(refused, key=lambda n: (version_of(n, prefix) or (), n), reverse=True)[
            :REFUSED_LISTED
        ]
        out["refused_tags"] = {n: refused[n] for n in listed}
        if len(refused) > len(listed):
            out["refused_more"] = len(refused) - len(listed)
    if choice.unchecked:
        out["unchecked_tags"] = choice.unchecked
    behind = clock_behind(applied, state_file, choice.good)
    if behind:
        return {**out, "result": "refused", "reason": behind}
    if tag is None:
        if refused:
            name = worst(refused, prefix)
            more = (f" ({choice.unchecked} older tags are left for the next runs: at most {a.max_checks} "
                    "signatures are checked a run)" if choice.unchecked else "")  # fmt: skip
            return {**out, "tag": name, "result": "refused", "reason": refused[name] + more,
                    "target": {"tag": name, "version": name[len(prefix):] if version_of(name, prefix) else "",
                               "tagged_at": "", "state": "refused"}}  # fmt: skip
        if applied:
            target = {"tag": applied["tag"], "version": str(applied["version"]),
                      "tagged_at": iso(int(applied["tagged_at"])), "state": "current"}  # fmt: skip
            why = f"{applied['tag']} is applied; no newer signed tag"
            return {**out, "tag": applied["tag"], "commit": applied.get("commit"), "result": "current",
                    "reason": why, "target": target}  # fmt: skip
        return {**out, "result": "current", "reason": f"no tag matches {a.tag_pattern}"}
    out.update(tag=tag.name, commit=tag.commit)
    opens = tag.tagged_at + 60 * a.delays[min(a.wave, len(a.delays) - 1)]
    if time.time() < opens:
        return {**out, "result": "waiting", "target": tag.target("waiting"),
                "reason": f"wave {a.wave} opens at {iso(opens)}"}  # fmt: skip
    if a.wave > 0:
        try:
            hold = hold_reason(canary_reports(creds, tag, a.canaries), a.canaries)
        except RuntimeError as exc:
            hold = f"the canaries' reports cannot be read ({exc})"
        if hold:
            return {**out, "result": "held", "reason": hold, "target": tag.target("held")}
    write_json(rollout, {**out, "result": "applying", "reason": tag.good, "target": tag.target("applying")})
    result, changed, tail = apply(a, repo, tag)
    if result != "failed":
        record = {"tag": tag.name, "object": tag.object, "commit": tag.commit, "version": tag.version,
                  "tagged_at": tag.tagged_at, "at": out["at"]}  # fmt: skip
        write_json(state_file, record, 0o600)
    state = "failed" if result == "failed" else "deployed"
    return {**out, "result": result, "changed": changed, "reason": tag.good, "output": tail,
            "target": tag.target(state)}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--credentials", default="/var/lib/hailo-pull/credentials.json",
                    help="JSON: repo_url, reports_url, reports_user, reports_password (0600)")  # fmt: skip
    ap.add_argument("--allowed-signers", required=True)
    ap.add_argument("--revoked-keys", default="", help="revoked public keys (one per line) or a KRL")
    ap.add_argument("--tag-pattern", default="fleet-*")
    ap.add_argument("--wave", type=int, default=0)
    ap.add_argument("--delays", default="0", help="minutes after the tag each wave opens, comma-separated")
    ap.add_argument(
        "--canaries", default="", help="the wave-0 hosts whose reports open later waves, comma-separated"
    )
    ap.add_argument("--state-dir", default="/var/lib/hailo-pull")
    ap.add_argument("--rollout-file", default="/var/lib/hailo-pipeline/rollout.json")
    ap.add_argument("--inventory", default="site/hosts.yml")
    ap.add_argument("--playbook", default="playbooks/pi.yml")
    ap.add_argument("--ansible-playbook", default="ansible-playbook")
    ap.add_argument("--host", default=socket.gethostname(), help="this host's name in the site's inventory")
    ap.add_argument("--max-checks", type=int, default=100,
                    help="signatures checked in a run at most (newest versions first)")  # fmt: skip
    return ap.parse_args(argv)


def checked_args(a: argparse.Namespace) -> None:
    if not (a.tag_pattern.endswith("*") and PREFIX.fullmatch(a.tag_pattern[:-1])):
        raise ConfigError(f"--tag-pattern {a.tag_pattern!r}: a prefix and '*', e.g. fleet-*")
    if not HOST.fullmatch(a.host):
        raise ConfigError(f"--host {a.host!r}: a host name (letters, digits, '.', '_', '-')")
    if a.wave < 0:
        raise ConfigError(f"--wave {a.wave}: 0 or more")
    if a.max_checks < 1:
        raise ConfigError(f"--max-checks {a.max_checks}: 1 or more")
    try:
        a.delays = [int(d) for d in a.delays.split(",")]
        if any(d < 0 for d in a.delays):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--delays {a.delays!r}: minutes, comma-separated") from None
    a.canaries = [c for c in a.canaries.split(",") if c]
    bad = [c for c in a.canaries if not HOST.fullmatch(c)]
    if bad:
        raise ConfigError(f"--canaries: {bad} are not host names")


def outcome_of(a: argparse.Namespace, result: str, reason: str) -> dict[str, Any]:
    return {"host": a.host, "wave": a.wave, "at": now(), "tag": None, "commit": None, "changed": 0,
            "result": result, "reason": reason}  # fmt: skip


def take_lock(state_dir: Path) -> int:
    """The agent's lock (STATE_DIR/lock; flock, so the kernel releases it when the run ends however
    it ends, a power cut included): one run at a time, the timer's or a person's. Busy when taken."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(
            f"another run of the agent is going on ({state_dir / 'lock'}): this one did nothing"
        ) from None
    return fd


def record(a: argparse.Namespace, creds: Credentials | None, rollout: Path, outcome: dict[str, Any]) -> None:
    """Writes the outcome to the rollout file, sends it to the reports, prints it."""
    secrets = creds.secrets if creds else ()
    outcome = redacted_outcome(outcome, secrets)
    recorded = {k: v for k, v in outcome.items() if k != "output"}
    try:
        write_json(rollout, recorded)
    except OSError as exc:
        outcome["rollout_error"] = str(exc)
    name = outcome.get("tag")
    if (creds is not None and isinstance(name, str) and version_of(name, a.tag_pattern[:-1]) is not None
            and outcome["result"] in ("deployed", "unchanged", "failed", "refused")):  # fmt: skip
        try:
            http(creds, report_url(creds, name, a.host), json.dumps(recorded).encode())
        except RuntimeError as exc:
            outcome["report_error"] = redact(str(exc), secrets)
    print(json.dumps(outcome))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    rollout = Path(a.rollout_file)
    creds: Credentials | None = None
    try:
        checked_args(a)
        take_lock(Path(a.state_dir))
        creds = load_credentials(Path(a.credentials))
        outcome = run(a, creds, rollout)
    except Busy as exc:
        # The run that holds the lock owns the rollout file (it may say "applying"): this one only
        # prints why it stopped (journalctl -u hailo-pull).
        print(json.dumps(outcome_of(a, "busy", str(exc))))
        return 0
    except ConfigError as exc:
        outcome = outcome_of(a, "failed", str(exc))
    except Refused as exc:
        outcome = outcome_of(a, "refused", str(exc))
    except Exception as exc:
        outcome = outcome_of(a, "failed", f"{type(exc).__name__}: {exc}")
    try:
        record(a, creds, rollout, outcome)
    except Exception as exc:  # the last resort: whatever failed, an outcome in the rollout file
        fallback = outcome_of(a, "failed", f"recording the outcome failed ({type(exc).__name__}: {exc})")
        fallback = redacted_outcome(fallback, creds.secrets if creds else ())
        try:
            write_json(rollout, fallback)
        except OSError as err:
            fallback["rollout_error"] = str(err)
        print(json.dumps(fallback))
    return 0


if __name__ == "__main__":
    sys.exit(main())

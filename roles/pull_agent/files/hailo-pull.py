"""The pull agent (pull_agent role): a Pi behind NAT applies the fleet's signed releases itself.

Run by hailo-pull.timer (randomised delay); one run:
  1. fetches the fleet repository (the collection and the site's inventory) from the remote;
  2. verifies every tag matching the pattern that is newer than the one applied, then chooses: a
     tag counts only when its name is PREFIX and a version (fleet-1.4.0), its signed tag object
     names that same tag and points to a commit, it is SSH-signed (never OpenPGP or X.509) by a
     key in the allowed signers that is valid now and not revoked, and it is newer than the tag
     applied before, both by version and by its signed tagger date. The newest such tag is the
     target; every other tag that fails is listed with its reason ("refused" when none counts);
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
malformed arguments exit 2.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
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
# The run_stats callback the pull_agent role installs beside the agent (files/hailo-pull-callbacks/):
# the playbook's per-host counts as JSON, written by the agent's own version of it.
CALLBACKS = Path(__file__).resolve().parent / "hailo-pull-callbacks"
# The refused tags an outcome lists (the highest versions; the rest are counted).
REFUSED_LISTED = 20


class Refused(Exception):
    """A tag, or the whole run's input, that must not be applied; the message says why."""


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
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in schemes or not (parts.hostname or parts.scheme == "file"):
            raise ValueError
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name} must be a URL: {', '.join(s + '://' for s in schemes)}") from None
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


# -- git ------------------------------------------------------------------------------------------
def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, without git configuration it did not set itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    return {**env, "GIT_TERMINAL_PROMPT": "0", **(extra or {})}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env or clean_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def fetch(creds: Credentials, repo: Path) -> None:
    # The credential reaches git as an HTTP header in its environment, never in an argument or a
    # file (.git/config holds the URL without it).
    extra = {"GIT_CONFIG_COUNT": "0"}
    if creds.repo_auth:
        extra = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                 "GIT_CONFIG_VALUE_0": f"Authorization: {creds.repo_auth}"}  # fmt: skip
    env = clean_env(extra)
    if not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(repo, ignore_errors=True)
        proc = subprocess.run(["git", "clone", "--quiet", "--no-checkout", "--", creds.repo_url, str(repo)],
                              capture_output=True, text=True, env=env)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"git clone: {proc.stderr.strip()[-500:]}")
    elif git(repo, "remote", "get-url", "origin").strip() != creds.repo_url:
        git(repo, "remote", "set-url", "origin", creds.repo_url)
    git(repo, "fetch", "--quiet", "--tags", "--force", "--prune", "--prune-tags", "origin", env=env)


def list_tags(repo: Path) -> list[tuple[str, str, str]]:
    """(name, object type, object id) of every tag."""
    out = git(repo, "for-each-ref", "--format=%(objecttype) %(objectname) %(refname)", "refs/tags/")
    tags = []
    for line in out.splitlines():
        kind, oid, ref = line.split(" ", 2)
        tags.append((ref.removeprefix("refs/tags/"), kind, oid))
    return tags


# -- signatures -----------------------------------------------------------------------------------
@dataclass
class Keys:
    allowed: Path
    revoked: Path | None  # None: no revocation list

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
        proc = subprocess.run(["ssh-keygen", "-Q", "-l", "-f", str(revoked)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise Refused(f"the revoked keys list {revoked} is an unreadable KRL: no tag is applied")
        return Keys(allowed, revoked)
    with tempfile.TemporaryDirectory(prefix="hailo-pull-keys.") as d:
        one = Path(d) / "key.pub"
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            one.write_text(line + "\n")
            if subprocess.run(["ssh-keygen", "-l", "-f", str(one)], capture_output=True).returncode != 0:
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
        found = subprocess.run(find, capture_output=True, text=True)
        named = re.split(r"[,\n]", found.stdout) if found.returncode == 0 else []
        principals = list(dict.fromkeys(p.strip() for p in named + keys.principals() if p.strip()))
        errors = [found.stderr]

        def verify(principal: str, revoked: bool) -> subprocess.CompletedProcess[bytes]:
            revoke = ["-r", str(keys.revoked)] if revoked and keys.revoked else []
            argv = ["ssh-keygen", "-Y", "verify", "-f", str(keys.allowed), "-I", principal, "-n", namespace,
                    "-s", str(sig), *revoke]  # fmt: skip
            return subprocess.run(argv, input=payload, capture_output=True)

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
        raise Refused(f"signed by a key that is not valid now ({stale.group(0).strip()})")
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


def verify_tag(repo: Path, name: str, version: str, kind: str, oid: str, keys: Keys) -> Tag:
    if kind != "tag":
        raise Refused(f"{name} is a lightweight tag: only annotated, signed tags are applied")
    raw = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "tag", oid], capture_output=True, check=True
    ).stdout
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
    try:
        good = ssh_verify(payload, signature, "git", keys)
    except Refused as exc:
        raise Refused(f"{name} is not signed by an allowed key: {exc}") from None
    commit = header["object"].decode()
    if git(repo, "cat-file", "-t", commit).strip() != "commit":
        raise Refused(f"{name} points to {commit}, which is not a commit")
    return Tag(name, oid, commit, version, int(when.group(1)), good)


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


def choose(repo: Path, a: argparse.Namespace, keys: Keys, applied: dict[str, Any] | None,
           ) -> tuple[Tag | None, dict[str, str]]:  # fmt: skip
    """Verify first, then choose: the newest tag that counts, and why each other one does not."""
    prefix = a.tag_pattern[:-1]
    floor = version_of(applied["tag"], prefix) if applied else None
    refused: dict[str, str] = {}
    good: list[Tag] = []
    for name, kind, oid in list_tags(repo):
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
        try:
            tag = verify_tag(repo, name, name[len(prefix) :], kind, oid, keys)
        except Refused as exc:
            refused[name] = str(exc)
            continue
        if applied and tag.tagged_at < int(applied["tagged_at"]):
            refused[name] = (f"{name} was signed at {iso(tag.tagged_at)}, before {applied['tag']} "
                             f"(signed at {iso(int(applied['tagged_at']))}): tags apply in the order "
                             "they were signed")  # fmt: skip
            continue
        good.append(tag)
    best = max(good, key=lambda t: version_of(t.name, prefix) or ()) if good else None
    return best, refused


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
    cmd = [a.ansible_playbook, "-i", str(repo / a.inventory), str(repo / a.playbook), "--limit", a.host,
           "-e", "ansible_connection=local"]  # fmt: skip
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
    fetch(creds, repo)
    tag, refused = choose(repo, a, keys, applied)
    if refused:
        listed = sorted(refused, key=lambda n: (version_of(n, prefix) or (), n), reverse=True)[
            :REFUSED_LISTED
        ]
        out["refused_tags"] = {n: refused[n] for n in listed}
        if len(refused) > len(listed):
            out["refused_more"] = len(refused) - len(listed)
    if tag is None:
        if refused:
            name = worst(refused, prefix)
            return {**out, "tag": name, "result": "refused", "reason": refused[name],
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
    return ap.parse_args(argv)


def checked_args(a: argparse.Namespace) -> None:
    if not (a.tag_pattern.endswith("*") and PREFIX.fullmatch(a.tag_pattern[:-1])):
        raise ConfigError(f"--tag-pattern {a.tag_pattern!r}: a prefix and '*', e.g. fleet-*")
    if not HOST.fullmatch(a.host):
        raise ConfigError(f"--host {a.host!r}: a host name (letters, digits, '.', '_', '-')")
    if a.wave < 0:
        raise ConfigError(f"--wave {a.wave}: 0 or more")
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


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    rollout = Path(a.rollout_file)
    creds: Credentials | None = None
    try:
        checked_args(a)
        creds = load_credentials(Path(a.credentials))
        outcome = run(a, creds, rollout)
    except ConfigError as exc:
        outcome = outcome_of(a, "failed", str(exc))
    except Refused as exc:
        outcome = outcome_of(a, "refused", str(exc))
    except Exception as exc:
        outcome = outcome_of(a, "failed", f"{type(exc).__name__}: {exc}")
    secrets = creds.secrets if creds else ()
    outcome = json.loads(redact(json.dumps(outcome), secrets))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A fleet for the pull agent's tests (roles/pull_agent/files/hailo-pull.py), with real git and real
SSH-signed tags: a bare fleet repository, the release manager's key and an outsider's, the site's
inventory, and the fleet's reports served here by a small HTTP server that answers as fleet_repo's
nginx site does (roles/fleet_repo/templates/hailo-fleet.nginx.j2): Basic credentials per host;
a PUT that names another host's report, or no user, is 403 (nginx's rewrite phase, before
auth_basic), a wrong or missing password 401. The playbook run is a recorder of
ansible-playbook's arguments that writes the run_stats callback's file (the lab runs the real
pi.yml, tests/lab/pull; test_pull_agent.py pins the callback's format with the real
ansible-playbook)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "roles" / "pull_agent" / "files" / "hailo-pull.py"
COLLECTOR = ROOT / "roles" / "monitoring_agent" / "files" / "hailo-textfile.py"
# The hailort role's state reader, which the collector runs (installed as /usr/local/libexec/hailo-state).
HAILO_STATE = ROOT / "roles" / "hailort" / "files" / "hailo-state.py"
PASSWORDS = {"pi-1": "pw-of-pi-1", "pi-2": "pw-of-pi-2", "pi-3": "pw-of-pi-3"}


class Reports(http.server.BaseHTTPRequestHandler):
    store: ClassVar[dict[str, bytes]] = {}
    passwords: ClassVar[dict[str, str]] = {}

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return user if self.passwords.get(user) == password else None

    def _answer(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        auth = self.headers.get("Authorization", "")
        named = base64.b64decode(auth[6:]).decode().partition(":")[0] if auth.startswith("Basic ") else ""
        if not self.path.endswith(f"/{named}.json") or not named:
            return self._answer(403)
        if self._user() is None:
            return self._answer(401)
        self.store[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        return self._answer(201)

    def do_GET(self) -> None:
        if self._user() is None:
            return self._answer(401)
        if self.path in self.store:
            return self._answer(200, self.store[self.path])
        return self._answer(404)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve_reports() -> Iterator[str]:
    Reports.store, Reports.passwords = {}, dict(PASSWORDS)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reports)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/reports"
    finally:
        server.shutdown()


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def keygen(path: Path) -> Path:
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path))
    return path


def make_fleet(tmp_path: Path) -> dict[str, Path]:
    """A fleet repository with the site's inventory, a release manager's key and an outsider's."""
    keys = {name: keygen(tmp_path / name) for name in ("manager", "outsider")}
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'manager namespaces="git" {(tmp_path / "manager.pub").read_text().strip()}\n')
    src, remote = tmp_path / "src", tmp_path / "fleet.git"
    sh("git", "init", "-q", "--bare", str(remote))
    sh("git", "init", "-q", "-b", "main", str(src))
    for key, value in {"user.name": "manager", "user.email": "m@example", "gpg.format": "ssh",
                       "user.signingkey": str(keys["manager"])}.items():  # fmt: skip
        sh("git", "config", key, value, cwd=src)
    (src / "site").mkdir()
    (src / "site" / "hosts.yml").write_text("all: {children: {pi: {hosts: {pi-1: {}, pi-2: {}}}}}\n")
    (src / "playbooks").mkdir()
    (src / "playbooks" / "pi.yml").write_text("- hosts: all\n")
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", "site", cwd=src)
    sh("git", "remote", "add", "origin", str(remote), cwd=src)
    # ansible-playbook, recorded: writes the run_stats callback's file for the --limit host as the
    # real callback does (changed=2), or fails (changed=1, failures=1), and keeps its environment
    # and the rollout file as it finds it.
    fake = tmp_path / "ansible-playbook"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\nenv > {tmp_path}/calls.env\n'
        'for a; do [ "$prev" = --limit ] && h="$a"; prev="$a"; done\n'
        f'cp "{tmp_path}/state-$h/rollout.json" "{tmp_path}/rollout-while-applying.json"\n'
        'if [ -f "$(dirname "$0")/fail" ]; then c=1 f=1; else c=2 f=0; fi\n'
        'printf \'{"hosts": {"%s": {"ok": 40, "changed": %s, "failures": %s, "unreachable": 0, '
        '"skipped": 3, "rescued": 0, "ignored": 0}}}\\n\' "$h" "$c" "$f" > "$HAILO_RUN_STATS"\n'
        "exit $((f * 2))\n"
    )
    fake.chmod(0o755)
    return {"src": src, "remote": remote, "allowed": allowed, "tmp": tmp_path, **keys}


def commit(fleet: dict[str, Path], message: str) -> str:
    src = fleet["src"]
    (src / "site" / "version").write_text(message)
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", message, cwd=src)
    return sh("git", "rev-parse", "HEAD", cwd=src).strip()


def tag(fleet: dict[str, Path], name: str, signed: bool = True, key: str = "manager",
        date: str | None = None) -> None:  # fmt: skip
    """A new commit tagged NAME (annotated; SSH-signed by KEY unless SIGNED is false; tagger date
    DATE, git's GIT_COMMITTER_DATE, when given), pushed."""
    src = fleet["src"]
    commit(fleet, name)
    env = {**os.environ, **({"GIT_COMMITTER_DATE": date} if date else {})}
    if signed:
        sh("git", "-c", f"user.signingkey={fleet[key]}", "tag", "-s", "-m", name, name, cwd=src, env=env)
    else:
        sh("git", "tag", "-a", "-m", name, name, cwd=src, env=env)
    sh("git", "push", "-q", "origin", "main", name, cwd=src)


def credentials(fleet: dict[str, Path], reports: str, host: str, **over: Any) -> Path:
    path = fleet["tmp"] / f"credentials-{host}.json"
    data = {"repo_url": f"file://{fleet['remote']}", "reports_url": reports, "reports_user": host,
            "reports_password": PASSWORDS.get(host, "?"), **over}  # fmt: skip
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


def agent(fleet: dict[str, Path], reports: str, host: str = "pi-1", wave: int = 0, delays: str = "0",
          canaries: str = "pi-1", extra: tuple[str, ...] = (), creds: Path | None = None,
          env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One run of the agent as its service runs it; its printed outcome, checked to be the one
    recorded in the rollout file, and the exit code 0 the timer expects."""
    state = fleet["tmp"] / f"state-{host}"
    argv = [sys.executable, str(AGENT), "--credentials", str(creds or credentials(fleet, reports, host)),
            "--allowed-signers", str(fleet["allowed"]), "--wave", str(wave), "--delays", delays,
            "--canaries", canaries, "--state-dir", str(state), "--rollout-file", str(state / "rollout.json"),
            "--ansible-playbook", str(fleet["tmp"] / "ansible-playbook"), "--host", host, *extra]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    recorded = json.loads((state / "rollout.json").read_text())
    assert recorded == {k: v for k, v in result.items() if k not in ("output", "report_error")}
    return result


def exported(fleet: dict[str, Path], host: str = "pi-1") -> str:
    """What the node exporter's hailo collector (monitoring_agent) makes of the host's rollout
    file: the text Prometheus scrapes (on a host without HailoRT's tools: an empty PATH, under
    which the hailort role's state reader finds none of them)."""
    state = fleet["tmp"] / f"state-{host}"
    out = state / "hailo.prom"
    sh(sys.executable, str(COLLECTOR), str(out), "--device", str(state / "no-device"),
       "--release", str(state / "no-release.json"), "--rollout", str(state / "rollout.json"),
       "--hailo-state", str(HAILO_STATE), env={"PATH": ""})  # fmt: skip
    return out.read_text()


def report(reports_store: dict[str, bytes], tag_name: str, host: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reports_store[f"/reports/{tag_name}/{host}.json"])
    return data

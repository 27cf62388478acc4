"""roles/pull_agent/files/hailo-pull.py with real git and real SSH-signed tags: the newest tag is
applied only when an allowed key signed it and it is not older than the one applied; waves wait
for their delay and for a canary, and a failed canary holds them; every run writes its outcome
for the node exporter and reports it. The fleet's reports are served here by a small HTTP server
that answers as nginx's PUT and JSON listing do (the lab uses nginx, fleet_repo); the playbook run
is a recorder of ansible-playbook's arguments (the lab runs the real pi.yml,
tests/lab/rollout/test_pull.py)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

AGENT = Path(__file__).resolve().parents[2] / "roles" / "pull_agent" / "files" / "hailo-pull.py"


class Reports(http.server.BaseHTTPRequestHandler):
    store: ClassVar[dict[str, bytes]] = {}

    def do_PUT(self) -> None:
        self.store[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.endswith("/"):
            names = [p.rsplit("/", 1)[1] for p in self.store if p.startswith(self.path)]
            if not names:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps([{"name": n, "type": "file"} for n in names]).encode()
        elif self.path in self.store:
            body = self.store[self.path]
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def reports() -> Iterator[str]:
    Reports.store = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reports)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reports"
    server.shutdown()


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, Path]:
    """A fleet repository with the site's inventory, a release manager's key and an outsider's."""
    keys = {}
    for name in ("manager", "outsider"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp_path / name))
        keys[name] = tmp_path / name
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
    # ansible-playbook, recorded: prints a PLAY RECAP line for the --limit host as the real one
    # does (changed=2), or fails.
    fake = tmp_path / "ansible-playbook"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n'
                    'for a; do [ "$prev" = --limit ] && h="$a"; prev="$a"; done\n'
                    '[ -f "$(dirname "$0")/fail" ] && {\n'
                    '  echo "$h : ok=3 changed=1 unreachable=0 failed=1"; exit 2; }\n'
                    'echo "$h      : ok=40   changed=2    unreachable=0    failed=0"\n')  # fmt: skip
    fake.chmod(0o755)
    return {"src": src, "remote": remote, "allowed": allowed, "tmp": tmp_path, **keys}


def tag(fleet: dict[str, Path], name: str, signed: bool = True, key: str = "manager") -> None:
    src = fleet["src"]
    (src / "site" / "version").write_text(name)
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", name, cwd=src)
    if signed:
        sh("git", "-c", f"user.signingkey={fleet[key]}", "tag", "-s", "-m", name, name, cwd=src)
    else:
        sh("git", "tag", "-a", "-m", name, name, cwd=src)
    sh("git", "push", "-q", "origin", "main", name, cwd=src)


def agent(
    fleet: dict[str, Path], reports: str, host: str = "pi-1", wave: int = 0, delays: str = "0"
) -> dict[str, Any]:
    state = fleet["tmp"] / f"state-{host}"
    argv = [sys.executable, str(AGENT), "--repo-url", str(fleet["remote"]), "--reports-url", reports,
            "--allowed-signers", str(fleet["allowed"]), "--wave", str(wave), "--delays", delays,
            "--state-dir", str(state), "--rollout-file", str(state / "rollout.json"),
            "--ansible-playbook", str(fleet["tmp"] / "ansible-playbook"), "--host", host]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    assert json.loads((state / "rollout.json").read_text())["result"] == result["result"]
    return result


def test_a_signed_tag_is_applied_once_and_reported(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    first = agent(fleet, reports)
    assert (first["result"], first["tag"], first["changed"]) == ("deployed", "fleet-1.0.0", 2), first
    assert 'Good "git" signature for manager' in first["reason"]
    calls = (fleet["tmp"] / "calls").read_text().split()
    # This host only, over a local connection, whatever the site's inventory says of it.
    assert calls[calls.index("--limit") + 1] == "pi-1" and "ansible_connection=local" in calls
    assert calls[calls.index("-i") + 2].endswith("playbooks/pi.yml")
    report = json.loads(Reports.store["/reports/fleet-1.0.0/pi-1.json"])
    assert (report["result"], report["wave"], report["commit"]) == ("deployed", 0, first["commit"])
    again = agent(fleet, reports)
    assert again["result"] == "current" and len((fleet["tmp"] / "calls").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("signed", "key", "reason"),
    [
        (False, "manager", "is not signed by an allowed key"),
        (True, "outsider", "is not signed by an allowed key"),
    ],
    ids=["unsigned", "unknown key"],
)
def test_a_tag_without_an_allowed_signature_is_refused(
    fleet: dict[str, Path], reports: str, signed: bool, key: str, reason: str
) -> None:
    tag(fleet, "fleet-1.0.0", signed=signed, key=key)
    result = agent(fleet, reports)
    assert result["result"] == "refused" and reason in result["reason"], result
    assert not (fleet["tmp"] / "calls").exists(), "nothing ran"
    assert json.loads(Reports.store["/reports/fleet-1.0.0/pi-1.json"])["result"] == "refused"


def test_a_lightweight_tag_is_refused(fleet: dict[str, Path], reports: str) -> None:
    src = fleet["src"]
    sh("git", "tag", "fleet-2.0.0", cwd=src)
    sh("git", "push", "-q", "origin", "fleet-2.0.0", cwd=src)
    result = agent(fleet, reports)
    assert result["result"] == "refused" and "lightweight tag" in result["reason"]


def test_an_older_tag_than_the_applied_one_is_refused(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.10.0")
    assert agent(fleet, reports)["result"] == "deployed"
    # The newer tag disappears from the remote; an older one is the newest now (a rollback by pull).
    sh("git", "push", "-q", "origin", ":refs/tags/fleet-1.10.0", cwd=fleet["src"])
    tag(fleet, "fleet-1.9.0")
    result = agent(fleet, reports)
    assert result["result"] == "refused" and "older than fleet-1.10.0" in result["reason"], result


def test_waves_wait_for_their_delay_and_a_canary(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    waiting = agent(fleet, reports, host="pi-2", wave=1, delays="0,30")
    assert waiting["result"] == "waiting" and "wave 1 opens at" in waiting["reason"]
    held = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert held["result"] == "held" and "no canary has applied this tag yet" in held["reason"]
    assert agent(fleet, reports, host="pi-1")["result"] == "deployed"
    applied = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert applied["result"] == "deployed", applied


def test_a_failed_canary_holds_the_next_wave(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    (fleet["tmp"] / "fail").touch()
    canary = agent(fleet, reports, host="pi-1")
    assert canary["result"] == "failed" and canary["changed"] == 1
    (fleet["tmp"] / "fail").unlink()
    held = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert held["result"] == "held" and "the canary pi-1 failed this tag" in held["reason"], held
    assert time.time() > 0

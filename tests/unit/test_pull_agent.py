"""roles/pull_agent/files/hailo-pull.py with real git and real SSH-signed tags (tests/unit/pullfleet.py):
the newest tag that counts is applied, waves wait for their delay and for a canary, a failed canary
holds them, and every run writes its outcome and target for the node exporter and reports it with
the host's own credential. The attacks on it are in tests/unit/attacks/test_pull.py."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from pullfleet import ROOT, Reports, agent, credentials, exported, make_fleet, report, serve_reports, sh, tag


@pytest.fixture
def reports() -> Iterator[str]:
    with serve_reports() as url:
        yield url


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, Path]:
    return make_fleet(tmp_path)


def test_a_signed_tag_is_applied_once_and_reported(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    first = agent(fleet, reports)
    assert (first["result"], first["tag"], first["changed"]) == ("deployed", "fleet-1.0.0", 2), first
    assert 'Good "git" signature for manager' in first["reason"]
    assert first["target"]["tag"] == "fleet-1.0.0" and first["target"]["version"] == "1.0.0"
    assert first["target"]["state"] == "deployed" and first["target"]["tagged_at"].endswith("Z")
    calls = (fleet["tmp"] / "calls").read_text().split()
    # This host only, over a local connection, whatever the site's inventory says of it.
    assert calls[calls.index("--limit") + 1] == "pi-1" and "ansible_connection=local" in calls
    assert calls[calls.index("-i") + 2].endswith("playbooks/pi.yml")
    # While the playbook runs (and if the run dies there), the rollout file says so.
    during = json.loads((fleet["tmp"] / "rollout-while-applying.json").read_text())
    assert during["result"] == "applying" and during["target"] == {**first["target"], "state": "applying"}
    sent = report(Reports.store, "fleet-1.0.0", "pi-1")
    assert (sent["result"], sent["wave"], sent["commit"]) == ("deployed", 0, first["commit"])
    again = agent(fleet, reports)
    assert again["result"] == "current" and len((fleet["tmp"] / "calls").read_text().splitlines()) == 1
    assert again["target"] == {**first["target"], "state": "current"}
    assert 'hailo_host_rollout_result{result="current"} 1' in exported(fleet)


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
    assert result["target"]["state"] == "refused"
    assert not (fleet["tmp"] / "calls").exists(), "nothing ran"
    assert report(Reports.store, "fleet-1.0.0", "pi-1")["result"] == "refused"


def test_a_lightweight_tag_is_refused(fleet: dict[str, Path], reports: str) -> None:
    src = fleet["src"]
    sh("git", "tag", "fleet-2.0.0", cwd=src)
    sh("git", "push", "-q", "origin", "fleet-2.0.0", cwd=src)
    result = agent(fleet, reports)
    assert result["result"] == "refused" and "lightweight tag" in result["reason"]


def test_the_newest_version_is_chosen_not_the_newest_name(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.9.0")
    tag(fleet, "fleet-1.10.0")
    assert agent(fleet, reports)["tag"] == "fleet-1.10.0"


def test_waves_wait_for_their_delay_and_a_canary(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    waiting = agent(fleet, reports, host="pi-2", wave=1, delays="0,30")
    assert waiting["result"] == "waiting" and "wave 1 opens at" in waiting["reason"]
    assert waiting["target"]["state"] == "waiting"
    held = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert held["result"] == "held" and "no canary has applied this tag yet" in held["reason"]
    assert held["target"]["state"] == "held"
    assert agent(fleet, reports, host="pi-1")["result"] == "deployed"
    applied = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert applied["result"] == "deployed", applied


def test_a_failed_canary_holds_the_next_wave(fleet: dict[str, Path], reports: str) -> None:
    tag(fleet, "fleet-1.0.0")
    (fleet["tmp"] / "fail").touch()
    canary = agent(fleet, reports, host="pi-1")
    assert canary["result"] == "failed" and canary["changed"] == 1 and canary["target"]["state"] == "failed"
    assert 'hailo_host_rollout_result{result="failed"} 1' in exported(fleet)
    (fleet["tmp"] / "fail").unlink()
    held = agent(fleet, reports, host="pi-2", wave=1, delays="0,0")
    assert held["result"] == "held" and "the canary pi-1 failed this tag" in held["reason"], held


def test_credentials_stay_out_of_arguments_files_and_outcomes(
    fleet: dict[str, Path], reports: str, on_path: Callable[[str, str], dict[str, str]]
) -> None:
    """The repository's URL carries a credential (served here over HTTP with Basic auth, as a site
    may): git gets it as a header from its environment, never as an argument; .git/config, the
    outcome, the report and the playbook's environment never hold it."""
    tag(fleet, "fleet-1.0.0")
    sh("git", "--git-dir", str(fleet["remote"]), "update-server-info")
    secret = "s3cret-of-the-repo"

    class Repo(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if (
                self.headers.get("Authorization")
                != "Basic " + base64.b64encode(f"fleet:{secret}".encode()).decode()
            ):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Repo, directory=str(fleet["tmp"])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = fleet["tmp"] / "git-argv"
    real_git = shutil.which("git")
    path = on_path("git", f'#!/bin/sh\necho "$@" >> {log}\nexec {real_git} "$@"\n')
    try:
        url = f"http://fleet:{secret}@127.0.0.1:{server.server_address[1]}/fleet.git"
        result = agent(fleet, reports, creds=credentials(fleet, reports, "pi-1", repo_url=url), env=path)
    finally:
        server.shutdown()
    assert result["result"] == "deployed", result
    assert secret not in log.read_text() and "127.0.0.1" in log.read_text()
    state = fleet["tmp"] / "state-pi-1"
    assert secret not in (state / "repo" / ".git" / "config").read_text()
    assert secret not in json.dumps(result) and secret not in (state / "rollout.json").read_text()
    assert "pw-of-pi-1" not in (fleet["tmp"] / "calls.env").read_text(), "the playbook saw the credential"
    assert secret not in (fleet["tmp"] / "calls.env").read_text()


def test_the_run_stats_callback_writes_what_the_agent_reads(tmp_path: Path) -> None:
    """roles/pull_agent/files/hailo-pull-callbacks/run_stats.py, found as the agent finds it, under
    the real ansible-playbook (the venv's ansible-core): per-host counts, the file the agent reads
    instead of PLAY RECAP's text."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - {name: one change, ansible.builtin.command: 'true', changed_when: true}\n"
        "    - {name: no change, ansible.builtin.command: 'true', changed_when: false}\n"
        "    - {name: skipped, ansible.builtin.command: 'true', when: false}\n"
    )
    stats = tmp_path / "stats.json"
    env = {**os.environ, "ANSIBLE_CALLBACKS_ENABLED": "run_stats", "HAILO_RUN_STATS": str(stats),
           "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "roles/pull_agent/files/hailo-pull-callbacks"),
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}  # fmt: skip
    playbook = Path(sys.executable).parent / "ansible-playbook"
    run = subprocess.run(
        [
            str(playbook),
            "-i",
            "pi-1,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(play),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    counts = {
        "ok": 2,
        "changed": 1,
        "failures": 0,
        "unreachable": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 0,
    }
    assert json.loads(stats.read_text()) == {"hosts": {"pi-1": counts}}

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
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from pullfleet import (
    AGENT,
    ROOT,
    Reports,
    agent,
    credentials,
    exported,
    make_fleet,
    report,
    serve_reports,
    sh,
    tag,
)


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


def test_a_second_run_while_one_applies_does_nothing(fleet: dict[str, Path], reports: str) -> None:
    """The timer's run is in the playbook when the on-call engineer starts the agent by hand: the
    second run takes no part (result "busy", printed only: the rollout file stays the first run's)
    and the first ends as it would have alone."""
    tag(fleet, "fleet-1.0.0")
    slow = fleet["tmp"] / "ansible-playbook"
    mark = fleet["tmp"] / "overlap"
    body = slow.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\necho start >> {mark}\nsleep 3\n", 1)
    slow.write_text(body.replace("exit $((f * 2))", f"echo end >> {mark}\nexit $((f * 2))"))
    state = fleet["tmp"] / "state-pi-1"
    argv = [sys.executable, str(AGENT), "--credentials", str(credentials(fleet, reports, "pi-1")),
            "--allowed-signers", str(fleet["allowed"]), "--state-dir", str(state), "--host", "pi-1",
            "--rollout-file", str(state / "rollout.json"), "--ansible-playbook", str(slow)]  # fmt: skip
    one = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    two = subprocess.run(argv, capture_output=True, text=True)
    first = json.loads(one.communicate()[0])
    assert two.returncode == 0 and json.loads(two.stdout)["result"] == "busy", two.stdout + two.stderr
    assert mark.read_text().split() == ["start", "end"], "two playbook runs overlapped"
    assert first["result"] == "deployed"
    assert json.loads((state / "rollout.json").read_text())["result"] == "deployed"


@pytest.mark.parametrize("damage", ["index.lock", "refs/tags/fleet-1.1.0.lock", "HEAD emptied"])
def test_a_clone_left_damaged_by_a_power_cut_does_not_stop_later_runs(
    fleet: dict[str, Path], reports: str, damage: str
) -> None:
    """Power lost during a checkout or a fetch leaves git's lock files (or a HEAD it no longer
    reads) in the agent's clone: every later run used to fail there until someone found the
    folder. The agent owns the clone: it clears the locks (it holds its own lock), or clones again."""
    tag(fleet, "fleet-1.0.0")
    assert agent(fleet, reports)["result"] == "deployed"
    git_dir = fleet["tmp"] / "state-pi-1" / "repo" / ".git"
    if damage == "HEAD emptied":
        (git_dir / "HEAD").write_text("")
    else:
        (git_dir / damage).parent.mkdir(parents=True, exist_ok=True)
        (git_dir / damage).write_text("")
    tag(fleet, "fleet-1.1.0")
    results = [agent(fleet, reports) for _ in range(2)]
    assert [r["result"] for r in results] == ["deployed", "current"], [r["reason"][:200] for r in results]


def test_a_one_character_repository_password_still_ends_with_an_outcome(
    fleet: dict[str, Path], reports: str
) -> None:
    """A repository password of "0" (a site's placeholder): its redaction used to rewrite the
    outcome's JSON ("wave": ***), which then failed to parse: a traceback, exit 1 and no rollout
    file. Now every string is redacted in place and the numbers and times stay."""
    tag(fleet, "fleet-1.0.0")
    creds = credentials(fleet, reports, "pi-1", repo_url="https://fleet:0@127.0.0.1:9/fleet.git")
    result = agent(fleet, reports, creds=creds)  # exit 0, no traceback, the outcome recorded
    assert (result["result"], result["wave"], result["changed"]) == ("failed", 0, 0), result
    assert time.strptime(result["at"], "%Y-%m-%dT%H:%M:%SZ")
    assert 'hailo_host_rollout_result{result="failed"} 1' in exported(fleet)


PREFLIGHT = """
- hosts: localhost
  gather_facts: false
  connection: local
  vars:
    pull_agent_enabled: true
    pull_agent_allowed_signers: 'rm namespaces="git" ssh-ed25519 AAAA'
  tasks:
    - ansible.builtin.include_role:
        name: synchrony.hailo_pipeline.pull_agent
        tasks_from: preflight.yml
"""


def test_the_agents_own_run_needs_no_secret_in_the_served_inventory(
    fleet: dict[str, Path], reports: str, tmp_path: Path
) -> None:
    """The served site inventory enables pull_agent, so each tag's run of pi.yml runs the role
    again. Its preflight used to require pull_agent_reports_secret there: either every pull run
    failed, or the fleet's secret sat in a repository served without credentials. The agent marks
    its runs (-e pull_agent_run_by_agent=true), and the role keeps the credentials a push run wrote;
    a push run without the secret still fails, naming it. Real ansible-playbook."""
    tag(fleet, "fleet-1.0.0")
    assert agent(fleet, reports)["result"] == "deployed"
    calls = (fleet["tmp"] / "calls").read_text().split()
    assert calls[calls.index("pull_agent_run_by_agent=true") - 1] == "-e"
    coll = tmp_path / "c" / "ansible_collections" / "synchrony"
    coll.mkdir(parents=True)
    (coll / "hailo_pipeline").symlink_to(ROOT)
    (tmp_path / "pre.yml").write_text(PREFLIGHT)
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "c")}
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    by_agent = subprocess.run([playbook, str(tmp_path / "pre.yml"), "-e", "pull_agent_run_by_agent=true"],
                              capture_output=True, text=True, env=env)  # fmt: skip
    assert by_agent.returncode == 0, by_agent.stdout[-800:]
    push = subprocess.run([playbook, str(tmp_path / "pre.yml")], capture_output=True, text=True, env=env)
    assert push.returncode != 0 and "pull_agent_repo_url must be" in push.stdout, push.stdout[-800:]


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
    # module_runs (scale.py's per-role counts) beside them: the two tasks that ran a module, the
    # skipped one not; tasks outside a role count under "play".
    assert json.loads(stats.read_text()) == {"hosts": {"pi-1": counts}, "module_runs": {"pi-1": {"play": 2}}}

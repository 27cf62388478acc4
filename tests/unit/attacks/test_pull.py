"""Attacks on pull mode (roles/pull_agent/files/hailo-pull.py), from the side of someone who can push
a ref to the fleet repository, write a report as one Pi, or hand the agent a bad input: every case
is refused with its reason, nothing runs on the host (no playbook, the applied tag in the agent's
state unchanged), the run ends with exit 0 and an outcome in the rollout file, and that outcome is
what the node exporter's hailo collector exports (the metric HailoRolloutFailed watches). Real git,
real ssh-keygen and gpg; the fleet is tests/unit/pullfleet.py's. docs/security.md names each case."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pullfleet import (
    PASSWORDS,
    Reports,
    agent,
    commit,
    credentials,
    exported,
    keygen,
    make_fleet,
    report,
    serve_reports,
    sh,
    tag,
)

Fleet = dict[str, Path]


@pytest.fixture
def reports() -> Iterator[str]:
    with serve_reports() as url:
        yield url


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path)


def applied(fleet: Fleet, host: str = "pi-1") -> str | None:
    state = fleet["tmp"] / f"state-{host}" / "state.json"
    return json.loads(state.read_text())["tag"] if state.exists() else None


def runs(fleet: Fleet) -> int:
    calls = fleet["tmp"] / "calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def refused(fleet: Fleet, result: dict[str, Any], reason: str, keeps: str | None, host: str = "pi-1") -> None:
    """RESULT is a refusal naming REASON; the host still has KEEPS applied, and Prometheus gets it."""
    assert result["result"] == "refused" and reason in result["reason"], result
    assert applied(fleet, host) == keeps
    assert 'hailo_host_rollout_result{result="refused"} 1' in exported(fleet, host)


def deploy(fleet: Fleet, reports: str, name: str) -> None:
    tag(fleet, name)
    assert agent(fleet, reports)["result"] == "deployed"


def push_ref(fleet: Fleet, ref: str, oid: str) -> None:
    sh("git", "push", "-q", "--force", "origin", f"{oid}:refs/tags/{ref}", cwd=fleet["src"])


def tag_object(fleet: Fleet, name: str) -> str:
    return sh("git", "rev-parse", f"refs/tags/{name}", cwd=fleet["src"]).strip()


# -- rollback ------------------------------------------------------------------------------------
@pytest.mark.parametrize("wave", [0, 1])
def test_rollback_an_old_signed_tag_under_a_higher_name(fleet: Fleet, reports: str, wave: int) -> None:
    """v1.0.0's signed tag object pushed again as fleet-2.0.0: git verify-tag passes it (a ref name
    is not signed); its old tagger date would open every wave's delay at once."""
    deploy(fleet, reports, "fleet-1.0.0")
    deploy(fleet, reports, "fleet-1.5.0")
    push_ref(fleet, "fleet-2.0.0", tag_object(fleet, "fleet-1.0.0"))
    host = "pi-1" if wave == 0 else "pi-2"
    if wave:  # the other wave's Pi has 1.5.0 applied too
        shutil.copytree(fleet["tmp"] / "state-pi-1", fleet["tmp"] / "state-pi-2")
    result = agent(fleet, reports, host=host, wave=wave, delays="0,30")
    refused(fleet, result, "is the signed tag 'fleet-1.0.0' under another name", "fleet-1.5.0", host)
    assert runs(fleet) == 2, "no playbook ran"


def test_rollback_an_old_signed_tag_under_the_applied_name(fleet: Fleet, reports: str) -> None:
    deploy(fleet, reports, "fleet-1.0.0")
    deploy(fleet, reports, "fleet-1.5.0")
    push_ref(fleet, "fleet-1.5.0", tag_object(fleet, "fleet-1.0.0"))
    result = agent(fleet, reports)
    refused(fleet, result, "fleet-1.5.0 now names another tag object", "fleet-1.5.0")
    assert runs(fleet) == 2


def test_rollback_a_first_run_gets_an_old_tag_under_the_newest_name(fleet: Fleet, reports: str) -> None:
    """A Pi with nothing applied yet (new, or its state lost) is offered v1.0.0's object as fleet-1.5.0."""
    tag(fleet, "fleet-1.0.0")
    old = tag_object(fleet, "fleet-1.0.0")
    sh("git", "push", "-q", "origin", ":refs/tags/fleet-1.0.0", cwd=fleet["src"])
    push_ref(fleet, "fleet-1.5.0", old)
    refused(fleet, agent(fleet, reports), "under another name", None)
    assert runs(fleet) == 0


def test_rollback_a_newer_version_signed_before_the_applied_tag(fleet: Fleet, reports: str) -> None:
    """A higher version whose signed tagger date is older than the applied tag's (made earlier and
    held back, or back-dated): tags apply in the order they were signed."""
    deploy(fleet, reports, "fleet-1.5.0")
    tag(fleet, "fleet-1.6.0", date="2020-01-01T00:00:00Z")
    refused(fleet, agent(fleet, reports), "tags apply in the order they were signed", "fleet-1.5.0")


def test_rollback_by_removing_the_newer_tags_goes_nowhere(fleet: Fleet, reports: str) -> None:
    """Whoever can write the repository removes the applied tag and leaves only older signed tags:
    the agent stays where it is."""
    deploy(fleet, reports, "fleet-1.0.0")
    deploy(fleet, reports, "fleet-1.5.0")
    sh("git", "push", "-q", "origin", ":refs/tags/fleet-1.5.0", cwd=fleet["src"])
    result = agent(fleet, reports)
    assert result["result"] == "current" and result["target"]["tag"] == "fleet-1.5.0", result
    assert applied(fleet) == "fleet-1.5.0" and runs(fleet) == 2


# -- retired, revoked and foreign keys ----------------------------------------------------------
def test_a_retired_key_signs_a_back_dated_tag(fleet: Fleet, reports: str) -> None:
    """The key's allowed_signers line ends (valid-before 2025); the tag claims to be from 2024: git
    checks the key at the tag's own date, the agent at the Pi's current time."""
    deploy(fleet, reports, "fleet-1.0.0")
    retired = keygen(fleet["tmp"] / "retired")
    with fleet["allowed"].open("a") as f:
        f.write(f'retired namespaces="git",valid-before="20250101" {retired.with_suffix(".pub").read_text()}')
    fleet["retired"] = retired
    # The applied tag is older still, so the date order alone does not stop it.
    state = fleet["tmp"] / "state-pi-1" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "tagged_at": 1_600_000_000}))
    tag(fleet, "fleet-1.1.0", key="retired", date="2024-06-01T00:00:00Z")
    refused(fleet, agent(fleet, reports), "signed by a key that is not valid now", "fleet-1.0.0")


def revoke(fleet: Fleet, text: str) -> tuple[str, ...]:
    path = fleet["tmp"] / "revoked_keys"
    path.write_text(text)
    return ("--revoked-keys", str(path))


def test_a_revoked_key_signs_a_new_tag(fleet: Fleet, reports: str) -> None:
    deploy(fleet, reports, "fleet-1.0.0")
    tag(fleet, "fleet-1.1.0")
    revoked = revoke(fleet, (fleet["tmp"] / "manager.pub").read_text())
    refused(
        fleet, agent(fleet, reports, extra=revoked), "signed by manager with a revoked key", "fleet-1.0.0"
    )


def test_a_garbage_revocation_list_is_not_read_as_a_revoked_key(fleet: Fleet, reports: str) -> None:
    """ssh-keygen answers "Could not verify signature." for a revoked key and for a list it cannot
    read alike; the agent tells them apart, and applies nothing while the list is unreadable."""
    deploy(fleet, reports, "fleet-1.0.0")
    tag(fleet, "fleet-1.1.0")
    revoked = revoke(fleet, (fleet["tmp"] / "outsider.pub").read_text() + "not a key\n")
    result = agent(fleet, reports, extra=revoked)
    assert result["result"] == "refused" and "is unreadable: line 2 is not a public key" in result["reason"]
    assert "with a revoked key" not in result["reason"] and applied(fleet) == "fleet-1.0.0"


def test_an_openpgp_signed_tag_with_its_key_in_roots_keyring(fleet: Fleet, reports: str) -> None:
    """git verify-tag hands an OpenPGP signature to gpg and root's keyring, whatever gpg.format says."""
    home = tempfile.mkdtemp(prefix="gpg.", dir="/tmp")  # short: gpg-agent's socket path
    env = {**os.environ, "GNUPGHOME": home}
    try:
        sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "manager <m@example>", "ed25519", "sign",
           "never", env=env)  # fmt: skip
        src = fleet["src"]
        commit(fleet, "fleet-1.1.0")
        sh("git", "-c", "gpg.format=openpgp", "-c", "user.signingkey=m@example", "tag", "-s", "-m", "x",
           "fleet-1.1.0", cwd=src, env=env)  # fmt: skip
        sh("git", "push", "-q", "origin", "main", "fleet-1.1.0", cwd=src)
        assert "Good signature" in subprocess.run(["git", "verify-tag", "fleet-1.1.0"], cwd=src, env=env,
                                                  capture_output=True, text=True).stderr  # fmt: skip
        result = agent(fleet, reports, env={"GNUPGHOME": home})
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)
    refused(fleet, result, "carries an OpenPGP signature: only SSH signatures", None)


def crafted_tag(fleet: Fleet, name: str, body: str) -> None:
    """A tag object written by hand (git hash-object) for a new commit, pushed as NAME."""
    src = fleet["src"]
    head = f"object {commit(fleet, name)}\ntype commit\ntag {name}\n"
    text = f"{head}tagger manager <m@example> 1796600000 +0000\n\n{body}"
    oid = subprocess.run(["git", "hash-object", "-t", "tag", "-w", "--stdin"], cwd=src, input=text,
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    push_ref(fleet, name, oid)


def test_an_x509_signed_tag(fleet: Fleet, reports: str) -> None:
    """An X.509 (gpgsm) signature block: refused for what it is, before any tool reads it."""
    crafted_tag(fleet, "fleet-1.1.0", "x\n-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n"
                "-----END SIGNED MESSAGE-----\n")  # fmt: skip
    refused(fleet, agent(fleet, reports), "carries an X.509 signature", None)


def test_a_signed_tag_of_a_tree_not_a_commit(fleet: Fleet, reports: str) -> None:
    src = fleet["src"]
    tree = sh("git", "rev-parse", "HEAD^{tree}", cwd=src).strip()
    sh("git", "tag", "-s", "-m", "x", "fleet-1.1.0", tree, cwd=src)
    sh("git", "push", "-q", "origin", "fleet-1.1.0", cwd=src)
    refused(fleet, agent(fleet, reports), "points to a tree, not a commit", None)


# -- freeze ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bogus", ["fleet-999", "fleet-z", "fleet-9²", "fleet-1.0.0#x", "fleet-%2e%2e/x"])
def test_freeze_a_bogus_tag_above_every_release(fleet: Fleet, reports: str, bogus: str) -> None:
    """An unsigned tag that sorts above every release (or crashes a number parser, or would bend a
    report URL) neither blocks the signed releases after it nor reaches the reports."""
    deploy(fleet, reports, "fleet-1.0.0")
    src = fleet["src"]
    sh("git", "tag", "-a", "-m", "x", bogus, cwd=src)
    sh("git", "push", "-q", "origin", f"refs/tags/{bogus}", cwd=src)
    tag(fleet, "fleet-1.1.0")
    result = agent(fleet, reports)
    assert (result["result"], result["tag"]) == ("deployed", "fleet-1.1.0"), result
    assert bogus in result["refused_tags"]
    # Nothing newer that counts: the bogus tag keeps the host's alert on until it is removed.
    again = agent(fleet, reports)
    assert again["result"] == "refused" and again["target"]["state"] == "refused", again
    assert applied(fleet) == "fleet-1.1.0"
    assert 'hailo_host_rollout_result{result="refused"} 1' in exported(fleet)
    assert sorted(Reports.store) == ["/reports/fleet-1.0.0/pi-1.json", "/reports/fleet-1.1.0/pi-1.json"] + (
        ["/reports/fleet-999/pi-1.json"] if bogus == "fleet-999" else []
    )


def test_freeze_bad_reports_do_not_crash_a_later_wave(fleet: Fleet, reports: str) -> None:
    """Another Pi (with its own credential) writes reports that are not what a report is: a wave
    of "zero", a body that is not JSON. The later wave holds; nothing crashes."""
    tag(fleet, "fleet-1.0.0")
    for host, body in (("pi-3", {"host": "pi-3", "wave": "zero", "result": "deployed"}), ("pi-1", None)):
        data = json.dumps(body).encode() if body else b"not json"
        Reports.store[f"/reports/fleet-1.0.0/{host}.json"] = data
    result = agent(fleet, reports, host="pi-2", wave=1, delays="0,0", canaries="pi-1,pi-3")
    assert result["result"] == "held" and "no canary has applied this tag yet" in result["reason"], result
    assert runs(fleet) == 0


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("reports_url", "http://gpüsrv/reports", "reports_url must be an ASCII URL"),
        ("reports_url", "ftp://gpusrv/reports", "reports_url must be a URL: http://, https://"),
        ("repo_url", "file:///nonexistent/fleet.git", "does not appear to be a git repository"),
        ("reports_url", "http://127.0.0.1:1:2/reports", "reports_url must be a URL"),
        ("repo_url", "ssh://fleet:pw-of-the-fleet@gpusrv/fleet.git", "an ssh:// URL takes no password"),
        ("reports_url", "http://127.0.0.1:9/reports?token=t0ken", "must have no query or fragment"),
    ],
    ids=["non-ASCII URL", "not http", "no repository", "bad port", "ssh password", "token in a query"],
)
def test_freeze_bad_settings_end_with_an_outcome(
    fleet: Fleet, reports: str, setting: str, value: str, reason: str
) -> None:
    deploy(fleet, reports, "fleet-1.0.0")
    result = agent(fleet, reports, creds=credentials(fleet, reports, "pi-1", **{setting: value}))
    assert result["result"] == "failed" and reason in result["reason"], result
    assert 'hailo_host_rollout_result{result="failed"} 1' in exported(fleet)
    assert applied(fleet) == "fleet-1.0.0"


def test_freeze_a_damaged_state_fails_closed(fleet: Fleet, reports: str) -> None:
    """The agent's record of what it applied is unreadable: it applies nothing (it would forget the
    floor that stops a rollback) and says so, every run, until a person looks."""
    deploy(fleet, reports, "fleet-1.0.0")
    (fleet["tmp"] / "state-pi-1" / "state.json").write_text("{garbage")
    tag(fleet, "fleet-1.1.0")
    result = agent(fleet, reports)
    assert result["result"] == "failed" and "state.json is unreadable" in result["reason"], result
    assert runs(fleet) == 1


def test_a_credentials_file_others_can_read_is_not_used(fleet: Fleet, reports: str) -> None:
    creds = credentials(fleet, reports, "pi-1")
    creds.chmod(0o644)
    result = agent(fleet, reports, creds=creds)
    assert result["result"] == "failed" and "readable by others (mode 644)" in result["reason"]


# -- floods and clocks ---------------------------------------------------------------------------
def forge_tags(fleet: Fleet, count: int, first: int = 100) -> None:
    """COUNT tag objects named fleet-N (N from FIRST), each carrying the SSH signature of the real
    fleet-1.0.0 (copied: no key needed) and dated now, after it, pushed: each passes every check
    but the signature's, so each costs the agent an ssh-keygen check."""
    src = fleet["src"]
    raw = sh("git", "cat-file", "tag", "fleet-1.0.0", cwd=src)
    sig = raw[raw.index("-----BEGIN SSH SIGNATURE-----") :]
    head = sh("git", "rev-parse", "HEAD", cwd=src).strip()
    updates = []
    for i in range(count):
        name = f"fleet-{first + i}"
        tagger = f"manager <m@example> {int(time.time())} +0000"
        text = f"object {head}\ntype commit\ntag {name}\ntagger {tagger}\n\nx\n{sig}"
        oid = subprocess.run(["git", "hash-object", "-t", "tag", "-w", "--stdin"], cwd=src, input=text,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        updates.append(f"create refs/tags/{name} {oid}\n")
    subprocess.run(["git", "update-ref", "--stdin"], cwd=src, input="".join(updates), text=True, check=True)
    sh("git", "push", "-q", "origin", "--tags", cwd=src)


def counting_ssh_keygen(fleet: Fleet) -> tuple[dict[str, str], Path]:
    """ssh-keygen first on PATH, logging each call, then running the real one."""
    bin_dir = fleet["tmp"] / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = fleet["tmp"] / "ssh-keygen.calls"
    (bin_dir / "ssh-keygen").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\nexec {shutil.which("ssh-keygen")} "$@"\n'
    )
    (bin_dir / "ssh-keygen").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def signatures_checked(log: Path) -> int:
    return log.read_text().count("find-principals") if log.exists() else 0


def test_a_flood_of_pushed_tags_is_checked_once_not_every_run(fleet: Fleet, reports: str) -> None:
    """Whoever can push a ref pushes tag objects by the hundred with a copied signature. Every run
    used to check them all again (200: 30 s a run; ~24,000 outlast TimeoutStartSec=3600, systemd
    kills the run and no outcome is written): an object is checked once while the keys stay."""
    deploy(fleet, reports, "fleet-1.0.0")
    forge_tags(fleet, 25)
    env, log = counting_ssh_keygen(fleet)
    refused(fleet, agent(fleet, reports, env=env), "the signature does not verify", "fleet-1.0.0")
    assert signatures_checked(log) == 25
    log.unlink()
    again = agent(fleet, reports, env=env)
    refused(fleet, again, "refused before", "fleet-1.0.0")
    assert not log.exists(), f"a run with 25 already refused tags ran ssh-keygen: {log.read_text()[:300]}"
    assert len(again["refused_tags"]) + again["refused_more"] == 25


def test_a_flood_of_pushed_tags_delays_a_release_by_runs_not_for_ever(fleet: Fleet, reports: str) -> None:
    """More forged tags above a signed release than a run checks (--max-checks: 100 by default, 3
    here): each run checks that many, newest first, and says how many are left; the release
    applies once they are checked, each object checked once."""
    deploy(fleet, reports, "fleet-1.0.0")
    tag(fleet, "fleet-1.1.0")
    forge_tags(fleet, 7)
    env, log = counting_ssh_keygen(fleet)
    results = [agent(fleet, reports, env=env, extra=("--max-checks", "3")) for _ in range(3)]
    assert [r["result"] for r in results] == ["refused", "refused", "deployed"], results
    assert [r.get("unchecked_tags") for r in results] == [5, 2, None]
    assert "5 older tags are left for the next runs" in results[0]["reason"]
    assert signatures_checked(log) == 8 and applied(fleet) == "fleet-1.1.0"


def test_a_clock_behind_does_not_make_a_retired_key_valid_again(fleet: Fleet, reports: str) -> None:
    """A Pi without its RTC battery or network time runs 10 days behind (here the world's dates
    are 10 days ahead of this machine's clock). The manager's key was retired a day ago (its
    allowed_signers line ends) and its successor signed fleet-1.1.0 today; the retired key (a
    laptop not wiped) signs fleet-1.2.0 dated 11 days ago, where the Pi's clock still finds it
    valid. The signed fleet-1.1.0 shows the clock wrong: nothing is applied, and the alert fires."""
    day, ahead = 86400, 10 * 86400
    today = int(time.time()) + ahead
    newkey = keygen(fleet["tmp"] / "newkey")
    fleet["newkey"] = newkey
    retired = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(today - day))
    fleet["allowed"].write_text(
        f'manager namespaces="git",valid-before="{retired}" {(fleet["tmp"] / "manager.pub").read_text()}'
        f'newkey namespaces="git" {newkey.with_suffix(".pub").read_text().strip()}\n'
    )
    tag(fleet, "fleet-1.0.0", key="newkey", date=f"@{today - 20 * day} +0000")
    assert agent(fleet, reports)["result"] == "deployed"
    tag(fleet, "fleet-1.1.0", key="newkey", date=f"@{today} +0000")
    tag(fleet, "fleet-1.2.0", key="manager", date=f"@{today - 11 * day} +0000")
    result = agent(fleet, reports)
    refused(fleet, result, "fleet-1.1.0 was signed at", "fleet-1.0.0")
    assert "the clock is behind" in result["reason"] and runs(fleet) == 1


def test_a_clock_set_back_since_the_last_apply_checks_nothing(fleet: Fleet, reports: str) -> None:
    """The Pi's clock went back two days since it applied fleet-1.0.0 (its state says when): no
    key is judged at that clock, and a signed fleet-1.1.0 waits until the clock is right."""
    deploy(fleet, reports, "fleet-1.0.0")
    tag(fleet, "fleet-1.1.0")
    state = fleet["tmp"] / "state-pi-1" / "state.json"
    later = time.time() + 2 * 86400
    os.utime(state, (later, later))
    env, log = counting_ssh_keygen(fleet)
    result = agent(fleet, reports, env=env)
    refused(fleet, result, "the clock is behind", "fleet-1.0.0")
    assert "state.json was written at" in result["reason"] and signatures_checked(log) == 0
    os.utime(state, None)
    assert agent(fleet, reports)["result"] == "deployed"


# -- forged reports -------------------------------------------------------------------------------
def test_a_forged_canary_report_does_not_open_the_next_wave(fleet: Fleet, reports: str) -> None:
    """pi-3 (not a canary) writes, with its own credential, a report that claims to be a canary's
    "deployed"; the reports server lets it write only its own file, and an anonymous PUT nothing."""
    tag(fleet, "fleet-1.0.0")
    forged = {"host": "pi-1", "wave": 0, "tag": "fleet-1.0.0", "result": "deployed",
              "commit": sh("git", "rev-parse", "HEAD", cwd=fleet["src"]).strip()}  # fmt: skip
    Reports.store["/reports/fleet-1.0.0/pi-3.json"] = json.dumps(forged).encode()
    result = agent(fleet, reports, host="pi-2", wave=1, delays="0,0", canaries="pi-1")
    assert result["result"] == "held" and "no canary has applied this tag yet" in result["reason"], result
    # The canary's own report for another commit (a tag object it was offered elsewhere) counts neither.
    Reports.store["/reports/fleet-1.0.0/pi-1.json"] = json.dumps({**forged, "commit": "0" * 40}).encode()
    assert agent(fleet, reports, host="pi-2", wave=1, delays="0,0")["result"] == "held"
    assert runs(fleet) == 0
    # What the stand-in server enforces, as fleet_repo's nginx does (tests/lab/pull checks nginx).
    url = reports + "/fleet-1.0.0/pi-1.json"
    for credential, code in ((None, "403"), (f"pi-3:{PASSWORDS['pi-3']}", "403"), ("pi-1:guess", "401")):
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--data", "{}", url]
        assert sh(*curl, *(["-u", credential] if credential else [])) == code
    assert report(Reports.store, "fleet-1.0.0", "pi-1")["commit"] == "0" * 40

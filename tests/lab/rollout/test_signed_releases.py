"""Signed releases on a lab Pi (after test_rollout.py: both Pis serve release C, lab-C). Each bad
release is refused with the reason named, the host keeps serving C, and nothing on it changed:
refused by the role before anything is written (unsigned, unknown key, expired key, revoked key,
manifest edited after signing, model edited after signing, and an older release validly signed:
the rollback attack, tests/unit/attacks/test_push.py has the others; checked together for
changes), or by
the running sidecar's check of the candidate (golden windows not reproduced, wrong output shape),
after which the role restores the pointer and removes the folder it placed. Only the sidecar_stack
role runs (--tags), to keep the lab stage short; the canary case runs the fleet playbook with
its batches."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from labplay import LAB, PIS, BadRuns, host, play, refused_runs, release, smoke, snapshot

pytestmark = pytest.mark.timeout(1800)
HOST = PIS[0]
SIGNERS = (LAB / "allowed_signers").read_text().strip() if (LAB / "allowed_signers").exists() else ""


@pytest.fixture(scope="module")
def pi() -> Any:
    built = play("lab/playbooks/releases.yml")
    assert built.rc == 0, built.out[-3000:]
    return host(HOST)


def state(pi: Any) -> dict[str, str]:
    """What a refused release must leave as it was (contents; the pointer may be rewritten)."""
    return {
        "release.json": pi.file("/opt/hailo-sidecar/release.json").content_string,
        "current.json": pi.file("/opt/hailo-sidecar/models/current.json").content_string,
        ".env": pi.file("/opt/hailo-sidecar/.env").content_string,
        "models": pi.check_output("ls /opt/hailo-sidecar/models"),
    }


def deploy(source: Path, **extra: Any) -> Any:
    extra = {"sidecar_stack_release_dir": str(source), "pi_rollout_batches": ["100%"], **extra}
    return play("playbooks/pi.yml", "--limit", HOST, "--tags", "sidecar_stack", extra=extra)


def variant(tmp_path: Path, version: str = "1.2.0") -> Path:
    d = tmp_path / version
    shutil.copytree(release(version), d)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def resign_with_another_key(d: Path, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (d / "manifest.json.sig").unlink()
    subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", "hailo-pipeline-release",
                    str(d / "manifest.json")], check=True)  # fmt: skip


def edit_manifest(d: Path) -> None:
    m = json.loads((d / "manifest.json").read_text())
    m["config_version"] = "lab-X"
    (d / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def edit_hef(d: Path) -> None:
    (d / "model.hef").write_bytes((d / "model.hef").read_bytes() + b"\0")


def older(d: Path) -> None:
    """GPUSrv's first release (1.0.0, signed by its key, valid now) in place of C (1.2.0)."""
    shutil.rmtree(d)
    shutil.copytree(release("1.0.0"), d)


PUBLIC = " ".join(SIGNERS.split()[2:4])
CASES = {
    "unsigned": (lambda d, t: (d / "manifest.json.sig").unlink(), {}, "is unsigned (no manifest.json.sig)"),
    "unknown key": (resign_with_another_key, {}, "signed by a key that is not in the allowed signers"),
    "expired key": (
        None,
        {
            "sidecar_stack_allowed_signers": SIGNERS.replace(
                'namespaces="hailo-pipeline-release"',
                'namespaces="hailo-pipeline-release",valid-before="20240101"',
            )
        },
        # Refused in preflight, before the verifier: at the host's (right) time no release key is valid.
        "no release key is valid",
    ),
    "revoked key": (None, {"sidecar_stack_revoked_keys": PUBLIC}, "with a revoked key"),
    "manifest edited": (lambda d, t: edit_manifest(d), {}, "manifest.json was changed after signing"),
    "model.hef edited": (lambda d, t: edit_hef(d), {}, "the release is damaged or was modified"),
    "older release, validly signed": (
        lambda d, t: older(d),
        {},
        "imu-encoder 1.0.0 is older than 1.2.0, which this host serves",
    ),
}


@pytest.fixture(scope="module")
def refused(pi: Any, tmp_path_factory: pytest.TempPathFactory) -> BadRuns:
    """Every bad release of CASES deployed to the Pi, one after another (labplay.refused_runs; three
    at a time once failed the manifest-edited case, not yet understood); what changed counts the
    contents of state() too."""
    sources = {}
    for case, (edit, _, _) in CASES.items():
        tmp = tmp_path_factory.mktemp(case.replace(" ", "-"))
        sources[case] = variant(tmp)
        if edit is not None:
            edit(sources[case], tmp)
    # The expired and revoked cases redeploy C itself: its folder is in place, and is checked again.
    files = state(pi)
    result = refused_runs(pi, {c: partial(deploy, sources[c], **CASES[c][1]) for c in CASES}, workers=1)
    files_after = state(pi)
    return result._replace(changed=result.changed + [n for n in files if files[n] != files_after[n]])


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_signature_is_refused_before_anything_is_written(refused: BadRuns, case: str) -> None:
    run = refused.runs[case]
    assert run.rc != 0, run.out[-3000:]
    assert CASES[case][2] in run.text, run.out[-3000:]
    # Refused by the verifier on the Pi (the others in preflight: unsigned, expired key, model.hef edited).
    if case in ("unknown key", "revoked key", "manifest edited", "older release, validly signed"):
        # The failure the play ends with (and the summary) names the verifier's reason, whatever
        # the connection did with the script's output (tests/unit/test_release_refusal_text.py).
        refusals = [part.split(" Deploy a release")[0] for part in run.text.split(f"refused on {HOST}: ")[1:]]
        assert refusals and all(CASES[case][2] in r for r in refusals), refusals


def test_the_refused_releases_changed_nothing_on_the_host(pi: Any, refused: BadRuns) -> None:
    assert refused.changed == [], "the host changed"
    assert "smoke: 5 passed" in smoke(pi, "1.2.0", "lab-C")


@pytest.mark.parametrize(
    ("version", "message"),
    # No apostrophe in the text: Ansible's YAML output doubles it ("release''s").
    [("1.3.0", "8 golden windows: cosine"), ("1.4.0", "motif_scores has shape")],
    ids=["golden windows", "output shape"],
)
def test_a_candidate_the_sidecar_refuses_changes_nothing(pi: Any, version: str, message: str) -> None:
    files = state(pi)
    run = deploy(release(version))
    assert run.rc != 0, run.out[-3000:]
    assert "release refused by the sidecar" in run.text and message in run.text, run.out[-3000:]
    assert "Rolled back to lab-C" in run.text
    assert state(pi) == files, "the pointer, record, settings and release folders are as before"
    health = json.loads(pi.check_output("curl -fsS http://127.0.0.1:9000/healthz"))
    assert health["config_version"] == "lab-C" and health["candidate"]["state"] in ("refused", "active")


def test_the_fleet_refuses_a_tampered_release_at_the_canary(
    pi: Any, tmp_path: Path, installed_playbooks: Path
) -> None:
    """The whole fleet playbook (canary first): a manifest edited after signing stops the rollout at
    the canary, which is untouched, and the other Pi is never reached."""
    d = variant(tmp_path)
    edit_manifest(d)
    hosts = {name: host(name) for name in PIS}
    before = {name: (snapshot(h), state(h)) for name, h in hosts.items()}
    report = LAB / "rollout-tampered.json"
    run = play(installed_playbooks / "pi.yml", "--tags", "sidecar_stack",
               extra={"sidecar_stack_release_dir": str(d), "pi_rollout_report": str(report)})  # fmt: skip
    assert run.rc != 0
    summary = json.loads(report.read_text())
    assert sum(1 for h in PIS if summary[h]["reached"]) == 1, "only the canary may be touched"
    assert "manifest.json was changed after signing" in run.text
    for name, h in hosts.items():
        assert (snapshot(h), state(h)) == before[name], f"{name} changed"

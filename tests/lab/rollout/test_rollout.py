"""Canary rollout with automatic rollback on the lab's two Pis (make lab put both on GPUSrv's
release, config lab-1). Release B fails its smoke (its motif scores leave [0, 1]): the rollout
stops after the canary, which is back on lab-1 and serving, and the other Pi never sees B.
Release C then reaches both. The releases come from lab/playbooks/releases.yml; the playbook is
the installed collection's (tests/lab/conftest.py), with the default batches (canary, 25 %, the rest),
and runs the release's role only (--tags sidecar_stack)."""

from __future__ import annotations

import json

import pytest
import yaml
from labplay import (
    ALERTMANAGER,
    LAB,
    PIS,
    ROOT,
    alert,
    api,
    firing,
    host,
    image_record,
    play,
    release,
    smoke,
    until,
)

# A rollout over the batches under QEMU takes minutes (the playbook bounds every wait itself).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def fleet(installed_playbooks):
    built = play("lab/playbooks/releases.yml")
    assert built.rc == 0, built.out[-3000:]
    return {name: host(name) for name in PIS}


def seconds(duration: str) -> int:
    """A Prometheus duration of one unit (15s, 2m, 1h) in seconds."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def drift_delay() -> int:
    """How long HailoFleetDrift may take at most once a host stops serving a release: the
    monitoring role's gap (roles/monitoring/vars/main.yml) and the lab's drift `for:`."""
    role = yaml.safe_load((ROOT / "roles" / "monitoring" / "vars" / "main.yml").read_text())
    lab = yaml.safe_load((ROOT / "lab" / "inventory" / "group_vars" / "gpusrv.yml").read_text())
    return seconds(role["_monitoring_gap"]) + seconds(lab["monitoring_for"]["drift"])


def record(h) -> dict:
    return json.loads(h.file("/opt/hailo-sidecar/release.json").content_string)


def rollout(installed_playbooks, version: str, name: str):
    report = LAB / f"rollout-{name}.json"
    # The release's role only (its batches, smoke and rollback are the play's and the role's);
    # the other roles have nothing to do here, and `make lab` ran them from the same tarball.
    run = play(installed_playbooks / "pi.yml", "--tags", "sidecar_stack",
               extra={"sidecar_stack_release_dir": str(release(version)),
                      "pi_rollout_report": str(report)})  # fmt: skip
    print(f"rollout of {name}: {run.seconds:.0f} s")
    return run, json.loads(report.read_text())


def test_every_pi_starts_on_gpusrvs_release(fleet):
    for h in fleet.values():
        assert record(h)["current"]["config_version"] == "lab-1"
        assert record(h)["current"]["image"] == image_record()["ref"]


def test_failing_release_stops_at_the_canary_and_rolls_it_back(fleet, installed_playbooks):
    run, report = rollout(installed_playbooks, "1.1.0", "B")
    assert run.rc != 0, "a release that fails its smoke must fail the rollout"
    reached = [h for h in PIS if report[h]["reached"]]
    assert len(reached) == 1, f"only the canary may be touched, reached: {reached}"
    canary = reached[0]
    result = report[canary]["result"]
    assert result["rolled_back"] is True and result["healthy"] is True
    assert result["failed_release"]["config_version"] == "lab-B"
    assert result["release"]["config_version"] == "lab-1"
    assert "motif score outside [0, 1]" in run.text, "the smoke's failure reaches the output"
    assert f"Release lab-B ({image_record()['ref']}) failed on {canary}" in run.text
    assert ("Rolled back to lab-1, which passes the smoke again (the last good state put back: "
            "release lab-B -> lab-1)") in run.text  # fmt: skip
    # The summary lists every host.
    assert (
        f"{canary}: rolled back from lab-B (put back: release lab-B -> lab-1), healthy; config lab-1"
        in run.text
    )
    (other,) = set(PIS) - {canary}
    assert f"{other}: not reached" in run.text
    # The canary serves lab-1 again; its record still says lab-1 (B never became its release).
    h = fleet[canary]
    assert record(h)["current"]["config_version"] == "lab-1"
    assert "smoke: 5 passed" in smoke(h, "1.0.0", "lab-1")
    # B's folder, placed on the canary by this run, went again with the rollback.
    assert not h.run("ls -d /opt/hailo-sidecar/models/imu-encoder-1.1.0-*").stdout
    # The other never saw B: no B model folder, pointer and record untouched.
    o = fleet[other]
    assert not o.run("ls -d /opt/hailo-sidecar/models/imu-encoder-1.1.0-*").stdout
    assert (
        json.loads(o.file("/opt/hailo-sidecar/models/current.json").content_string)["config_version"]
        == "lab-1"
    )
    assert record(o)["current"]["config_version"] == "lab-1"
    # The fleet's monitoring: the canary must serve B (its desired.json, written before the
    # deploy) and serves lab-1: drift, against the release it was given (Alertmanager keeps it to
    # itself while HailoRolloutFailed says why). The other was never given B: no drift.
    # The canary served B for a moment (swapped in, then its smoke failed): the rule's `unless ...
    # last_over_time(hailo_sidecar_release_info[gap])` holds the drift back for the monitoring
    # role's gap after B's last scrape, then the lab's `for:`. A fast rollout (under Mitogen the
    # rollout of B takes about 35 s) leaves the test all of that to wait.
    drift = until(f"HailoFleetDrift firing for {canary}",
                  lambda: firing("HailoFleetDrift", canary) and alert("HailoFleetDrift", canary),
                  drift_delay() + 60)  # fmt: skip
    assert (drift["labels"]["version"], drift["labels"]["config_version"]) == ("1.1.0", "lab-B")
    assert "serves imu-encoder 1.0.0 (config lab-1)" in drift["annotations"]["summary"]
    assert until(f"HailoRolloutFailed firing for {canary}", lambda: firing("HailoRolloutFailed", canary))

    def silenced() -> bool:
        found = [a for a in api(f"{ALERTMANAGER}/api/v2/alerts?filter=alertname%3D%22HailoFleetDrift%22")
                 if a["labels"]["host"] == canary]  # fmt: skip
        return bool(found) and found[0]["status"]["state"] == "suppressed"

    until("the canary's drift silenced by its failed rollout", silenced)
    assert alert("HailoFleetDrift", other) is None


def test_good_release_reaches_every_pi(fleet, installed_playbooks):
    run, report = rollout(installed_playbooks, "1.2.0", "C")
    assert run.rc == 0, run.out[-4000:]
    for name, h in fleet.items():
        assert report[name]["reached"] and report[name]["result"]["healthy"] is True
        rec = record(h)
        assert rec["current"]["config_version"] == "lab-C"
        assert rec["previous"]["config_version"] == "lab-1", "lab-1 is kept for the next rollback"
        assert "smoke: 5 passed" in smoke(h, "1.2.0", "lab-C")
        # Same image, another model and config: swapped into the running sidecar.
        assert report[name]["result"]["path"] == "swap"
        assert f"{name}: deployed (swap), healthy; config lab-C" in run.text
    # The canary caught up with the release it must serve: its drift clears; none on the other.
    until("HailoFleetDrift cleared on every Pi", lambda: not [p for p in PIS if alert("HailoFleetDrift", p)])

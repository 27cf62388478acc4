"""Canary rollout with automatic rollback on a fleet of three simulated Pis (converge put all of
them on release A). Release B fails its smoke (its motif scores leave [0, 1]): the rollout stops
after the canary, which is back on A and serving, and the two others never see B. Release C then
reaches all three. The tests run in order, once (from fleet-1's verify), over all three hosts."""

from __future__ import annotations

import json

import pytest
import testinfra
from labplay import EPHEMERAL, image, play, smoke

# A rollout over three batches under QEMU takes minutes (the playbook bounds every wait itself).
pytestmark = pytest.mark.timeout(1800)

HOSTS = ["fleet-1", "fleet-2", "fleet-3"]
TIMES = EPHEMERAL / "rollout-times.json"


@pytest.fixture(scope="module")
def fleet(host):
    if host.backend.get_hostname() != HOSTS[0]:
        pytest.skip("the rollout tests run once, from the first host's verify")
    return {name: testinfra.get_host(f"docker://{name}") for name in HOSTS}


def record(h) -> dict:
    return json.loads(h.file("/opt/hailo-sidecar/release.json").content_string)


def rollout(version: str, name: str):
    report = EPHEMERAL / f"rollout-{name}.json"
    run = play("playbooks/pi.yml", extra={"lab_release_version": version, "pi_rollout_report": str(report)})
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    TIMES.write_text(json.dumps({**times, name: round(run.seconds, 1)}))
    print(f"rollout of {name}: {run.seconds:.0f} s")
    return run, json.loads(report.read_text())


def test_every_host_starts_on_release_a(fleet):
    for h in fleet.values():
        assert record(h)["current"]["config_version"] == "lab-A"
        assert record(h)["current"]["image"] == image()


def test_failing_release_stops_at_the_canary_and_rolls_it_back(fleet):
    run, report = rollout("1.1.0", "B")
    assert run.rc != 0, "a release that fails its smoke must fail the rollout"
    reached = [h for h in HOSTS if report[h]["reached"]]
    assert len(reached) == 1, f"only the canary may be touched, reached: {reached}"
    canary = reached[0]
    result = report[canary]["result"]
    assert result["rolled_back"] is True and result["healthy"] is True
    assert result["failed_release"]["config_version"] == "lab-B"
    assert result["release"]["config_version"] == "lab-A"
    assert "motif score outside [0, 1]" in run.text, "the smoke's failure reaches the output"
    assert f"Release lab-B ({image()}) failed on {canary}" in run.text
    assert "Rolled back to lab-A, which passes the smoke again" in run.text
    # The summary lists every host.
    assert f"{canary}: rolled back from lab-B, healthy; config lab-A" in run.text
    for other in set(HOSTS) - {canary}:
        assert f"{other}: not reached" in run.text
    # The canary serves A again; its record still says A (B never became its release).
    h = fleet[canary]
    assert record(h)["current"]["config_version"] == "lab-A"
    assert "smoke: 5 passed" in smoke(h, "1.0.0", "lab-A")
    # The others never saw B: no B model folder, .env and record untouched.
    for other in set(HOSTS) - {canary}:
        o = fleet[other]
        assert not o.run("ls -d /opt/hailo-sidecar/models/imu-encoder-1.1.0-*").stdout
        assert "CONFIG_VERSION=lab-A" in o.file("/opt/hailo-sidecar/.env").content_string
        assert record(o)["current"]["config_version"] == "lab-A"


def test_good_release_reaches_every_host(fleet):
    run, report = rollout("1.2.0", "C")
    assert run.rc == 0, run.out[-4000:]
    for name, h in fleet.items():
        assert report[name]["reached"] and report[name]["result"]["healthy"] is True
        rec = record(h)
        assert rec["current"]["config_version"] == "lab-C"
        assert rec["previous"]["config_version"] == "lab-A", "A is kept for the next rollback"
        assert "smoke: 5 passed" in smoke(h, "1.2.0", "lab-C")
        assert f"{name}: deployed, healthy; config lab-C" in run.text

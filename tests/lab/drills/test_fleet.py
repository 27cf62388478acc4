"""Faults of a rollout over both lab Pis: a Pi that drops off the network in the middle of its
batch, a first deploy that does not come up on a bare Pi, and the registry down during an image
change. In this order, each starting where the one before left the Pis (four runs of pi.yml in
all): the run the network drill cuts gives the canary release D; the first deploy's good run is
also the later run that converges the Pi that dropped off (both then serve D on the lab's image);
the registry drill changes the image of that state.

The registry: lab-pi-trixie (the canary, first in the inventory) reaches the lab registry through
its forward on 127.0.0.1:5000 (lab/playbooks/tasks/registry-forward.yml); the drill stops that
forward, so its Docker finds nothing listening, as when the registry is down.

The network: lab-pi-bookworm is reached over SSH for that run (its sshd, the lab network) instead
of `docker exec`, and the drill disconnects it from the lab network in the middle of its tasks:
the controller loses it as it would a Pi on a dropped link (SSH's keepalive gives up, Ansible
calls it unreachable), while the Pi keeps running and serving its own clients. The link drops when
the rollout play starts the role on it, before the release lock: a Pi lost while it holds the lock
(from the look for the release folder to its rename) keeps it until it is stale, and the next run
waits for that, 15 minutes at most (docs/reliability.md); the drill does not wait for it. Not
faithful: the link drops at once (no flapping, no packet loss before it)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from drill import PORTS, Load, complete_release, note, play_at
from labplay import LAB, PIS, host, image_record, play

pytestmark = pytest.mark.timeout(2400)
CANARY, OTHER = PIS  # the inventory's order: the canary batch takes lab-pi-trixie
FORWARD = "lab-registry-forward.service"


def serves(name: str) -> tuple[str, str]:
    h = complete_release(name)
    image = host(name).check_output(
        "docker inspect --format '{{.Config.Image}}' hailo-hailo-inference-onnx-1"
    )
    return h["release"]["config_version"], image


@pytest.fixture
def over_ssh(tmp_path: Path):
    """An inventory next to the lab's that reaches OTHER over SSH on the lab network (its sshd,
    a key made here), with SSH's keepalive of a site that wants a dropped Pi found in seconds."""
    pi = host(OTHER)
    if pi.run("test -x /usr/sbin/sshd").rc != 0:
        pi.run_expect(
            [0],
            "apt-get install -y --no-install-recommends openssh-server || "
            "(apt-get update && apt-get install -y --no-install-recommends openssh-server)",
        )
    pi.run_expect([0], "systemctl start ssh")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    pi.run_expect([0], f"install -d -m 0700 /root/.ssh && echo '{pub}' >> /root/.ssh/authorized_keys")
    ip = '{{(index .NetworkSettings.Networks "hailo-lab").IPAddress}}'
    address = subprocess.run(["docker", "inspect", "--format", ip, OTHER], check=True, capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
    overlay = LAB / "drill-ssh.yml"
    overlay.write_text(yaml.safe_dump({"all": {"children": {"pi": {"hosts": {OTHER: {
        "ansible_connection": "ssh", "ansible_host": address, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=2",
    }}}}}}))  # fmt: skip
    yield overlay
    subprocess.run(
        ["docker", "network", "connect", "--alias", OTHER, "hailo-lab", OTHER], capture_output=True
    )
    pi.run(f"sed -i '\\#{pub}#d' /root/.ssh/authorized_keys")


def test_a_pi_dropping_off_the_network_in_its_batch(over_ssh, releases, timed):
    """Both Pis in one batch (pi_rollout_batches [2]), release D with the lab's image: OTHER drops
    off as the role starts on it. The rollout follows max_fail_percentage 0: the batch ends, no
    later one starts, the summary (printed by the Pi that stayed) names OTHER unreachable; OTHER
    keeps serving its own clients. The later run that converges it is the first deploy's good run
    (test_a_first_deploy_that_does_not_come_up_stops_the_stack)."""
    d = {"sidecar_stack_release_dir": str(releases["1.5.0"]), "sidecar_stack_image": image_record()["ref"],
         "pi_rollout_batches": [2]}  # fmt: skip
    report = LAB / "drill-unreachable.json"
    before = serves(OTHER)
    cut = lambda: subprocess.run(["docker", "network", "disconnect", "hailo-lab", OTHER], check=True)  # noqa: E731
    run, dropped = play_at("playbooks/pi.yml", "Create the stack folder", cut, "-i", str(over_ssh),
                           "--tags", "sidecar_stack",
                           extra={**d, "pi_rollout_report": str(report)})  # fmt: skip
    assert dropped, run.out[-3000:]
    pi = host(OTHER)
    local = pi.run("curl -fsS http://127.0.0.1:9000/readyz")
    lock = pi.run("cat /run/hailo-release.lock")
    subprocess.run(["docker", "network", "connect", "--alias", OTHER, "hailo-lab", OTHER], check=True)
    assert run.rc != 0
    assert run.stats[OTHER]["unreachable"] == 1, run.out[-3000:]
    assert f"{OTHER}: UNREACHABLE during this run" in run.text
    summary = json.loads(report.read_text())
    assert summary[OTHER]["unreachable"] and summary[CANARY]["result"]["healthy"]
    assert serves(CANARY) == ("lab-D", image_record()["ref"])
    assert local.rc == 0 and '"ready":true' in local.stdout, "off the network, the Pi stopped serving locally"
    assert lock.rc != 0, f"the drill cut {OTHER} while it held the release lock: {lock.stdout}"
    assert serves(OTHER) == before, "the Pi that dropped off changed"
    note("a Pi drops off the network in its batch", outcome="unreachable in the summary, serving locally",
         run_s=round(run.seconds))  # fmt: skip


def test_a_first_deploy_that_does_not_come_up_stops_the_stack(releases, timed):
    """lab-pi-trixie made bare of its stack (as before its first deploy), then given a release
    with a memory limit the sidecar cannot start in: nothing to go back to, so the stack is
    stopped and the play says so. The next run, with a working limit and over both Pis, deploys
    it and converges lab-pi-bookworm, which dropped off the network in the drill before."""
    pi = host(CANARY)
    pi.run_expect(
        [0], "docker compose --project-directory /opt/hailo-sidecar -p hailo --profile onnx down --timeout 40"
    )
    pi.run_expect([0], "rm -rf /opt/hailo-sidecar /etc/ansible/facts.d/hailo_sidecar.fact")
    d = {"sidecar_stack_release_dir": str(releases["1.5.0"]), "sidecar_stack_image": image_record()["ref"]}
    bad = play("playbooks/pi.yml", "--limit", CANARY, "--tags", "sidecar_stack",
               extra={**d, "sidecar_stack_mem_limit": "24m"})  # fmt: skip
    assert bad.rc != 0
    assert f"No rollback: nothing ran on {CANARY} before this change" in bad.text, bad.text[-3000:]
    assert "so the stack was stopped (docker compose down)" in bad.text
    assert pi.check_output("docker ps --all --quiet --filter label=com.docker.compose.project=hailo") == ""
    assert not pi.file("/opt/hailo-sidecar/last-good.json").exists
    t0 = time.monotonic()
    with Load(PORTS[OTHER]) as load:
        good = play("playbooks/pi.yml", "--tags", "sidecar_stack", extra=d)
    assert good.rc == 0, good.out[-3000:]
    assert {n: serves(n) for n in PIS} == {n: ("lab-D", image_record()["ref"]) for n in PIS}
    assert pi.file("/opt/hailo-sidecar/last-good.json").exists
    note("a first deploy that does not come up", outcome="stack stopped, said so; next run deploys",
         bad_s=round(bad.seconds), good_s=round(good.seconds))  # fmt: skip
    note("a Pi drops off the network in its batch", outcome="converged by the next run",
         converge_s=round(time.monotonic() - t0), **load.figures())  # fmt: skip


def test_registry_down_during_an_image_change_stops_at_the_canary(releases, drill_image, timed):
    """Both Pis serve release D on the lab's image (the drills before): the same release on another
    image. The release is the one the Pis serve, so the canary gets as far as the pull (an older
    one, the inventory's 1.0.0, would be refused before it: "is older than")."""
    before = {n: serves(n) for n in PIS}
    assert before[CANARY][1] != drill_image, "the canary must have to pull the image"
    canary = host(CANARY)
    report = LAB / "drill-registry.json"
    canary.run_expect([0], f"systemctl stop {FORWARD}")
    try:
        with Load(PORTS[CANARY]) as load:
            run = play("playbooks/pi.yml", "--tags", "sidecar_stack",
                       extra={"sidecar_stack_release_dir": str(releases["1.5.0"]),
                              "sidecar_stack_image": drill_image,
                              "pi_rollout_report": str(report)})  # fmt: skip
    finally:
        canary.run_expect([0], f"systemctl start {FORWARD}")
    assert run.rc != 0
    assert f"Could not pull {drill_image} on {CANARY} from the registry 127.0.0.1:5000" in run.text, run.text[
        -3000:
    ]
    assert (
        "connection refused" in run.text
        and "Nothing was changed: the running stack keeps serving" in run.text
    )
    summary = json.loads(report.read_text())
    assert summary[CANARY]["reached"] and "Could not pull" in summary[CANARY]["error"]
    assert not summary[OTHER]["reached"], "the next batch started"
    assert f"{OTHER}: not reached" in run.text
    assert {n: serves(n) for n in PIS} == before
    assert load.failed == 0, "the canary's sidecar stopped serving"
    note("registry down during an image change",
         outcome="the canary failed before any change, the next batch not started",
         **load.figures())  # fmt: skip

"""Pull mode in the lab (roles/pull_agent, roles/fleet_repo): lab-gpusrv serves the fleet
repository, lab-pi-trixie's agent fetches it and runs pi.yml on itself. The repository is what an
operator keeps: the collection (from its tarball), the collections it needs, the site's inventory
and a release; it is pushed to GPUSrv over `docker exec` (production: SSH). The agent applies a
tag signed by the allowed key, refuses an unsigned tag and a tag older than the one it applied, and
each outcome reaches the fleet's reports and the lab's Prometheus (the hailo collector reads the
agent's rollout file)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ansible
import pytest
import yaml
from labplay import GPUSRV, LAB, ROOT, STACK, host, play, release, smoke

PI = "lab-pi-trixie"
REMOTE = "ext::docker exec -i lab-gpusrv %S /srv/hailo-fleet/fleet.git"
PROM = "http://127.0.0.1:9090"
# A run that applies a tag runs pi.yml on the Pi (its sidecar under QEMU).
pytestmark = pytest.mark.timeout(1800)


def sh(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    return sh("git", "-c", "protocol.ext.allow=always", *args, cwd=repo)


def pi_vars() -> list[str]:
    """The vars the lab gives lab-pi-trixie (its group's and its own), the lab's own left out."""
    inv = ROOT / "lab" / "inventory"
    files = [inv / "group_vars" / "all.yml", inv / "group_vars" / "pi.yml", inv / "host_vars" / f"{PI}.yml"]
    return sorted({k for f in files for k in yaml.safe_load(f.read_text()) if not k.startswith("lab_")})


@pytest.fixture(scope="module")
def fleet() -> dict[str, Path]:
    """The operator's fleet repository (a clone of the collection with the site's inventory), its
    tag-signing key, and GPUSrv's repository and the Pi's agent, set up by lab/playbooks/pull.yml."""
    work = LAB / "pull"
    shutil.rmtree(work, ignore_errors=True)
    repo = work / "repo"
    # The collection as Galaxy users get it, installed from the tarball.
    galaxy = work / "galaxy"
    bin_dir = Path(sys.executable).parent
    sh(str(bin_dir / "ansible-galaxy"), "collection", "build", "--output-path", str(galaxy), str(ROOT))
    # --force: without it, ansible-galaxy installs nothing when the collection is already in a
    # configured collections path (an earlier `make lab --installed`).
    sh(str(bin_dir / "ansible-galaxy"), "collection", "install", "--force", "--no-deps",
       "-p", str(galaxy / "c"), *map(str, galaxy.glob("*.tar.gz")))  # fmt: skip
    shutil.copytree(galaxy / "c" / "ansible_collections" / "synchrony" / "hailo_pipeline", repo)
    # The collections it uses, vendored (ansible-galaxy collection install -p collections).
    vendored = Path(ansible.__file__).parents[1] / "ansible_collections" / "community"
    for name in ("docker", "crypto"):
        shutil.copytree(vendored / name, repo / "collections" / "ansible_collections" / "community" / name)
    shutil.copytree(release("1.0.0"), repo / "releases" / "imu-encoder" / "1.0.0")
    (repo / "site" / "host_vars").mkdir(parents=True)
    (repo / "site" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"pi": {"hosts": {PI: {}}}}}})
    )
    key = work / "fleet-key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-release", "-f", str(key))
    signers = f'fleet-release namespaces="git" {key.with_suffix(".pub").read_text().strip()}'
    extra = {
        "lab_pull_keys": pi_vars(),
        "lab_pull_site": str(repo / "site"),
        "lab_pull_allowed_signers": signers,
    }
    run = play("lab/playbooks/pull.yml", extra=extra)
    assert run.rc == 0, run.out[-4000:]
    # The release travels in the repository: its path is relative to the checkout on the Pi.
    host_vars = repo / "site" / "host_vars" / f"{PI}.yml"
    values = yaml.safe_load(host_vars.read_text())
    values["sidecar_stack_release_dir"] = "{{ inventory_dir }}/../releases/imu-encoder/1.0.0"
    # A setting of the site's own that no earlier stage gives the Pi: the tag's run changes the Pi
    # whatever the rollouts before left on it (the same release alone may already be in place).
    values["sidecar_stack_mem_limit"] = "510m"
    host_vars.write_text(yaml.safe_dump(values))
    git(repo, "init", "-q", "-b", "main")
    for name, value in {"user.name": "release manager", "user.email": "release@lab.internal",
                        "gpg.format": "ssh", "user.signingkey": str(key)}.items():  # fmt: skip
        git(repo, "config", name, value)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fleet: the lab's site, release 1.0.0")
    return {"repo": repo, "work": work}


def tag(fleet: dict[str, Path], name: str, signed: bool = True) -> None:
    git(fleet["repo"], "tag", "-s" if signed else "-a", "-m", name, name)
    git(fleet["repo"], "push", "-q", REMOTE, "main", name)


def pull(pi: Any) -> dict[str, Any]:
    """One run of the agent's service (as its timer starts it); the outcome it recorded."""
    deadline = time.monotonic() + 600
    while pi.run("systemctl is-active hailo-pull.service").stdout.strip() == "activating":
        assert time.monotonic() < deadline, "a timer-started run did not end"
        time.sleep(2)
    started = pi.run("systemctl start hailo-pull.service")
    log = pi.run("journalctl -u hailo-pull.service -n 40 --no-pager").stdout
    assert started.rc == 0, started.stderr + log
    outcome: dict[str, Any] = json.loads(pi.file("/var/lib/hailo-pipeline/rollout.json").content_string)
    return outcome


def report(tag_name: str) -> dict[str, Any]:
    """The outcome the agent sent to the fleet's reports on GPUSrv."""
    out = host(GPUSRV).check_output(f"curl -fsS http://127.0.0.1:8082/reports/{tag_name}/{PI}.json")
    data: dict[str, Any] = json.loads(out)
    return data


def seen_by_prometheus(result: str, since: float) -> None:
    """Prometheus (lab-gpusrv) reports RESULT as the Pi's last rollout, recorded after SINCE."""
    gpusrv = host(GPUSRV)
    query = (
        f'hailo_host_rollout_timestamp_seconds{{host="{PI}"}}'
        f' and on(instance) hailo_host_rollout_result{{result="{result}"}}'
    )
    deadline = time.monotonic() + 120
    while True:
        found = json.loads(
            gpusrv.check_output(f"curl -fsS -G '{PROM}/api/v1/query' --data-urlencode 'query={query}'")
        )
        values = [float(r["value"][1]) for r in found["data"]["result"]]
        if any(v >= since for v in values):
            return
        assert time.monotonic() < deadline, (
            f"Prometheus has no {result} rollout of {PI} since {since}: {found}"
        )
        time.sleep(3)


def test_a_signed_tag_is_applied_and_reported(fleet: dict[str, Path]) -> None:
    pi = host(PI)
    since = time.time() - 1
    tag(fleet, "fleet-1.0.0")
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("deployed", "fleet-1.0.0"), outcome
    assert outcome["changed"] > 0 and outcome["commit"] == git(fleet["repo"], "rev-parse", "HEAD").strip()
    # pi.yml ran on the Pi: it serves the tag's release.
    assert "smoke: 5 passed" in smoke(pi, "1.0.0", "lab-1")
    container = pi.check_output(f"{STACK} ps -q hailo-inference-onnx")
    memory = pi.check_output(f"docker inspect -f '{{{{.HostConfig.Memory}}}}' {container}")
    assert memory == str(510 * 2**20), "the site's own setting (sidecar_stack_mem_limit 510m) is applied"
    assert report("fleet-1.0.0")["result"] == "deployed"
    seen_by_prometheus("deployed", since)


def test_an_unsigned_tag_is_refused_and_reported(fleet: dict[str, Path]) -> None:
    pi = host(PI)
    since = time.time() - 1
    tag(fleet, "fleet-1.1.0", signed=False)
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("refused", "fleet-1.1.0"), outcome
    assert "not signed by an allowed key" in outcome["reason"]
    assert report("fleet-1.1.0")["result"] == "refused"
    assert "smoke: 5 passed" in smoke(pi, "1.0.0", "lab-1"), "the applied release keeps serving"
    seen_by_prometheus("refused", since)
    # On call sees it: the alert on the host's last rollout fires (the lab's `for:` is 10 s).
    expected = {"alertname": "HailoRolloutFailed", "host": PI, "result": "refused", "state": "firing"}
    deadline = time.monotonic() + 120
    while True:
        alerts = json.loads(host(GPUSRV).check_output(f"curl -fsS {PROM}/api/v1/alerts"))["data"]["alerts"]
        if any(expected.items() <= {**a["labels"], "state": a["state"]}.items() for a in alerts):
            break
        assert time.monotonic() < deadline, f"HailoRolloutFailed did not fire for the refused tag: {alerts}"
        time.sleep(3)


def test_a_tag_older_than_the_applied_one_is_refused(fleet: dict[str, Path]) -> None:
    """Someone who can write the repository removes the newer tags and pushes an old one (signed,
    with the allowed key): the agent does not go back."""
    pi = host(PI)
    git(fleet["repo"], "push", "-q", REMOTE, ":refs/tags/fleet-1.1.0", ":refs/tags/fleet-1.0.0")
    git(fleet["repo"], "tag", "-s", "-m", "fleet-0.9.0", "fleet-0.9.0", "HEAD")
    git(fleet["repo"], "push", "-q", REMOTE, "fleet-0.9.0")
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("refused", "fleet-0.9.0"), outcome
    assert "older than fleet-1.0.0" in outcome["reason"]
    assert report("fleet-0.9.0")["result"] == "refused"

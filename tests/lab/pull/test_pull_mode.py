"""Pull mode in the lab (roles/pull_agent, roles/fleet_repo): lab-gpusrv serves the fleet
repository, lab-pi-trixie's agent fetches it and runs pi.yml on itself. The repository is what an
operator keeps: the collection (from its tarball), the collections it needs, the site's inventory
and a release; it is pushed to GPUSrv over `docker exec` (production: SSH). The agent applies a
tag signed by the allowed key, refuses an unsigned tag and an old signed tag pushed again under a
new name (the rollback attack; tests/unit/attacks/test_pull.py has the others), and each outcome
reaches the fleet's reports, which nginx takes from each host with its own credential only, and
the lab's Prometheus (the hailo collector reads the agent's rollout file)."""

from __future__ import annotations

import importlib.util
import json
import secrets
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
# The release the fleet repository carries: the newest the rollout stage left on the Pis (a pull
# never deploys an older release than the one a Pi serves).
RELEASE = "1.2.0"
_spec = importlib.util.spec_from_file_location("fleet_filters", ROOT / "plugins" / "filter" / "fleet.py")
assert _spec and _spec.loader
fleet_filters: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet_filters)
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
def fleet() -> dict[str, Any]:
    """The operator's fleet repository (a clone of the collection with the site's inventory), its
    tag-signing key, and GPUSrv's repository and the Pi's agent, set up by lab/playbooks/pull.yml."""
    work = LAB / "pull"
    shutil.rmtree(work, ignore_errors=True)
    built = play("lab/playbooks/releases.yml")
    assert built.rc == 0, built.out[-3000:]
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
    shutil.copytree(release(RELEASE), repo / "releases" / "imu-encoder" / RELEASE)
    (repo / "site" / "host_vars").mkdir(parents=True)
    (repo / "site" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"pi": {"hosts": {PI: {}}}}}})
    )
    key = work / "fleet-key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-release", "-f", str(key))
    signers = f'fleet-release namespaces="git" {key.with_suffix(".pub").read_text().strip()}'
    reports_secret = secrets.token_urlsafe(24)
    extra = {
        "lab_pull_keys": pi_vars(),
        "lab_pull_site": str(repo / "site"),
        "lab_pull_allowed_signers": signers,
        "lab_pull_reports_secret": reports_secret,
    }
    # A fleet of its own: the repository, reports and agent state an earlier run left (a warm lab)
    # would hold tags this run makes again.
    host(GPUSRV).check_output("rm -rf /srv/hailo-fleet")
    host(PI).check_output("rm -rf /var/lib/hailo-pull /var/lib/hailo-pipeline/rollout.json")
    run = play("lab/playbooks/pull.yml", extra=extra)
    assert run.rc == 0, run.out[-4000:]
    # The release travels in the repository: its path is relative to the checkout on the Pi.
    host_vars = repo / "site" / "host_vars" / f"{PI}.yml"
    values = yaml.safe_load(host_vars.read_text())
    values["sidecar_stack_release_dir"] = f"{{{{ inventory_dir }}}}/../releases/imu-encoder/{RELEASE}"
    # A setting of the site's own that no earlier stage gives the Pi: the tag's run changes the Pi
    # whatever the rollouts before left on it (the same release alone may already be in place).
    values["sidecar_stack_mem_limit"] = "510m"
    host_vars.write_text(yaml.safe_dump(values))
    git(repo, "init", "-q", "-b", "main")
    for name, value in {"user.name": "release manager", "user.email": "release@lab.internal",
                        "gpg.format": "ssh", "user.signingkey": str(key)}.items():  # fmt: skip
        git(repo, "config", name, value)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"fleet: the lab's site, release {RELEASE}")
    return {"repo": repo, "work": work, "secret": reports_secret}


def tag(fleet: dict[str, Any], name: str, signed: bool = True) -> None:
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


def report(fleet: dict[str, Any], tag_name: str) -> dict[str, Any]:
    """The outcome the agent sent to the fleet's reports on GPUSrv (read with the Pi's credential)."""
    who = f"{PI}:{fleet_filters.report_password(fleet['secret'], PI)}"
    out = host(GPUSRV).check_output(f"curl -fsS -u {who} http://127.0.0.1:8082/reports/{tag_name}/{PI}.json")
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


def test_a_signed_tag_is_applied_and_reported(fleet: dict[str, Any]) -> None:
    pi = host(PI)
    since = time.time() - 1
    tag(fleet, "fleet-1.0.0")
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("deployed", "fleet-1.0.0"), outcome
    assert outcome["changed"] > 0 and outcome["commit"] == git(fleet["repo"], "rev-parse", "HEAD").strip()
    assert outcome["target"]["tag"] == "fleet-1.0.0" and outcome["target"]["state"] == "deployed"
    # pi.yml ran on the Pi: it serves the tag's release.
    assert "smoke: 5 passed" in smoke(pi, RELEASE, "lab-C")
    container = pi.check_output(f"{STACK} ps -q hailo-inference-onnx")
    memory = pi.check_output(f"docker inspect -f '{{{{.HostConfig.Memory}}}}' {container}")
    assert memory == str(510 * 2**20), "the site's own setting (sidecar_stack_mem_limit 510m) is applied"
    assert report(fleet, "fleet-1.0.0")["result"] == "deployed"
    seen_by_prometheus("deployed", since)


def test_an_unsigned_tag_is_refused_and_reported(fleet: dict[str, Any]) -> None:
    pi = host(PI)
    since = time.time() - 1
    tag(fleet, "fleet-1.1.0", signed=False)
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("refused", "fleet-1.1.0"), outcome
    assert "not signed by an allowed key" in outcome["reason"]
    assert report(fleet, "fleet-1.1.0")["result"] == "refused"
    assert "smoke: 5 passed" in smoke(pi, RELEASE, "lab-C"), "the applied release keeps serving"
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


def test_an_old_signed_tag_under_a_new_name_is_refused(fleet: dict[str, Any]) -> None:
    """Someone who can write the repository pushes the applied release's signed tag object again
    under a higher name (git verify-tag passes it: a ref name is not signed): refused, the Pi keeps
    what it applied, Prometheus sees the refusal."""
    pi = host(PI)
    since = time.time() - 1
    state = pi.file("/var/lib/hailo-pull/state.json").content_string
    old = git(fleet["repo"], "rev-parse", "refs/tags/fleet-1.0.0").strip()
    git(fleet["repo"], "push", "-q", REMOTE, f"{old}:refs/tags/fleet-2.0.0")
    outcome = pull(pi)
    assert (outcome["result"], outcome["tag"]) == ("refused", "fleet-2.0.0"), outcome
    assert "is the signed tag 'fleet-1.0.0' under another name" in outcome["reason"]
    assert report(fleet, "fleet-2.0.0")["result"] == "refused"
    assert pi.file("/var/lib/hailo-pull/state.json").content_string == state, "the applied tag is kept"
    assert "smoke: 5 passed" in smoke(pi, RELEASE, "lab-C")
    seen_by_prometheus("refused", since)


def test_reports_are_written_by_their_own_host_only(fleet: dict[str, Any]) -> None:
    """fleet_repo's nginx: a report is written with its host's credential only (nobody forges a
    canary's "deployed"), read with any reporting host's; the credentials are on the Pi in a file
    only root reads, not in its unit file."""
    g = host(GPUSRV)
    url = f"http://127.0.0.1:8082/reports/fleet-1.0.0/{PI}.json"
    other = "lab-pi-bookworm"
    own = f"{PI}:{fleet_filters.report_password(fleet['secret'], PI)}"
    theirs = f"{other}:{fleet_filters.report_password(fleet['secret'], other)}"
    put = "curl -s -o /dev/null -w '%{http_code}' -X PUT --data '{\"result\": \"deployed\"}'"
    for who, code in ((None, "403"), (theirs, "403"), (f"{PI}:a-guess", "401")):
        assert g.check_output(f"{put} {'-u ' + who if who else ''} {url}") == code, who
    assert g.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == "401", (
        "reading needs a credential"
    )
    assert json.loads(g.check_output(f"curl -fsS -u {theirs} {url}"))["result"] == "deployed"
    assert g.check_output(f"{put} -u {own} {url.replace('fleet-1.0.0', 'fleet-test')}") in ("201", "204")
    pi = host(PI)
    creds = pi.file("/var/lib/hailo-pull/credentials.json")
    assert (creds.mode, creds.user) == (0o600, "root")
    unit = pi.check_output("systemctl cat hailo-pull.service")
    assert "lab-gpusrv" not in unit and fleet_filters.report_password(fleet["secret"], PI) not in unit

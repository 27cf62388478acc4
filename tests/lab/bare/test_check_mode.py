"""Check mode on the lab's bare hosts (as `lab.py hosts` leaves them, before any playbook): both
playbooks, and each role's phases alone (--tags <role>_<phase>), pass and change nothing. How the
roles do it: roles/README.md, "Check mode"."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from labplay import GPUSRV, LAB, PIS, ROOT, host, play, release, snapshot

PLAYBOOKS = {"playbooks/gpusrv.yml": [GPUSRV], "playbooks/pi.yml": PIS}
# About 30 playbook runs (4 at a time) before the first test: minutes on 2 cores.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def extra() -> dict[str, dict[str, Any]]:
    """What GPUSrv has not made yet on bare hosts, for the Pi play: a release compiled on the
    controller (lab/playbooks/releases.yml; unsigned, GPUSrv has no release key yet), the image
    `make images` pushed (lab.py hosts runs it) and, for the Pi that uses GPUSrv's HailoRT mirror,
    a key to check its entry with (check mode installs nothing from it)."""
    assert play("lab/playbooks/releases.yml").rc == 0
    image = json.loads((ROOT / "build" / "images.json").read_text())["ref"]
    pi = {"pi_rollout_batches": ["100%"], "sidecar_stack_release_dir": str(release("1.2.0")),
          "sidecar_stack_image": image,
          "hailort_apt_mirror_signed_by": (LAB / "apt" / "archive-key.asc").read_text(),
          # GPUSrv has no release key yet, so the release is unsigned.
          "sidecar_stack_require_signature": False, "sidecar_stack_allowed_signers": "",
          # Pull mode's roles are optional: on here so that their phases run too.
          "pull_agent_enabled": True, "pull_agent_repo_url": "http://lab-gpusrv:8082/fleet.git",
          "pull_agent_reports_url": "http://lab-gpusrv:8082/reports",
          "pull_agent_allowed_signers": 'release namespaces="git" ssh-ed25519 AAAAC3Nza',
          "pull_agent_reports_secret": "check-mode-reports-secret"}  # fmt: skip
    gpusrv = {"fleet_repo_enabled": True, "fleet_repo_reports_secret": "check-mode-reports-secret"}
    return {"playbooks/gpusrv.yml": gpusrv, "playbooks/pi.yml": pi}


def roles_of(playbook: str) -> list[str]:
    """The collection's roles the playbook runs (its filters share the prefix, not the folder)."""
    names = re.findall(r"synchrony\.hailo_pipeline\.(\w+)", (ROOT / playbook).read_text())
    return [name for name in names if (ROOT / "roles" / name).is_dir()]


def phases(role: str) -> list[str]:
    """The role's phase tags, from its tasks/main.yml (<role>_<phase>)."""
    tags = re.findall(r"tags: \[([^\]]*)\]", (ROOT / "roles" / role / "tasks" / "main.yml").read_text())
    return sorted({t.strip() for line in tags for t in line.split(",") if t.strip().startswith(f"{role}_")})


# Each role's phases once, in the first playbook that runs the role (base, docker_engine and
# sidecar_stack are in both).
_FIRST = {role: pb for pb in reversed(list(PLAYBOOKS)) for role in roles_of(pb)}
CASES = [(pb, tag) for role, pb in sorted(_FIRST.items()) if role != "preflight" for tag in phases(role)]
# One run per playbook and phase: every role's phase of that name at once (`--tags
# base_install,docker_engine_install,...`). Each role still runs that phase alone, without its own
# earlier phases, which is what the test is about; check mode leaves the host bare, so another
# role's phase in the same run makes nothing for it. About 10 runs instead of 30.
PHASE_RUNS: dict[tuple[str, str], list[str]] = {}
for _role, _pb in sorted(_FIRST.items()):
    for _tag in phases(_role) if _role != "preflight" else []:
        PHASE_RUNS.setdefault((_pb, _tag[len(_role) + 1 :]), []).append(_tag)


@pytest.fixture(scope="module")
def before() -> dict[str, str]:
    return {name: snapshot(host(name)) for names in PLAYBOOKS.values() for name in names}


def test_the_cases_cover_every_role_and_phase() -> None:
    assert len(CASES) >= 25, CASES
    assert ("playbooks/pi.yml", "hailort_verify") in CASES and (
        "playbooks/gpusrv.yml",
        "ci_runner_remove",
    ) in CASES


@pytest.fixture(scope="module")
def runs(before: dict[str, str], extra: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Every check-mode run, concurrently (they only read the hosts): each playbook whole ("" as
    the tags), then each phase of every role (PHASE_RUNS). The slowest ones first."""
    cases = [(pb, "") for pb in PLAYBOOKS] + [(pb, ",".join(tags)) for (pb, _), tags in PHASE_RUNS.items()]

    def one(case: tuple[str, str]) -> Any:
        playbook, tags = case
        return play(playbook, "--check", *(["--tags", tags] if tags else []), extra=extra[playbook])

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(cases, pool.map(one, cases), strict=True))


@pytest.mark.parametrize("playbook", list(PLAYBOOKS))
def test_playbook_in_check_mode_on_bare_hosts(runs: dict[tuple[str, str], Any], playbook: str) -> None:
    run = runs[(playbook, "")]
    assert run.rc == 0, run.out[-4000:]
    for name in PLAYBOOKS[playbook]:
        assert run.stats[name]["failures"] == 0


def test_each_role_phase_alone_in_check_mode(runs: dict[tuple[str, str], Any]) -> None:
    failures = []
    for (playbook, phase), tags in PHASE_RUNS.items():
        run = runs[(playbook, ",".join(tags))]
        if run.rc != 0:
            failures.append(f"{playbook} --check --tags {','.join(tags)} failed:\n{run.out[-1500:]}")
            continue
        for tag in tags:
            role = tag[: -len(phase) - 1]
            # The phase ran: a tag that selects nothing would pass without testing anything.
            if f"synchrony.hailo_pipeline.{role} : " not in run.out:
                failures.append(f"{playbook} --check --tags {tag} ran none of {role}'s tasks")
    assert not failures, "\n\n".join(failures)


def test_nothing_changed_on_the_hosts(before: dict[str, str], runs: dict[tuple[str, str], Any]) -> None:
    for name, snap in before.items():
        assert snapshot(host(name)) == snap, f"check mode changed files on {name}"

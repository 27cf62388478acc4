"""Check mode on the lab's bare hosts (as `lab.sh hosts` leaves them, before any playbook): both
playbooks, and each role's phases alone (--tags <role>_<phase>), pass and change nothing. How the
roles do it: roles/README.md, "Check mode"."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from labplay import GPUSRV, PIS, ROOT, host, play, snapshot

PLAYBOOKS = {"playbooks/gpusrv.yml": [GPUSRV], "playbooks/pi.yml": PIS}
ONE_BATCH = {"pi_rollout_batches": ["100%"]}


def roles_of(playbook: str) -> list[str]:
    return re.findall(r"synchrony\.hailo_pipeline\.(\w+)", (ROOT / playbook).read_text())


def phases(role: str) -> list[str]:
    """The role's phase tags, from its tasks/main.yml (<role>_<phase>)."""
    text = (ROOT / "roles" / role / "tasks" / "main.yml").read_text()
    return sorted(set(re.findall(rf"\b({role}_\w+)\b", text)))


CASES = [
    (playbook, tag)
    for playbook in PLAYBOOKS
    for role in roles_of(playbook)
    if role != "preflight"
    for tag in phases(role)
]


@pytest.fixture(scope="module")
def before() -> dict[str, str]:
    return {name: snapshot(host(name)) for names in PLAYBOOKS.values() for name in names}


def test_the_cases_cover_every_role_and_phase() -> None:
    assert len(CASES) >= 30, CASES
    assert ("playbooks/pi.yml", "hailort_verify") in CASES and (
        "playbooks/gpusrv.yml",
        "ci_runner_remove",
    ) in CASES


@pytest.mark.parametrize("playbook", list(PLAYBOOKS))
def test_playbook_in_check_mode_on_bare_hosts(before: dict[str, str], playbook: str) -> None:
    run = play(playbook, "--check", extra=ONE_BATCH)
    assert run.rc == 0, run.out[-4000:]
    for name in PLAYBOOKS[playbook]:
        assert run.recap[name]["failed"] == 0


def test_each_role_phase_alone_in_check_mode(before: dict[str, str]) -> None:
    def one(case: tuple[str, str]) -> str | None:
        playbook, tag = case
        run = play(playbook, "--check", "--tags", tag, extra=ONE_BATCH)
        return None if run.rc == 0 else f"{playbook} --check --tags {tag} failed:\n{run.out[-1500:]}"

    with ThreadPoolExecutor(max_workers=3) as pool:
        failures = [f for f in pool.map(one, CASES) if f]
    assert not failures, "\n\n".join(failures)


def test_nothing_changed_on_the_hosts(before: dict[str, str]) -> None:
    for name, snap in before.items():
        assert snapshot(host(name)) == snap, f"check mode changed files on {name}"

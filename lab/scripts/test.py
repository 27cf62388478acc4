"""The project's test command (`make test`, run by .ci/run).

Brings up what the tests need (set-up: dockerd, registry, host images, venv) and the runtime image
(linux/arm64, pushed), then three groups at once: the lab; lint, unit + API tests and the image and
Compose checks; Molecule's scenarios. The lab group proves the playbooks on the lab's hosts
(lab/README.md):
  1. bare hosts: both playbooks and every role's phases in check mode (tests/lab/bare)
  2. `make lab`, the README's main job, cold
  3. the testinfra suite for real hosts (tests/infra), then two sides at once, each ending with its
     playbook run again from the collection tarball installed as a Galaxy user would (it must
     report changed=0):
     GPUSrv: the lab's checks of GPUSrv (runner, image, mirror, bad variables, the release key)
     Pis: the lab's checks of the Pis (host state, HailoRT field failures, bad variables,
     monitoring, the acceptance flow)
  4. rollouts: a release that fails its smoke stops at the canary and is rolled back, a good one
     reaches every Pi (tests/lab/rollout)
  5. pull mode: a Pi's agent applies a signed tag from GPUSrv's fleet repository and refuses an
     unsigned one and an older one (tests/lab/pull)
  6. `make lab-down`
The fault drills (tests/lab/drills, docs/reliability.md) are not in that plan yet: `test.py drills`
runs them on a lab left up after `make lab` and the rollout tests (both Pis serve release C): those
of one Pi on lab-pi-bookworm (bad settings, a wrong clock, a change that does not come up, power
lost during a rollout, a reboot, a full disk, dpkg interrupted), then those of the fleet on both
Pis (a Pi off the network in its batch, a first deploy that does not come up, the registry down).
Prints the time per stage and a closing summary (the failed stages' reports again above it).

  test.py [all]                   everything, as CI runs it
  test.py lint|unit|images|lab|galaxy  one stage or group
  test.py drills                  the fault drills, on a lab left up after the rollout tests
  test.py molecule-oldest         the default scenario on the oldest supported ansible-core
  test.py infra [INVENTORY]       the testinfra suite against an inventory (default the lab's)
  test.py molecule [SCENARIO]     every Molecule scenario, or one
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import ROOT, VENV_BIN, Runner, env_with_venv, interruptible, lab_strategy_env

LAB = ROOT / "build" / "lab"
LOGS = ROOT / "build" / "test-logs"
LAB_PY = [sys.executable, "lab/scripts/lab.py"]
# The converged checks of GPUSrv; every other module in tests/lab/converged is the Pi side's.
GPUSRV_CHECKS = [
    "tests/lab/converged/test_gpusrv.py",
    "tests/lab/converged/test_gpusrv_guards.py",
    "tests/lab/converged/test_release_key.py",
]
# The fault drills (tests/lab/drills) on lab-pi-bookworm alone, in this order (each starts where
# the one before left the Pi), and those that need both Pis.
ONE_PI_DRILLS = [
    "tests/lab/drills/test_settings.py",
    "tests/lab/drills/test_power.py",
    "tests/lab/drills/test_disk.py",
    "tests/lab/drills/test_dpkg.py",
]
FLEET_DRILLS = ["tests/lab/drills/test_fleet.py"]


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout.split()


def lint(r: Runner) -> bool:
    """Every linter, each its own stage: one that fails does not hide the others."""
    v = str(VENV_BIN)
    checks = [
        ("lint: yamllint", [f"{v}/yamllint", "--strict", "."]),
        ("lint: ansible-lint", [f"{v}/ansible-lint", "--profile", "production", "--strict", "-q"]),
        ("lint: ruff", ["bash", "-c", f"{v}/ruff check . && {v}/ruff format --check ."]),
        ("lint: mypy", [f"{v}/mypy"]),
        ("lint: shellcheck", [f"{v}/shellcheck", "-x", *tracked("*.sh", ".ci/run")]),
        # Not the Dockerfile.dockerignore files next to them (each image's build context).
        ("lint: hadolint", [f"{v}/hadolint", *tracked("*Dockerfile")]),
        ("lint: actionlint", [f"{v}/actionlint"]),
    ]
    return all([r.stage(name, cmd) for name, cmd in checks])


def unit(r: Runner) -> bool:
    return r.pytest("unit + API tests", "tests/unit")


def galaxy(r: Runner) -> bool:
    """The tarball as Galaxy and Automation Hub import it, ansible-test sanity, the dependency
    ranges' ends and the unit stage on the oldest ansible-core (tests/galaxy)."""
    return r.pytest("galaxy + sanity", "tests/galaxy")


def images(r: Runner) -> bool:
    return r.stage("runtime image (make images)", ["make", "-s", "images"]) and r.pytest(
        "images + compose", "-rA", "tests/images"
    )


def infra(r: Runner, inventory: str = "lab/inventory/hosts.yml") -> bool:
    # testinfra_lab: the lab inventory's connection is testinfra's docker backend (lab/scripts).
    env = {"PYTHONPATH": str(ROOT / "lab" / "scripts")}
    args = ["-p", "testinfra_lab", "-rA", "tests/infra", f"--ansible-inventory={inventory}"]
    return r.pytest("tests/infra", *args, env=env)


def lab(r: Runner) -> bool:
    """The lab's stages. Each after the cold `make lab` works on the hosts it names; the GPUSrv
    side and the Pi side run at the same time (their tests use the other side's services, never
    its state), each ending with its playbook's idempotence run."""
    # A cold lab: one left running is removed first.
    subprocess.run([*LAB_PY, "down"], cwd=ROOT, env=env_with_venv(), capture_output=True)
    (ROOT / "build" / "docker-exec-retries.log").unlink(missing_ok=True)
    ok = r.stage("lab: bare hosts", [*LAB_PY, "hosts"])
    # Every Ansible run of the lab's stages under Mitogen for Ansible's strategy (lab.py's too),
    # read once the set-up above made the venv.
    env = lab_strategy_env()
    ok = ok and r.pytest("lab: bare hosts, check mode", "tests/lab/bare", env=env)
    if ok:
        ok = r.stage("lab: make lab (cold)", [*LAB_PY, "up", "--hosts-ready"])
    if ok:
        # Before the two sides: it reads both sides' hosts, which their tests break and repair.
        ok = infra(r)
        ok = r.together(partial(gpusrv_side, r, env), partial(pi_side, r, env)) and ok
        ok = r.pytest("lab: rollouts", "tests/lab/rollout", env=env) and ok
        ok = r.pytest("lab: pull mode", "tests/lab/pull", env=env) and ok
    if not ok and (LAB / "logs").is_dir():
        kept = ROOT / "build" / "lab-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(LAB / "logs", kept)
        r.say("lab: logs kept in build/lab-logs")
    ok = r.stage("lab: make lab-down", [*LAB_PY, "down"]) and ok
    # The lab's connection ran again any docker exec that runc failed to start (lab/plugins/connection).
    retries = ROOT / "build" / "docker-exec-retries.log"
    if retries.is_file() and retries.stat().st_size:
        count = len(retries.read_text().splitlines())
        r.say(f"lab: {count} docker exec(s) that runc did not start were run again (build/{retries.name})")
    return ok


def drills(r: Runner) -> bool:
    """The fault drills on a lab left up after the rollout tests (not yet in everything()'s plan):
    those of one Pi, then those of the fleet (they need both Pis serving, as the one-Pi drills
    leave them)."""
    env = lab_strategy_env()
    ok = r.pytest("lab: drills, one Pi", *ONE_PI_DRILLS, env=env)
    return r.pytest("lab: drills, the fleet", *FLEET_DRILLS, env=env) and ok


def gpusrv_side(r: Runner, env: dict[str, str]) -> bool:
    ok = r.pytest("lab: GPUSrv checks", *GPUSRV_CHECKS, env=env)
    again = [*LAB_PY, "up", "--hosts-ready", "--expect-unchanged", "--installed", "--only", "gpusrv"]
    return r.stage("lab: gpusrv.yml again, installed tarball", again) and ok


def pi_side(r: Runner, env: dict[str, str]) -> bool:
    ok = r.pytest("lab: Pi checks", "tests/lab/converged", *(f"--ignore={m}" for m in GPUSRV_CHECKS), env=env)
    again = [*LAB_PY, "up", "--hosts-ready", "--expect-unchanged", "--installed", "--only", "pi"]
    return r.stage("lab: pi.yml again, installed tarball", again) and ok


def molecule_oldest(r: Runner) -> bool:
    """The default scenario on the oldest supported ansible-core (.venv-oldest, tests/galaxy/venvs.py);
    it uses the default scenario's host names, so it runs after that one, never beside it."""
    made = subprocess.run([str(VENV_BIN / "python"), "tests/galaxy/venvs.py", "oldest"], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if made.returncode != 0:
        r.say(made.stdout + made.stderr)
        return r.stage("molecule default, oldest ansible-core", lambda: False)
    oldest = Path(made.stdout.strip()) / "bin"
    env = {"PATH": f"{oldest}:{env_with_venv()['PATH']}"}
    return r.stage(
        "molecule default, oldest ansible-core", [str(oldest / "molecule"), "test", "-s", "default"], env=env
    )


def molecule(r: Runner, scenario: str | None = None) -> bool:
    scenarios = (
        [scenario]
        if scenario
        else sorted(p.parent.name for p in (ROOT / "extensions/molecule").glob("*/molecule.yml"))
    )
    results = [r.stage(f"molecule {s}", [str(VENV_BIN / "molecule"), "test", "-s", s]) for s in scenarios]
    return all(results)


def everything(r: Runner) -> bool:
    if not r.stage("setup", ["bash", "lab/scripts/setup.sh"]):
        return False
    # The image every later stage uses (cached per revision): built once, before they start.
    if not r.stage("runtime image (make images)", ["make", "-s", "images"]):
        return False
    # Three groups at once: the lab (the longest; it waits on containers, QEMU and apt much of the
    # time) next to the checks of this checkout and to Molecule's own hosts. Those two yield the
    # CPU to the lab (their commands run niced; the containers Docker starts for them do not).

    def lab_group() -> bool:
        return lab(r)

    def checks_group() -> bool:
        with r.niced():
            ok = lint(r)
            ok = unit(r) and ok
            ok = r.pytest("images + compose", "-rA", "tests/images") and ok
            return galaxy(r) and ok

    def molecule_group() -> bool:
        with r.niced():
            ok = molecule(r)
            return molecule_oldest(r) and ok

    return r.together(lab_group, checks_group, molecule_group)


def main(argv: list[str]) -> int:
    what, arg = [*argv, "all"][0], (argv[1] if len(argv) > 1 else None)
    runner = Runner(logs=LOGS)
    stages = {
        "all": lambda: everything(runner),
        "lint": lambda: lint(runner),
        "unit": lambda: unit(runner),
        "images": lambda: images(runner),
        "infra": lambda: infra(runner, arg or "lab/inventory/hosts.yml"),
        "lab": lambda: lab(runner),
        "molecule": lambda: molecule(runner, arg),
        "molecule-oldest": lambda: molecule_oldest(runner),
        "galaxy": lambda: galaxy(runner),
        "drills": lambda: drills(runner),
    }
    if what not in stages:
        print(__doc__, file=sys.stderr)
        return 2
    with interruptible(runner):
        stages[what]()
        return 0 if runner.summary() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

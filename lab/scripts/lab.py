"""The built-in lab: `make lab` (up), `make lab-down` (down). See lab/README.md.

  up      sets up what is missing (make setup), builds and pushes the runtime image (make images;
          cached per revision), creates the lab's hosts (lab/inventory: one GPUSrv, two Pis, as
          containers), runs playbooks/gpusrv.yml and playbooks/pi.yml against them as in
          production, and prints a summary (lab/scripts/summary.py). Run again, it changes nothing
          and says so (changed=0 per playbook).
            --expect-unchanged  fail when a playbook changed something (the idempotence check)
            --installed         run the playbooks from the collection tarball installed as a Galaxy
                                user would (build/lab/galaxy), not from this checkout
            --hosts-ready       the hosts and their scaffolding are there already (`hosts` or an
                                earlier `up` made them): straight to the playbooks
            --only gpusrv|pi    that playbook alone, on a lab that ran both before
  hosts   only the hosts and the lab's scaffolding on them, no playbook (bare hosts: the test
          command runs the playbooks in check mode there first)
  down    removes the hosts (and their Docker data), the tags the lab pushed and build/lab.

Logs of every step: build/lab/logs/. Exit status: non-zero when a step fails, a sidecar is not
healthy, or (--expect-unchanged) a playbook changed something.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import (
    ROOT,
    VENV_BIN,
    Runner,
    env_with_venv,
    installed_collections_path,
    interruptible,
    lab_strategy_env,
)

LAB = ROOT / "build" / "lab"
INVENTORY = "lab/inventory/hosts.yml"
PLAYBOOK_STEPS = {"gpusrv": "playbooks/gpusrv.yml", "pi": "playbooks/pi.yml"}


class Failed(Exception):
    """A step failed: the lab stops there."""


def _step(runner: Runner, name: str, cmd: list[str], **kwargs: object) -> None:
    if not runner.stage(name, cmd, **kwargs):  # type: ignore[arg-type]
        rel = (runner.logs or LAB).relative_to(ROOT)
        raise Failed(f"lab: '{name}' failed (exit {runner.results[-1].rc}); logs: {rel}/")


def hosts(runner: Runner) -> None:
    LAB.mkdir(parents=True, exist_ok=True)
    _step(runner, "set-up (make setup)", ["bash", "lab/scripts/setup.sh"])
    _step(runner, "runtime image (make images)", ["make", "-s", "images"])
    scaffolding = [str(VENV_BIN / "ansible-playbook"), "lab/playbooks/up.yml", "-i", INVENTORY]
    _step(runner, "lab hosts and scaffolding", scaffolding, env=lab_strategy_env(), ansible=True)


def install_tarball(only: str | None) -> Path:
    """The collection as Galaxy users get it: the tarball, installed into a folder of its own;
    returns that collections folder."""
    galaxy = LAB / (f"galaxy-{only}" if only else "galaxy")
    shutil.rmtree(galaxy, ignore_errors=True)
    galaxy.mkdir(parents=True)
    tool = str(VENV_BIN / "ansible-galaxy")
    env = env_with_venv({"ANSIBLE_COLLECTIONS_PATH": str(galaxy / "collections")})
    subprocess.run([tool, "collection", "build", "--force", "--output-path", str(galaxy), "."], cwd=ROOT,
                   env=env, check=True, capture_output=True)  # fmt: skip
    (tarball,) = galaxy.glob("*.tar.gz")
    subprocess.run([tool, "collection", "install", "--force", "--no-deps", "-p", str(galaxy / "collections"),
                    str(tarball)], cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
    return galaxy / "collections"


def up(runner: Runner, args: argparse.Namespace) -> int:
    playbooks = ROOT / "playbooks"
    extra: list[str] = []
    env: dict[str, str] = {}
    if args.installed:
        collections = install_tarball(args.only)
        env["ANSIBLE_COLLECTIONS_PATH"] = installed_collections_path(collections)
        playbooks = collections / "ansible_collections" / "synchrony" / "hailo_pipeline" / "playbooks"
        # No git checkout around the installed sources: the revision is given, as a Galaxy user would.
        build = ["bash", "images/runtime/build.sh"]
        printed = subprocess.run(build, cwd=ROOT, check=True, text=True, capture_output=True,
                                 env={**os.environ, "PRINT_REVISION": "1"})  # fmt: skip
        revision = printed.stdout.strip()
        extra = ["-e", f"sidecar_image_revision={revision}"]
        runner.say(f"lab: playbooks from the installed collection tarball ({playbooks.relative_to(ROOT)})")
    if not args.hosts_ready:
        hosts(runner)
    first = len(runner.results)
    playbook = str(VENV_BIN / "ansible-playbook")
    # Read after the set-up above: on a fresh machine the venv (and Mitogen in it) comes from it.
    env = {**lab_strategy_env(), **env}
    if args.only != "pi":
        # The stand-in runner contacts nothing: any token will do (production: the real one, from
        # the environment).
        token = os.environ.get("HAILO_RUNNER_TOKEN", "lab-registration-token")
        _step(runner, "playbooks/gpusrv.yml", [playbook, str(playbooks / "gpusrv.yml"), "-i", INVENTORY,
              *extra], env={**env, "HAILO_RUNNER_TOKEN": token}, ansible=True)  # fmt: skip
    if args.only != "gpusrv":
        # Both Pis in one batch (production: a canary first, pi_rollout_batches).
        _step(runner, "playbooks/pi.yml",
              [playbook, str(playbooks / "pi.yml"), "-i", INVENTORY, *extra,
               "-e", '{"pi_rollout_batches": ["100%"]}', "-e", f"pi_rollout_report={LAB / 'rollout.json'}"],
              env=env, ansible=True)  # fmt: skip
    steps = runner.timings()
    timings = LAB / (f"timings-{args.only}.jsonl" if args.only else "timings.jsonl")
    timings.write_text("".join(json.dumps(s) + "\n" for s in steps))
    rc = 0
    # With --only, the other hosts may be under test meanwhile: no summary of the whole lab.
    if not args.only:
        rc = subprocess.run([str(VENV_BIN / "python"), "lab/scripts/summary.py", "--timings", str(timings)],
                            cwd=ROOT, env=env_with_venv()).returncode  # fmt: skip
    if args.expect_unchanged:
        for step in runner.timings(first):
            if step["step"].startswith("playbooks/") and step["changed"] != 0:
                print(
                    f"lab: {step['step']} changed {step['changed']} on a second run (expected 0)",
                    file=sys.stderr,
                )
                rc = 1
    return rc


def down(runner: Runner) -> int:
    if not (VENV_BIN / "ansible-playbook").exists():
        print(
            "lab: no .venv here, so no lab was made from this checkout (make lab creates both)",
            file=sys.stderr,
        )
        return 0
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "lab/playbooks/hosts.yml",
        "-i",
        INVENTORY,
        "-e",
        "lab_state=absent",
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env_with_venv()).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    p_up = sub.add_parser("up", help="make lab")
    p_up.add_argument("--expect-unchanged", action="store_true")
    p_up.add_argument("--installed", action="store_true")
    p_up.add_argument("--hosts-ready", action="store_true")
    p_up.add_argument("--only", choices=sorted(PLAYBOOK_STEPS))
    sub.add_parser("hosts", help="only the hosts and their scaffolding")
    sub.add_parser("down", help="make lab-down")
    args = ap.parse_args(argv)
    command = args.command or "up"
    if command == "up" and not hasattr(args, "installed"):
        args = ap.parse_args(["up"])
    runner = Runner(logs=LAB / "logs")
    with interruptible(runner):
        try:
            if command == "down":
                return down(runner)
            if command == "hosts":
                hosts(runner)
                return 0
            return up(runner, args)
        except Failed as exc:
            print(exc, file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())

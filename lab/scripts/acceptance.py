"""`make acceptance INVENTORY=... HOST=...`: the hardware acceptance of one Pi from a checkout.

playbooks/acceptance.yml does everything that runs on the host and ships in the collection; the
steps that need this checkout run here around it:
  1. the testinfra suite (tests/infra) against the host; its result, read from pytest's JUnit XML,
     goes into the verdict (acceptance_testinfra_rc and _summary);
  2. the playbook (ACCEPTANCE_PLAYBOOK: the checkout's, or an installed collection's), keeping the
     report, the device's HailoRT record and the release's manifest in build/acceptance;
  3. when the device answered, its HailoRT record compared with the lab's stand-in
     (lab/scripts/fidelity.py: where the lab's HailoRT differs from the device, one line each).
Exit status: the playbook's (the verdict). Arguments after HOST go to ansible-playbook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import ROOT, VENV_BIN, env_with_venv

OUT = ROOT / "build" / "acceptance"


def junit_summary(path: Path) -> str:
    """pytest's counts from its JUnit XML, as "N passed, M failed, ..." (the parts that are not 0)."""
    try:
        suites = ET.parse(path).getroot().iter("testsuite")  # noqa: S314 - pytest's own report, written by this run
    except (OSError, ET.ParseError):
        return "no result (pytest wrote no report)"
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in total:
            total[key] += int(suite.get(key, 0))
    passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    parts = {
        "passed": passed,
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
    }
    return ", ".join(f"{n} {what}" for what, n in parts.items() if n) or "no tests ran"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: acceptance.py INVENTORY HOST [ansible-playbook args]", file=sys.stderr)
        return 2
    inventory, host, extra_args = argv[0], argv[1], argv[2:]
    playbook = os.environ.get("ACCEPTANCE_PLAYBOOK", "playbooks/acceptance.yml")
    OUT.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-fidelity", "-manifest"):
        (OUT / f"{host}{suffix}.json").unlink(missing_ok=True)
    junit = OUT / f"{host}-testinfra.xml"
    junit.unlink(missing_ok=True)
    # testinfra_lab: a lab inventory's connection is testinfra's docker backend (lab/scripts).
    env = env_with_venv({"PYTHONPATH": str(ROOT / "lab" / "scripts")})
    pytest = [str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "testinfra_lab"]
    target = [f"--ansible-inventory={inventory}", f"--hosts=ansible://{host}"]
    infra = subprocess.run([*pytest, "tests/infra", "-rfE", "--tb=line", f"--junitxml={junit}", *target],
                           cwd=ROOT, env=env, check=False)  # fmt: skip
    extra = {"acceptance_report_dir": str(OUT), "acceptance_testinfra_rc": infra.returncode,
             "acceptance_testinfra_summary": junit_summary(junit)}  # fmt: skip
    cmd = [str(VENV_BIN / "ansible-playbook"), playbook, "-i", inventory, "-l", host, "-e", json.dumps(extra)]
    play = subprocess.run([*cmd, *extra_args], cwd=ROOT, env=env_with_venv(), check=False)
    record = OUT / f"{host}-fidelity.json"
    if record.is_file():
        print("stand-in fidelity (the device against the lab's HailoRT stand-in):", flush=True)
        manifest = OUT / f"{host}-manifest.json"
        compare = [str(VENV_BIN / "python"), "lab/scripts/fidelity.py", str(record), str(manifest)]
        compared = subprocess.run(
            compare, cwd=ROOT, env=env_with_venv(), check=False, capture_output=True, text=True
        )
        for line in (compared.stdout + compared.stderr).splitlines():
            print(f"  {line}")
    return play.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

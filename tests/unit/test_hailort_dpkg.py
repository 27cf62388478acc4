"""The hailort role's dpkg recovery (roles/hailort/tasks/install.yml) beside another apt run: the
lock probe as the host runs it, against a lock taken the way dpkg takes it (src/main/lock.c in
dpkg: fcntl F_SETLK on /var/lib/dpkg/lock-frontend, for the whole run)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

INSTALL = Path(__file__).resolve().parents[2] / "roles" / "hailort" / "tasks" / "install.yml"
TASKS: list[dict[str, Any]] = yaml.safe_load(INSTALL.read_text())
NAMES = [t["name"] for t in TASKS]
WAIT = TASKS[NAMES.index("Wait for another apt or dpkg run to finish (dpkg's frontend lock)")]


def probe(lock: Path) -> subprocess.CompletedProcess[str]:
    script = WAIT["ansible.builtin.command"]["argv"][2].replace("/var/lib/dpkg/lock-frontend", str(lock))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_the_probe_sees_dpkgs_lock_and_only_while_it_is_held(tmp_path):
    lock = tmp_path / "lock-frontend"
    assert probe(lock).returncode == 0, "no lock file: nobody holds it"
    lock.touch()
    assert probe(lock).returncode == 0
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # unattended-upgrades' dpkg, in another process
        held = probe(lock)
        assert held.returncode == 1 and "unattended-upgrades" in held.stderr
    finally:
        os.close(fd)
    assert probe(lock).returncode == 0


def test_the_wait_comes_before_the_audit_and_is_bounded():
    assert NAMES.index(WAIT["name"]) < NAMES.index("Look for an interrupted dpkg run")
    assert WAIT["until"] == "__hailort_dpkg_lock.rc == 0" and WAIT["delay"] * 60 <= 600
    assert WAIT["check_mode"] is False and WAIT["changed_when"] is False


def test_configure_keeps_the_hosts_conffiles_without_a_prompt():
    (configure,) = [t for t in TASKS if t["name"].startswith("Finish the interrupted dpkg run")]
    argv = configure["ansible.builtin.command"]["argv"]
    assert {"--force-confdef", "--force-confold"} <= set(argv) and argv[-2:] == ["--configure", "-a"]

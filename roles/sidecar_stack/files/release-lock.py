"""release-lock: one run at a time places a release on a host (sidecar_stack role, release.yml).

  release-lock.py take LOCK RUN [WAIT_S [STALE_S]]   exit 0 when RUN holds LOCK
  release-lock.py release LOCK RUN                   removes LOCK when RUN holds it

Two runs at once (an operator's push while the pull agent's ansible-pull runs) would otherwise
remove each other's hidden copy (MODELS_ROOT/.NAME.partial) in the middle of it. Ansible runs each
task in a process of its own, so no flock(2) can be held across them: LOCK is a file created with
O_EXCL holding the run, the boot (/proc/sys/kernel/random/boot_id) and the time. A lock of another
boot (power lost mid-run) or older than STALE_S (a run whose controller went away) is stale and
taken over; another run's lock is waited for, WAIT_S at most, then refused naming it. Exits 1 with
one line naming the problem."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def holder(lock: Path) -> dict[str, object] | None:
    try:
        data = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # cut short by a power loss: nobody's, stale
    return data if isinstance(data, dict) else {}


def take(lock: Path, run: str, wait_s: float, stale_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = holder(lock)
            if held is None:
                continue  # released between the two calls
            at = held.get("at")
            stale = (
                held.get("boot_id") != boot_id()
                or not isinstance(at, int | float)
                or time.time() - at > stale_s
            )
            if stale:
                print(f"taking over a stale lock {lock}: {json.dumps(held)}")
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() >= deadline:
                since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(at)))
                print(
                    f"another run ({held.get('run')}) is placing a release on this host since {since} "
                    f"(lock {lock}); waited {wait_s:g} s. Run again when it is done, or remove {lock} "
                    "if no run is going on (it is taken over by itself after a reboot or "
                    f"{stale_s:g} s)",
                    file=sys.stderr,
                )
                return 1
            time.sleep(1)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"run": run, "boot_id": boot_id(), "at": time.time()}, f)
        return 0


def release(lock: Path, run: str) -> int:
    held = holder(lock)
    if held is not None and held.get("run") == run:
        lock.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "take":
        wait_s = float(argv[3]) if len(argv) > 3 else 300.0
        stale_s = float(argv[4]) if len(argv) > 4 else 900.0
        return take(Path(argv[1]), argv[2], wait_s, stale_s)
    if len(argv) == 3 and argv[0] == "release":
        return release(Path(argv[1]), argv[2])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

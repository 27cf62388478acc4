"""The PLAY RECAP of an ansible-playbook run, read in one place for the lab and its tests.

recap.py LOG    prints the sum of changed= over the recap's hosts, or "null" without a recap.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_LINE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)(?:\s+skipped=(?P<skipped>\d+))?(?:\s+rescued=(?P<rescued>\d+))?"
    r"(?:\s+ignored=(?P<ignored>\d+))?",
    re.M,
)


def recap(output: str) -> dict[str, dict[str, int]] | None:
    """host -> counts from the last PLAY RECAP in OUTPUT; None when there is none."""
    _, found, tail = output.rpartition("PLAY RECAP")
    if not found:
        return None
    return {
        m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host" and v is not None}
        for m in _LINE.finditer(tail)
    }


def main(argv: list[str]) -> int:
    counts = recap(Path(argv[0]).read_text(errors="replace"))
    print("null" if counts is None else sum(c["changed"] for c in counts.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

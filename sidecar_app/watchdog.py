"""The unready exit (UNREADY_EXIT_S, hailo mode): a sidecar that stays unready because of the
device exits with status 3, so the container's restart policy starts a fresh process, which opens
the device again. Reopening inside the process goes on meanwhile (service.py's backoff); a fresh
process is what is left when that does not help (HailoRT's state in the process, a driver handle
that stays wedged).

Unready because it is loading (no failure yet), because of the model or the release (a fresh
process fails the same way), or while a fallback serves does not count. A crash loop is bounded:
the time allowed doubles with each such exit in a row, up to an hour, and starts again from
UNREADY_EXIT_S once the sidecar was ready. STATE_DIR/unready-exits.json keeps the counts across
restarts; the total is hailo_sidecar_unready_exits_total in /metrics, and each exit is one log line.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .logs import log

EXIT_STATUS = 3
MAX_LIMIT_S = 3600.0
# Doublings the backoff counts at most: 0.01 s (the smallest UNREADY_EXIT_S) * 2**20 is past the
# hour already, and 2.0**1024 (42 days of one exit an hour) raises OverflowError at every start.
MAX_DOUBLINGS = 20
STATE_FILE = "unready-exits.json"
# Failures a fresh process meets again: the model files and the release (service.py keeps them
# permanent) and a HEF this HailoRT or this device refuses.
MODEL_PROBLEMS = frozenset({
    "checksum_mismatch", "contract", "golden", "pointer", "manifest", "model_missing",
    "hef_invalid", "hef_corrupted", "hef_not_supported", "hef_arch",
})  # fmt: skip


@dataclass
class Counts:
    total: int = 0
    in_a_row: int = 0


class UnreadyWatchdog:
    def __init__(
        self,
        limit_s: float,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop: Callable[[], None] | None = None,
    ) -> None:
        self.base_s = limit_s
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._clock = clock
        # How the server is asked to stop: `hailo-sidecar serve` sets its uvicorn server's
        # should_exit (a SIGTERM would end the process by that signal, not with EXIT_STATUS).
        self.stop = stop or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self._since: float | None = None
        self.counts = self._read()
        if self.base_s > 0 and self.counts.in_a_row:
            log(30, "started after unready exits", exits=self.counts.total, in_a_row=self.counts.in_a_row,
                limit_s=self.limit_s)  # fmt: skip

    @property
    def limit_s(self) -> float:
        """How long the device may keep the sidecar unready before it exits (after backoff)."""
        doublings = min(self.counts.in_a_row, MAX_DOUBLINGS)
        return float(min(self.base_s * 2.0**doublings, max(self.base_s, MAX_LIMIT_S)))

    def expired(self, ready: bool, kind: str | None) -> bool:
        """Called every second with the service's readiness and failure kind: True when the
        device has kept it unready for limit_s."""
        if self.base_s <= 0:
            return False
        if ready:
            self._since = None
            if self.counts.in_a_row:
                self.counts.in_a_row = 0
                self._write()
            return False
        if kind is None or kind in MODEL_PROBLEMS:
            self._since = None
            return False
        now = self._clock()
        if self._since is None:
            self._since = now
        return now - self._since >= self.limit_s

    def exit(self, kind: str | None, reason: str | None) -> int:
        """Counts the exit, logs it and asks the server to stop (it drains what is in flight);
        returns the exit status the process must end with."""
        unready_s = round(self._clock() - self._since, 1) if self._since is not None else 0.0
        limit_s = self.limit_s
        self.counts = Counts(self.counts.total + 1, self.counts.in_a_row + 1)
        self._write()
        log(50, "unready because of the device for too long: exiting so the restart policy starts a "
            "fresh process", kind=kind, reason=reason, unready_s=unready_s, limit_s=limit_s,
            exits=self.counts.total, in_a_row=self.counts.in_a_row, next_limit_s=self.limit_s,
            status=EXIT_STATUS)  # fmt: skip
        self.stop()
        return EXIT_STATUS

    def _read(self) -> Counts:
        if self._path is None:
            return Counts()
        try:
            data = json.loads(self._path.read_text())
            counts = Counts(data["total"], data["in_a_row"])
            # Whole numbers >= 0 only (bool is an int in Python, a float may be inf or nan).
            if not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0
                for n in (counts.total, counts.in_a_row)
            ):
                raise ValueError(f"counts must be whole numbers >= 0: {data!r}")
            return counts
        except FileNotFoundError:
            return Counts()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log(
                30,
                "unready exit counts unreadable: starting from none",
                path=str(self._path),
                error=repr(exc),
            )
            return Counts()

    def _write(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.counts)))
            tmp.replace(self._path)
        except OSError as exc:  # the exit still happens; only the count across restarts is lost
            log(30, "unready exit counts not kept", path=str(self._path), error=str(exc))

"""The unready exit (sidecar_app/watchdog.py): the watchdog's decisions on an injected clock, then
the whole server as the container runs it, against the stand-in HailoRT with the device failing to
open (HAILO_STANDIN_CONTROL; status 74 as HailoRT's vdevice.cpp returns when no device is free)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import STANDINS

from sidecar_app.watchdog import EXIT_STATUS, MAX_LIMIT_S, UnreadyWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(tmp_path: Path) -> Path:
    """STATE_DIR: a folder of its own (conftest's sysfs fixture writes tmp_path/sys)."""
    folder = tmp_path / "state"
    folder.mkdir(exist_ok=True)
    return folder


def watchdog(tmp_path: Path, limit: float = 60, kills: list | None = None) -> tuple[UnreadyWatchdog, Clock]:
    clock = Clock()
    sink = kills if kills is not None else []
    return UnreadyWatchdog(limit, state(tmp_path), clock, stop=lambda: sink.append("stop")), clock


def test_device_unready_for_the_limit_expires_and_the_exit_is_counted(tmp_path):
    kills: list = []
    w, clock = watchdog(tmp_path, 60, kills)
    assert not w.expired(False, "device_unavailable")
    clock.now += 59.9
    assert not w.expired(False, "device_unavailable")
    clock.now += 0.1
    assert w.expired(False, "device_unavailable")
    assert w.exit("device_unavailable", "status 74") == EXIT_STATUS
    assert kills == ["stop"], "the server is asked to drain and stop"
    assert json.loads((tmp_path / "state" / "unready-exits.json").read_text()) == {"total": 1, "in_a_row": 1}


@pytest.mark.parametrize("kind", [None, "checksum_mismatch", "golden", "hef_not_supported"])
def test_loading_and_model_problems_never_expire(tmp_path, kind):
    """A fresh process would load the same files and fail the same way: restarting cannot help."""
    w, clock = watchdog(tmp_path, 10)
    for _ in range(5):
        assert not w.expired(False, kind)
        clock.now += 100


def test_ready_in_between_starts_the_time_again(tmp_path):
    w, clock = watchdog(tmp_path, 60)
    w.expired(False, "timeout")
    clock.now += 50
    assert not w.expired(True, None)
    clock.now += 50
    assert not w.expired(False, "timeout"), "50 s unready since it was ready last"
    clock.now += 60
    assert w.expired(False, "timeout")


def test_a_crash_loop_backs_off_and_a_ready_sidecar_starts_again(tmp_path):
    """Each process reads what the one before it kept: the limit doubles with each exit in a row
    (60, 120, 240, ...) up to an hour, and falls back to 60 s once a process was ready."""
    limits = []
    for _ in range(8):
        w, _clock = watchdog(tmp_path, 60)
        limits.append(w.limit_s)
        w.exit("device_unavailable", "status 74")
    assert limits == [60, 120, 240, 480, 960, 1920, MAX_LIMIT_S, MAX_LIMIT_S]
    w, _clock = watchdog(tmp_path, 60)
    assert w.counts.total == 8 and w.counts.in_a_row == 8
    assert not w.expired(True, None)
    again, _clock = watchdog(tmp_path, 60)
    assert (again.counts.total, again.counts.in_a_row, again.limit_s) == (8, 0, 60)


def test_off_and_without_a_state_folder(tmp_path):
    off, clock = watchdog(tmp_path, 0)
    clock.now += 10**6
    assert not off.expired(False, "device_unavailable")
    kills: list = []
    alone = UnreadyWatchdog(1, None, Clock(), stop=lambda: kills.append("stop"))
    assert alone.exit("timeout", None) == EXIT_STATUS and alone.counts.total == 1
    assert list(state(tmp_path).iterdir()) == [], "nothing written without STATE_DIR"


def test_an_unreadable_state_file_starts_from_none(tmp_path):
    (state(tmp_path) / "unready-exits.json").write_text("{not json")
    w, _clock = watchdog(tmp_path, 60)
    assert (w.counts.total, w.limit_s) == (0, 60)


def test_a_crash_loop_of_six_weeks_still_starts_at_the_hour(tmp_path):
    """1024 exits in a row is 42 days of one an hour (a device that stays broken): 2.0**1024
    overflows a float, and the process that reads that count must still start, waiting an hour."""
    (state(tmp_path) / "unready-exits.json").write_text(json.dumps({"total": 1030, "in_a_row": 1024}))
    w, _clock = watchdog(tmp_path, 300)
    assert (w.counts.in_a_row, w.limit_s) == (1024, MAX_LIMIT_S)
    w.exit("device_unavailable", "status 74")
    assert watchdog(tmp_path, 300)[0].limit_s == MAX_LIMIT_S


@pytest.mark.parametrize(
    "kept",
    [{"total": -5, "in_a_row": -3}, {"total": 1e400, "in_a_row": 2}, {"total": 3, "in_a_row": True},
     {"total": 3, "in_a_row": 2.5}, {"total": "3", "in_a_row": "2"}, [1, 2]],
)  # fmt: skip
def test_counts_that_are_not_whole_numbers_from_zero_start_from_none(tmp_path, kept):
    """A state file written by hand or cut short: a negative count would shorten the wait below
    UNREADY_EXIT_S, infinity would not fit an int; each is read as no exits."""
    (state(tmp_path) / "unready-exits.json").write_text(json.dumps(kept))
    w, _clock = watchdog(tmp_path, 60)
    assert (w.counts.total, w.counts.in_a_row, w.limit_s) == (0, 0, 60)


# --- the server as the container runs it ----------------------------------------------------------


# The child process is a fresh interpreter: conftest's sysfs fixture (monkeypatched in this one)
# does not reach it, so the host it looks at is given as the test process sees it, the stand-in's
# through its control file and the sidecar's (backends/hailo.py's SYSFS) before cli.main runs.
_SERVE = (
    "import sys; from pathlib import Path; from sidecar_app.backends import hailo; "
    "hailo.SYSFS = Path(sys.argv[1]); from sidecar_app.cli import main; sys.exit(main(['serve']))"
)


def serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    """The server with a device that is listed (driver loaded, hailo0) but does not open: status
    74, which HailoRT returns when no device is free (device_unavailable)."""
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"open_status": 74, "sysfs": str(tmp_path / "sys")}))
    from hailo_platform import standin

    hef = standin.write_standin_hef(tmp_path / "model.hef")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(STANDINS), os.environ.get("PYTHONPATH", "")]),
        "HAILO_STANDIN_CONTROL": str(control),
        "INFER_MODE": "hailo",
        "HEF_PATH": str(hef),
        "PORT": str(port),
        "UNREADY_EXIT_S": "1",
        "STATE_DIR": str(state(tmp_path)),
        "LOG_FORMAT": "json",
    }
    return subprocess.Popen([sys.executable, "-c", _SERVE, str(tmp_path / "sys")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str, deadline: float) -> str:
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return next(line for line in r.read().decode().splitlines() if line.startswith(name))
        except OSError:
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)


@pytest.mark.timeout(120)
def test_the_server_exits_with_status_3_and_the_next_one_counts_it(tmp_path):
    """What Docker's restart policy sees: exit status 3 after UNREADY_EXIT_S of a device that does
    not open; the process it starts next reports the exit in /metrics and waits twice as long."""
    port = free_port()
    first = serve(tmp_path, port)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == EXIT_STATUS, out[-3000:]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (exit_line,) = [line for line in lines if line["msg"].startswith("unready because of the device")]
    assert exit_line["level"] == "critical" and exit_line["kind"] == "device_unavailable"
    assert "status 74" in exit_line["reason"] and exit_line["exits"] == 1 and exit_line["next_limit_s"] == 2
    second = serve(tmp_path, port)
    try:
        line = metric(port, "hailo_sidecar_unready_exits_total", time.monotonic() + 60)
        assert float(line.split()[-1]) == 1.0
        out, _ = second.communicate(timeout=60)
    finally:
        second.kill()
    assert second.returncode == EXIT_STATUS
    started = [json.loads(line) for line in out.splitlines() if '"started after unready exits"' in line]
    assert started and (started[0]["exits"], started[0]["limit_s"]) == (1, 2.0), out[-2000:]
    assert json.loads((tmp_path / "state" / "unready-exits.json").read_text()) == {"total": 2, "in_a_row": 2}

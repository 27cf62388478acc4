"""Helpers for the image checks: run a command, find a free port, the repository root."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGES_JSON = ROOT / "build" / "images.json"
# The project's commands from the running venv (PATH may not include it).
SIDECAR = str(Path(sys.executable).parent / "hailo-sidecar")
COMPILE = str(Path(sys.executable).parent / "hailo-compile")


def sh(*args: str, check: bool = True, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

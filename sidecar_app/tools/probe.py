"""The container healthcheck: `hailo-sidecar-probe [PATH]` exits 0 when the server in this container
answers 200 on PATH (default /readyz), on 127.0.0.1 and the port the server reads from PORT.

It runs at every healthcheck interval on every device, and on GPUSrv under QEMU, so it imports only
os, sys and socket: argparse, urllib and the CLI module cost about a second of CPU per probe there
(python -X importtime in the arm64 image). `hailo-sidecar probe` is the same check with options.
"""

from __future__ import annotations

import os
import socket
import sys

DEFAULT_PATH = "/readyz"
PATHS = ("/readyz", "/healthz")
DEFAULT_TIMEOUT = 4.0


def port_from_env() -> int:
    """PORT as the server reads it (sidecar_app.settings), without the settings model: pydantic's
    import costs seconds under QEMU."""
    raw = os.environ.get("PORT", "9000").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"PORT must be a port number (1-65535), not {raw!r}")
    return int(raw)


def http_status(port: int, path: str, timeout: float) -> int:
    """GET PATH from 127.0.0.1:PORT (HTTP/1.0, the connection closed after one response); the
    response's status code. OSError when there is no server or the answer is not HTTP."""
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
    head = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        while b"\r\n" not in head and len(head) < 4096:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not (len(parts[1]) == 3 and parts[1].isdigit()):
        raise OSError(f"not an HTTP response: {head[:60]!r}")
    return int(parts[1])


def check(port: int, path: str, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Probe once, print the outcome (stdout, or stderr when nothing answered); the exit status."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        status = http_status(port, path, timeout)
    except OSError as exc:
        print(f"probe: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"probe: {url} HTTP {status}")
    return 0 if status == 200 else 1


def run(path: str = DEFAULT_PATH, port: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> int:
    """The probe's exit status: PORT from the environment unless PORT is given."""
    if port is None:
        try:
            port = port_from_env()
        except ValueError as exc:
            print(f"probe: {exc}", file=sys.stderr)
            return 1
    return check(port, path, timeout)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] not in PATHS):
        # 1, not the usual 2: Docker reserves a healthcheck's exit status 2.
        print(f"usage: hailo-sidecar-probe [{'|'.join(PATHS)}]  (port: PORT, default 9000)", file=sys.stderr)
        return 1
    return run(args[0] if args else DEFAULT_PATH)


if __name__ == "__main__":
    sys.exit(main())

"""The real server process (uvicorn on 127.0.0.1): smoke, body limit on the wire, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar_app.tools.smoke import run_smoke

STANDINS = Path(__file__).resolve().parents[2] / "lab" / "standins"

GOOD = json.dumps({"x": [[0.1] * 9 for _ in range(100)]}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PYTHONPATH": str(STANDINS),
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar_app.cli", "serve"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/livez", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return int(self.proc.wait())


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    env = getattr(request, "param", {"INFER_MODE": "stub"})
    srv = Server(**env)
    yield srv
    srv.stop()


def test_smoke_passes_and_detects_wrong_expectations(server, capsys):
    health = json.loads(urllib.request.urlopen(server.url + "/healthz").read())
    assert (
        run_smoke(server.url, expect_sha256=health["model_sha256"], expect_config_version="unversioned") == 0
    )
    assert "smoke: 5 passed, 0 failed" in capsys.readouterr().out
    assert run_smoke(server.url, expect_sha256="0" * 64, expect_config_version="other") == 2


def test_smoke_cli_exit_code(server):
    ok = subprocess.run(
        [sys.executable, "-m", "sidecar_app.cli", "smoke", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar_app.cli",
            "smoke",
            "--url",
            server.url,
            "--expect-config-version",
            "nope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_oversized_body_is_refused_without_reading_it(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b" " * 1000
        )
        t0 = time.monotonic()
        reply = b""
        while b"exceeds the limit" not in reply and time.monotonic() - t0 < 5:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit" in reply
    # ... and the server keeps serving.
    req = urllib.request.Request(
        server.url + "/infer", data=GOOD, headers={"Content-Type": "application/json"}
    )
    assert urllib.request.urlopen(req).status == 200


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    from hailo_platform import standin  # lab/standins, put on sys.path by conftest

    hef = standin.write_standin_hef(tmp_path / "model.hef")
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"delay_s": 1.5}))
    srv = Server(INFER_MODE="hailo", HEF_PATH=str(hef), HAILO_STANDIN_CONTROL=str(control))
    results: list[int] = []

    def call() -> None:
        req = urllib.request.Request(
            srv.url + "/infer", data=GOOD, headers={"Content-Type": "application/json"}
        )
        results.append(urllib.request.urlopen(req, timeout=30).status)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both requests are now inside the (slow) device call
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    code = srv.stop()
    assert results == [200, 200]
    # uvicorn re-raises the captured SIGTERM once shutdown is complete
    assert code in (0, -signal.SIGTERM)
    log = srv.proc.stdout.read().decode() if srv.proc.stdout else ""
    assert '"msg":"stopped"' in log


def _probe(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sidecar_app.cli", "probe", "--port", str(port), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_the_probe_command_checks_the_local_server(server):
    ready = _probe(server.port)
    assert ready.returncode == 0 and "HTTP 200" in ready.stdout
    nothing = _probe(_free_port())
    assert nothing.returncode == 1 and "Connection refused" in nothing.stderr


# The healthcheck as the image runs it (hailo-sidecar-probe), and what it imported.
HEALTHCHECK = (
    "import sys; from sidecar_app.tools.probe import main; rc = main(sys.argv[1:]); "
    "heavy = ('argparse', 'urllib.request', 'http.client', 'pydantic', 'importlib.metadata', "
    "'sidecar_app.cli'); "
    "print('loaded:', [m for m in heavy if m in sys.modules]); sys.exit(rc)"
)


def _healthcheck(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HEALTHCHECK, *args], env={**os.environ, "PORT": port},
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_the_healthcheck_reads_port_from_the_environment_and_imports_little(server):
    """The healthcheck runs at every interval, under QEMU on GPUSrv: no pydantic (settings), no
    importlib.metadata (the version), no argparse or urllib (about a second of CPU there)."""
    ok = _healthcheck(str(server.port), "/readyz")
    assert ok.returncode == 0 and "HTTP 200" in ok.stdout, ok.stdout + ok.stderr
    assert "loaded: []" in ok.stdout
    assert _healthcheck(str(server.port)).returncode == 0  # /readyz by default
    bad = _healthcheck("90000")
    assert bad.returncode == 1 and "PORT must be a port number (1-65535), not '90000'" in bad.stderr
    nothing = _healthcheck(str(_free_port()))
    assert nothing.returncode == 1 and "Connection refused" in nothing.stderr
    usage = _healthcheck(str(server.port), "/metrics")
    assert usage.returncode == 1 and "usage: hailo-sidecar-probe [/readyz|/healthz]" in usage.stderr


def test_the_healthcheck_refuses_an_answer_that_is_not_http() -> None:
    import socket
    import threading

    with socket.create_server(("127.0.0.1", 0)) as listener:

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        threading.Thread(target=answer, daemon=True).start()
        run = _healthcheck(str(listener.getsockname()[1]))
    assert run.returncode == 1 and "not an HTTP response: b'SSH-2.0-OpenSSH_9.2" in run.stderr, run.stderr


# The serving path as `hailo-sidecar serve` runs it (the app built, started, a window inferred), in a
# fresh interpreter: which of the command's tools (sidecar_app/tools/) it loaded.
SERVING = (
    "import sys; from starlette.testclient import TestClient; from sidecar_app import cli; "
    "from sidecar_app.app import create_app; from sidecar_app.settings import load_settings; "
    "cli.build_parser().parse_args(['serve']); "
    "client = TestClient(create_app(load_settings(infer_mode='stub'))); client.__enter__(); "
    "assert client.post('/infer', json={'x': [[0.1] * 9] * 100}).status_code == 200; "
    "print(sorted(m for m in sys.modules if m.startswith('sidecar_app.tools')))"
)


def test_the_server_imports_none_of_the_commands_tools() -> None:
    """Serving loads no tool (bench, loadgen, parity, refmodel, smoke ...: numpy-heavy or not, none
    belongs in the server's process); the command's parser only the healthcheck's stdlib module."""
    run = subprocess.run([sys.executable, "-c", SERVING], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['sidecar_app.tools', 'sidecar_app.tools.probe']", run.stdout
    app_only = "import sys, sidecar_app.app; print([m for m in sys.modules if 'sidecar_app.tools' in m])"
    run = subprocess.run([sys.executable, "-c", app_only], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


def test_version_option_prints_the_package_version() -> None:
    import sidecar_app

    run = subprocess.run([sys.executable, "-m", "sidecar_app.cli", "--version"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0 and run.stdout == f"{sidecar_app.__version__}\n", run.stdout + run.stderr
    assert sidecar_app.__version__ not in ("", "0.0.0+unknown")


@pytest.mark.parametrize(
    "server", [{"INFER_MODE": "onnx", "ONNX_PATH": "/nonexistent/model.onnx"}], indirect=True
)
def test_probe_fails_while_not_ready_but_alive(server):
    assert _probe(server.port).returncode == 1
    assert "HTTP 503" in _probe(server.port).stdout
    assert _healthcheck(str(server.port)).returncode == 1

"""Lab only: community.docker's `docker` connection, running again a `docker exec` that runc failed
to start.

On the lab's machines (cgroup v1; systemd hosts with host cgroupns, a rw /sys/fs/cgroup and their
own Docker) about one `docker exec` in several thousand fails before its command starts: runc's
"OCI runtime exec failed: ... waiting for init preliminary setup: read init-p: connection reset
by peer", exit 126. Docker writes that message to the exec's *stdout* stream (moby
api/server/router/container/exec.go, postContainerExecStart: `fmt.Fprintf(stdout, "%v\\r\\n", err)`),
so Ansible saw rc 126 with an empty stderr and called the host unreachable ("Failed to set
permissions on remote files (rc: 126, err: )"). The command never ran, so running it again is safe.

The lab inventory names the connection synchrony.hailo_lab.docker: `make setup` links lab/ into
the collections path as the collection synchrony.hailo_lab (never shipped). Molecule's shared
configuration puts this folder on its connection plugin path, where the short name `docker` finds
this file first. testinfra knows the docker connection only as `docker` or community.docker.docker:
lab/scripts/testinfra_lab.py tells it that this one is the same, and tests/lab/labplay.py gives
the lab's tests testinfra's docker backend with this retry. Each retry is shown at -v and appended to
build/docker-exec-retries.log.

Under Mitogen for Ansible's strategy (lab/scripts/stages.py, mitogen_env) the same name is Mitogen's
docker connection (ansible_mitogen mitogen_docker: one `docker exec` per host starts a Python that
serves every task of the run), with the same retry of that exec; the inventory stays as it is.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.utils.display import Display

# The options (remote_addr, remote_user, docker_extra_args, ...) are community.docker's: Ansible
# reads a connection plugin's options from its module's DOCUMENTATION.
from ansible_collections.community.docker.plugins.connection.docker import DOCUMENTATION  # noqa: F401
from ansible_collections.community.docker.plugins.connection.docker import Connection as DockerConnection

display = Display()

# runc's message when its init process died before the container process started (runc
# libcontainer/process_linux.go: "waiting for init preliminary setup"); Docker's exit code for it.
SIGNATURE = b"read init-p: connection reset by peer"
EXIT_NOT_STARTED = 126
TRIES = 3
# The record of retries; LAB_EXEC_RETRY_LOG names another file.
LOG = Path(__file__).resolve().parents[3] / "build" / "docker-exec-retries.log"


def not_started(rc: int, stdout: bytes, stderr: bytes) -> bool:
    """Did runc fail to start the exec (so its command never ran)?"""
    return rc == EXIT_NOT_STARTED and (SIGNATURE in stdout or SIGNATURE in stderr)


def note_retry(host: str, what: str, attempt: int) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = f"{stamp} {host}: {what}: runc did not start the exec, try {attempt + 1} of {TRIES}"
    display.v(line, host=host)
    path = Path(os.environ.get("LAB_EXEC_RETRY_LOG") or LOG)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError:
        pass  # the log is for the record: a read-only checkout still gets the retry


class Connection(DockerConnection):
    """community.docker.docker with exec_command and put_file tried up to TRIES times when runc
    did not start the exec."""

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = False
    ) -> tuple[int, bytes, bytes]:
        for attempt in range(1, TRIES + 1):
            rc, stdout, stderr = super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
            if attempt == TRIES or not not_started(rc, stdout, stderr):
                return rc, stdout, stderr
            note_retry(self.get_option("remote_addr"), "exec", attempt)
            time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def put_file(self, in_path: str, out_path: str) -> Any:
        # community.docker copies a file in with `docker exec -i ... dd`; a failure is an
        # AnsibleError carrying that exec's stdout and stderr.
        for attempt in range(1, TRIES + 1):
            try:
                return super().put_file(in_path, out_path)
            except AnsibleError as exc:
                if attempt == TRIES or SIGNATURE.decode() not in str(exc):
                    raise
                note_retry(self.get_option("remote_addr"), f"put {out_path}", attempt)
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def mitogen_connection() -> type:
    """Mitogen's docker connection, its one `docker exec` (the interpreter it starts) tried up to
    TRIES times when runc did not start it: Mitogen reports the exec's last output lines in the
    failure (mitogen/parent.py, EofError), and a failed connection is not cached
    (ansible_mitogen/services.py, ContextService._wait_or_start)."""
    from ansible_mitogen.plugins.connection.mitogen_docker import Connection as MitogenDocker

    # Named Connection: Ansible reads a plugin's type from its class name (ansible/plugins/__init__.py,
    # AnsiblePlugin.plugin_type), and the options it looks up are a "connection" plugin's.
    class Connection(MitogenDocker):  # type: ignore[misc,valid-type]
        def _connect_stack(self, stack: Any) -> None:
            for attempt in range(1, TRIES + 1):
                try:
                    return super()._connect_stack(stack)
                except AnsibleConnectionFailure as exc:
                    if attempt == TRIES or SIGNATURE.decode() not in str(exc):
                        raise
                    note_retry(self._play_context.remote_addr, "connect", attempt)
                    time.sleep(0.5 * attempt)
            raise AssertionError("unreachable")  # pragma: no cover

    return Connection


# The strategy is loaded before any connection: Mitogen's imports ansible_mitogen.strategy. Chosen once
# per process: a run sets its strategy for all its plays (stages.mitogen_env, ANSIBLE_STRATEGY).
if "ansible_mitogen.strategy" in sys.modules:
    Connection = mitogen_connection()  # type: ignore[misc]

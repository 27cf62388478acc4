"""testinfra checks for provisioned hosts, read through an Ansible inventory.

    pytest tests/infra --ansible-inventory=inventories/<site>/hosts.yml
    pytest tests/infra --ansible-inventory=inventories/<site>/hosts.yml --hosts='ansible://pi-0001*'

test_gpusrv.py checks the inventory's `gpusrv` group, test_pi.py its `pi` group (`--hosts`
narrows them; a host outside a module's group is reported as not applicable). Expectations come
from the hosts themselves (what the roles recorded: release.json, manifests) and from the
inventory's variables where the roles' defaults were changed. `make infra` runs the suite
against the lab; the test command does so after `make lab`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

# The roles' defaults, for variables an inventory does not set.
DEFAULTS: dict[str, Any] = {
    "sidecar_stack_dir": "/opt/hailo-sidecar",
    "sidecar_stack_project": "hailo",
    "sidecar_stack_port": 9000,
    "buildx_qemu_builder_name": "hailo-builder",
    "ci_runner_user": "github-runner",
    "ci_runner_home": "/opt/actions-runner",
    "ci_runner_labels": ["self-hosted", "linux", "x64", "hailo-builder"],
    "hef_compile_work_dir": "/opt/hailo/compile",
    "hef_compile_releases_dir": "/opt/hailo/releases",
    "sidecar_image_repository": "hailo/sidecar",
    "hailort_device_required": True,
    "sidecar_stack_hailo_device": "/dev/hailo0",
    "sidecar_stack_hailo_group": "hailo",
}
# Compose service per profile (roles/sidecar_stack/files/compose.yml).
SERVICES = {"real": "hailo-inference", "onnx": "hailo-inference-onnx", "stub": "hailo-inference-stub"}


def var(host, name: str) -> Any:
    """An inventory variable of HOST, or the role default (plain values only: no templating)."""
    value = host.ansible.get_variables().get(name, DEFAULTS.get(name))
    if isinstance(value, str) and "{{" in value:
        pytest.fail(f"{name} is templated in the inventory ({value!r}); these checks read plain values only")
    return value


def in_group(host, group: str) -> None:
    groups = host.ansible.get_variables().get("group_names", [])
    if group not in groups:
        pytest.skip(f"not applicable: {host.backend.get_hostname()} is not in group {group} ({groups})")


class Stack:
    """The sidecar stack sidecar_stack deployed on a host, as its release.json records it."""

    def __init__(self, host) -> None:
        self.host = host
        self.dir = var(host, "sidecar_stack_dir")
        state = host.file(f"{self.dir}/release.json")
        assert state.exists, f"{self.dir}/release.json missing: sidecar_stack has not deployed here"
        self.record: dict[str, Any] = json.loads(state.content_string)
        self.current: dict[str, Any] = self.record["current"]
        self.profile: str = self.current["profile"]
        self.service = SERVICES[self.profile]
        self.compose = (
            f"docker compose -p {var(host, 'sidecar_stack_project')} --project-directory {self.dir} "
            f"--profile {self.profile}"
        )

    def container(self) -> dict[str, Any]:
        cid = self.host.check_output(f"{self.compose} ps -q {self.service}")
        assert cid, f"{self.service} is not running"
        state: dict[str, Any] = json.loads(self.host.check_output(f"docker inspect {cid}"))[0]
        return state

    def get(self, path: str) -> str:
        """GET http://127.0.0.1:PORT/PATH on the host (its python3: Ansible needs one anyway)."""
        url = f"http://127.0.0.1:{var(self.host, 'sidecar_stack_port')}{path}"
        out = self.host.run(
            f"python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], "
            f"timeout=60).read().decode())' {url}"
        )
        assert out.rc == 0, f"GET {url}: {out.stderr}"
        return str(out.stdout)


@pytest.fixture
def stack(host) -> Stack:
    return Stack(host)

"""A pytest plugin for the lab only (`pytest -p testinfra_lab`, lab/scripts on the path): testinfra
picks its docker backend for the connections it knows by name (docker, community.docker.docker;
testinfra/utils/ansible_runner.py, get_ansible_host) and runs every command through Ansible for
any other. The lab inventory's synchrony.hailo_lab.docker is community.docker's connection with a
retry (lab/plugins/connection/docker.py): the same `docker exec`, so testinfra gets told so."""

from __future__ import annotations

from typing import Any

import testinfra.utils.ansible_runner as ansible_runner

LAB_CONNECTION = "synchrony.hailo_lab.docker"
_get_ansible_host = ansible_runner.get_ansible_host


def _get_ansible_host_lab(config: Any, inventory: Any, host: str, *args: Any, **kwargs: Any) -> Any:
    hostvars = inventory.get("_meta", {}).get("hostvars", {}).get(host, {})
    if hostvars.get("ansible_connection") == LAB_CONNECTION:
        hostvars["ansible_connection"] = "docker"
    return _get_ansible_host(config, inventory, host, *args, **kwargs)


ansible_runner.get_ansible_host = _get_ansible_host_lab

"""GPUSrv after the gpusrv playbook: Docker, the hailo-builder builder with arm64, the runner."""

from __future__ import annotations

import json
import subprocess

import pytest

RUNNER_HOME = "/opt/actions-runner"
HOST = "gpusrv-lab"


def test_docker_runs_with_log_rotation(host):
    docker = host.service("docker")
    assert docker.is_running and docker.is_enabled
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"]["max-size"] == "10m"
    info = host.run("docker info --format '{{json .}}'")
    assert info.rc == 0, info.stderr
    assert json.loads(info.stdout)["LoggingDriver"] == "json-file"
    for plugin in ("buildx", "compose"):
        assert host.run(f"docker {plugin} version").rc == 0, f"docker {plugin} missing"


@pytest.mark.parametrize("user", ["root", "github-runner"])
def test_builder_lists_arm64(host, user):
    out = host.run(f"sudo -u {user} -H docker buildx inspect --bootstrap hailo-builder")
    assert out.rc == 0, out.stderr
    platforms = next(line for line in out.stdout.splitlines() if line.strip().startswith("Platforms:"))
    assert "linux/arm64" in platforms and "linux/amd64" in platforms


def test_aarch64_binaries_run_in_the_hosts_docker(host):
    """binfmt for aarch64 is live for this host's Docker: an arm64 container runs."""
    image = "hailo-lab/debian:bookworm-arm64"
    if host.run(f"docker image inspect {image}").rc != 0:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", HOST, "docker", "load"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        save.wait()
        assert load.returncode == 0, load.stderr
    out = host.run(f"docker run --rm --platform linux/arm64 {image} uname -m")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "aarch64"


def test_runner_account_is_non_root_with_docker(host):
    user = host.user("github-runner")
    assert user.exists and user.uid != 0 and user.uid < 1000
    assert "docker" in user.groups
    assert user.home == RUNNER_HOME


def test_runner_service_installed_enabled_running(host):
    svc = host.service("actions-runner")
    assert svc.is_enabled and svc.is_running
    unit = host.file("/etc/systemd/system/actions-runner.service").content_string
    assert "User=github-runner" in unit and f"ExecStart={RUNNER_HOME}/run.sh" in unit
    proc = host.process.get(comm="sleep", user="github-runner")
    assert proc is not None, "the runner's listener does not run as github-runner"


def test_runner_registered_with_labels(host):
    reg = json.loads(host.file(f"{RUNNER_HOME}/.runner").content_string)
    assert reg["labels"].split(",") == ["self-hosted", "linux", "x64", "hailo-builder"]
    assert reg["gitHubUrl"] == "https://github.com/synchrony/hailo-pipeline"
    assert reg["agentName"] == HOST
    assert host.file(f"{RUNNER_HOME}/.hailo-runner-version").content_string.strip() == "2.329.0"


def test_runner_tarball_is_the_pinned_one(host):
    tarball = host.file(f"{RUNNER_HOME}/.downloads/actions-runner-2.329.0.tar.gz")
    assert tarball.exists and tarball.user == "github-runner"
    served = host.file("/srv/hailo-lab/actions-runner-standin.tar.gz")
    assert tarball.sha256sum == served.sha256sum

"""GPUSrv after the gpusrv playbook: Docker, the hailo-builder builder with arm64, the runner,
the compiled release, the runtime image in the registry and the stub stack."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

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


EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LIST = "127.0.0.1:5000/lab-gpusrv/sidecar:0.1.0"
COMPOSE = "docker compose -p hailo --project-directory /opt/hailo-sidecar --profile stub"


def test_compiled_release_on_the_host_and_the_controller(host):
    """hef_compile ran the compiler container (stand-in DFC) and fetched the release back."""
    fetched = EPHEMERAL / "artifacts" / "imu-encoder" / "1.0.0"
    manifest = json.loads((fetched / "manifest.json").read_text())
    hef_sha = hashlib.sha256((fetched / "model.hef").read_bytes()).hexdigest()
    assert manifest["hef_sha256"] == hef_sha
    assert (fetched / "model.hef.sha256").read_text() == f"{hef_sha}  model.hef\n"
    assert hashlib.sha256((fetched / "model.onnx").read_bytes()).hexdigest() == manifest["onnx_sha256"]
    assert (manifest["dfc_version"], manifest["hailort_version"], manifest["config_version"]) == (
        "3.33.0", "4.23", "lab-gpusrv-1",
    )  # fmt: skip
    on_host = host.file("/opt/hailo/compile/out/imu-encoder/1.0.0/model.hef")
    assert on_host.sha256sum == hef_sha and on_host.uid == 10001
    check = host.run(
        "cd /opt/hailo/compile/out/imu-encoder/1.0.0 && sha256sum --check --strict model.hef.sha256"
    )
    assert check.rc == 0, check.stderr


def test_runtime_image_list_in_the_registry_has_arm64(host):
    raw = host.run(f"docker buildx imagetools inspect --raw {LIST}")
    assert raw.rc == 0, raw.stderr
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in json.loads(raw.stdout)["manifests"]
    }
    assert platforms == {"linux/arm64", "linux/amd64"}
    digest = host.run(f"docker buildx imagetools inspect {LIST} --format '{{{{json .Manifest.Digest}}}}'")
    record = json.loads((EPHEMERAL / "sidecar-image.json").read_text())
    assert record["digest"] == json.loads(digest.stdout)
    revision = subprocess.run(["git", "-C", os.environ["MOLECULE_PROJECT_DIRECTORY"], "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert record["revision"] == revision
    git_tag = host.run(
        f"docker buildx imagetools inspect {record['git_tag']} --format '{{{{json .Manifest.Digest}}}}'"
    )
    assert json.loads(git_tag.stdout) == record["digest"], "the git-revision tag names the same list"


def test_stub_stack_is_healthy_and_passes_the_smoke(host):
    cid = host.run(f"{COMPOSE} ps -q hailo-inference-stub")
    assert cid.rc == 0 and cid.stdout.strip()
    state = json.loads(host.run(f"docker inspect {cid.stdout.strip()}").stdout)[0]
    assert state["State"]["Health"]["Status"] == "healthy"
    record = json.loads((EPHEMERAL / "sidecar-image.json").read_text())
    assert state["Config"]["Image"] == f"127.0.0.1:5000/lab-gpusrv/sidecar@{record['digest']}"
    smoke = host.run(
        f"{COMPOSE} exec -T hailo-inference-stub "
        "hailo-sidecar smoke --url http://127.0.0.1:9000 --expect-config-version lab-gpusrv-1"
    )
    assert smoke.rc == 0, smoke.stdout + smoke.stderr
    assert "smoke: 5 passed, 0 failed" in smoke.stdout
    deployed = json.loads(host.file("/opt/hailo-sidecar/release.json").content_string)
    assert deployed["current"] == {
        "profile": "stub", "image": state["Config"]["Image"], "config_version": "lab-gpusrv-1",
        "num_motifs": 12, "model": None,
    }  # fmt: skip
    assert json.loads(host.file("/etc/ansible/facts.d/hailo_sidecar.fact").content_string) == deployed

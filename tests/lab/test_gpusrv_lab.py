"""GPUSrv after the gpusrv playbook, beyond the shared host checks (tests/infra/test_gpusrv.py,
which this scenario's verifier runs too): log rotation, the builder for the runner's account,
the runner's registration and pinned tarball, the release fetched to the controller, the image
record, and the stub stack's smoke and release record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

RUNNER_HOME = "/opt/actions-runner"
HOST = "gpusrv-lab"
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LIST = "127.0.0.1:5000/lab-gpusrv/sidecar:0.1.0"
COMPOSE = "docker compose -p hailo --project-directory /opt/hailo-sidecar --profile stub"


def test_docker_log_rotation(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"]["max-size"] == "10m"
    info = host.run("docker info --format '{{json .}}'")
    assert info.rc == 0, info.stderr
    assert json.loads(info.stdout)["LoggingDriver"] == "json-file"


def test_builder_lists_arm64_for_the_runner_account(host):
    out = host.run("sudo -u github-runner -H docker buildx inspect --bootstrap hailo-builder")
    assert out.rc == 0, out.stderr
    platforms = next(line for line in out.stdout.splitlines() if line.strip().startswith("Platforms:"))
    assert "linux/arm64" in platforms and "linux/amd64" in platforms


def test_runner_listener_runs_from_its_home(host):
    user = host.user("github-runner")
    assert user.uid < 1000 and user.home == RUNNER_HOME
    unit = host.file("/etc/systemd/system/actions-runner.service").content_string
    assert f"ExecStart={RUNNER_HOME}/run.sh" in unit
    proc = host.process.get(comm="sleep", user="github-runner")
    assert proc is not None, "the runner's listener does not run as github-runner"


def test_runner_registered_for_the_repository(host):
    reg = json.loads(host.file(f"{RUNNER_HOME}/.runner").content_string)
    assert reg["gitHubUrl"] == "https://github.com/synchrony/hailo-pipeline"
    assert reg["agentName"] == HOST
    assert host.file(f"{RUNNER_HOME}/.hailo-runner-version").content_string.strip() == "2.329.0"


def test_runner_tarball_is_the_pinned_one(host):
    tarball = host.file(f"{RUNNER_HOME}/.downloads/actions-runner-2.329.0.tar.gz")
    assert tarball.exists and tarball.user == "github-runner"
    served = host.file("/srv/hailo-lab/actions-runner-standin.tar.gz")
    assert tarball.sha256sum == served.sha256sum


def test_release_fetched_to_the_controller(host):
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


def test_image_record_names_the_pushed_list(host):
    digest = host.run(f"docker buildx imagetools inspect {LIST} --format '{{{{json .Manifest.Digest}}}}'")
    record = json.loads((EPHEMERAL / "sidecar-image.json").read_text())
    assert record["digest"] == json.loads(digest.stdout)
    raw = json.loads(host.check_output(f"docker buildx imagetools inspect --raw {LIST}"))
    per_platform = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in raw["manifests"]
    }
    assert record["platform_digests"] == per_platform
    revision = subprocess.run(["git", "-C", os.environ["MOLECULE_PROJECT_DIRECTORY"], "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert record["revision"] == revision
    git_tag = host.run(
        f"docker buildx imagetools inspect {record['git_tag']} --format '{{{{json .Manifest.Digest}}}}'"
    )
    assert json.loads(git_tag.stdout) == record["digest"], "the git-revision tag names the same list"


def test_stub_stack_serves_the_pushed_list_and_passes_the_smoke(host):
    cid = host.check_output(f"{COMPOSE} ps -q hailo-inference-stub")
    state = json.loads(host.check_output(f"docker inspect {cid}"))[0]
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

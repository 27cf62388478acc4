"""The lab's GPUSrv after `make lab`, beyond the shared host checks (tests/infra/test_gpusrv.py):
log rotation, the builder for the runner's account, the runner's registration and pinned
tarball, the release fetched to the controller, the image record, the stub stack's smoke and
release record, and the HailoRT mirror."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from labplay import GPUSRV, LAB, ROOT, host, image_record, play

COMPOSE = "docker compose -p hailo --project-directory /opt/hailo-sidecar --profile stub"
RUNNER_HOME = "/opt/actions-runner"


@pytest.fixture(scope="module")
def gpusrv():
    return host(GPUSRV)


def test_docker_log_rotation(gpusrv):
    daemon = json.loads(gpusrv.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"]["max-size"] == "10m"
    info = gpusrv.run("docker info --format '{{json .}}'")
    assert info.rc == 0, info.stderr
    assert json.loads(info.stdout)["LoggingDriver"] == "json-file"


def test_builder_lists_arm64_for_the_runner_account(gpusrv):
    out = gpusrv.run("sudo -u github-runner -H docker buildx inspect --bootstrap hailo-builder")
    assert out.rc == 0, out.stderr
    platforms = next(line for line in out.stdout.splitlines() if line.strip().startswith("Platforms:"))
    assert "linux/arm64" in platforms and "linux/amd64" in platforms


def test_runner_listener_runs_from_its_home(gpusrv):
    user = gpusrv.user("github-runner")
    assert user.uid < 1000 and user.home == RUNNER_HOME
    unit = gpusrv.file("/etc/systemd/system/actions-runner.service").content_string
    assert f"ExecStart={RUNNER_HOME}/run.sh" in unit
    assert gpusrv.process.get(comm="sleep", user="github-runner") is not None, "no listener as github-runner"


def test_runner_registered_for_the_repository(gpusrv):
    reg = json.loads(gpusrv.file(f"{RUNNER_HOME}/.runner").content_string)
    assert reg["gitHubUrl"] == "https://github.com/synchrony/hailo-pipeline"
    assert reg["agentName"] == GPUSRV
    assert gpusrv.file(f"{RUNNER_HOME}/.hailo-runner-version").content_string.strip() == "2.329.0"


def test_runner_tarball_is_the_pinned_one(gpusrv):
    tarball = gpusrv.file(f"{RUNNER_HOME}/.downloads/actions-runner-2.329.0.tar.gz")
    assert tarball.exists and tarball.user == "github-runner"
    assert tarball.sha256sum == gpusrv.file("/srv/hailo-lab/actions-runner-standin.tar.gz").sha256sum


def test_release_fetched_to_the_controller(gpusrv):
    """hef_compile ran the compiler container (stand-in DFC) and fetched the release back."""
    fetched = LAB / "artifacts" / "imu-encoder" / "1.0.0"
    manifest = json.loads((fetched / "manifest.json").read_text())
    hef_sha = hashlib.sha256((fetched / "model.hef").read_bytes()).hexdigest()
    assert manifest["hef_sha256"] == hef_sha
    assert (fetched / "model.hef.sha256").read_text() == f"{hef_sha}  model.hef\n"
    assert hashlib.sha256((fetched / "model.onnx").read_bytes()).hexdigest() == manifest["onnx_sha256"]
    assert (manifest["dfc_version"], manifest["hailort_version"], manifest["config_version"]) == (
        "3.33.0", "4.23", "lab-1",
    )  # fmt: skip
    assert manifest["input"]["hef_shape"] == [1, 100, 9], "the parsed layout of the [N, 100, 9] input"
    on_host = gpusrv.file("/opt/hailo/compile/out/imu-encoder/1.0.0/model.hef")
    assert on_host.sha256sum == hef_sha and on_host.uid == 10001


def test_image_record_names_the_pushed_image(gpusrv):
    record = image_record()
    digest = gpusrv.check_output(
        f"docker buildx imagetools inspect {record['image']} --format '{{{{json .Manifest.Digest}}}}'"
    )
    assert json.loads(digest) == record["digest"] and record["ref"].endswith(f"@{record['digest']}")
    # The checkout's revision as the build script names it (with "-dirty-..." for uncommitted changes).
    env = {**os.environ, "PRINT_REVISION": "1"}
    revision = subprocess.run(["bash", "images/runtime/build.sh"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert record["revision"] == revision and record["platform"] == "linux/arm64"
    git_tag = gpusrv.check_output(
        f"docker buildx imagetools inspect {record['git_tag']} --format '{{{{json .Manifest.Digest}}}}'"
    )
    assert json.loads(git_tag) == record["digest"], "the git-revision tag names the same image"


def test_stub_stack_serves_the_pushed_image_and_passes_the_smoke(gpusrv):
    cid = gpusrv.check_output(f"{COMPOSE} ps -q hailo-inference-stub")
    state = json.loads(gpusrv.check_output(f"docker inspect {cid}"))[0]
    assert state["Config"]["Image"] == image_record()["ref"]
    smoke = gpusrv.run(
        f"{COMPOSE} exec -T hailo-inference-stub hailo-sidecar smoke --url http://127.0.0.1:9000 "
        "--expect-config-version lab-1"
    )
    assert smoke.rc == 0, smoke.stdout + smoke.stderr
    assert "smoke: 5 passed, 0 failed" in smoke.stdout
    assert gpusrv.check_output(f"{COMPOSE} exec -T hailo-inference-stub uname -m") == "aarch64"
    deployed = json.loads(gpusrv.file("/opt/hailo-sidecar/release.json").content_string)
    assert deployed["current"] == {
        "profile": "stub", "image": state["Config"]["Image"], "config_version": "lab-1", "num_motifs": 12,
        "model": None,
    }  # fmt: skip
    assert json.loads(gpusrv.file("/etc/ansible/facts.d/hailo_sidecar.fact").content_string) == deployed


def test_mirror_serves_both_sets_signed(gpusrv):
    """hailort_mirror: the two qualified sets, indexed per suite and architecture, signed with the
    key the Pis were given (build/lab/hailort-mirror.asc)."""
    for arch in ("amd64", "arm64"):
        index = gpusrv.check_output(
            f"curl -fsS http://127.0.0.1:8081/dists/trixie/main/binary-{arch}/Packages"
        )
        versions = sorted(ln.split(": ")[1] for ln in index.splitlines() if ln.startswith("Version: "))
        assert versions == ["4.22.0-1"] * 4 + ["4.23.0-1"] * 4, index
    exported = (LAB / "hailort-mirror.asc").read_text()
    assert gpusrv.file("/srv/hailort-mirror/hailort-mirror.asc").content_string == exported
    verify = gpusrv.run(
        "gpg --dearmor < /srv/hailort-mirror/hailort-mirror.asc > /tmp/mirror.gpg"
        " && gpgv --keyring /tmp/mirror.gpg /srv/hailort-mirror/dists/trixie/InRelease"
    )
    assert verify.rc == 0, verify.stderr
    state = gpusrv.file("/var/lib/hailort-mirror")
    assert state.mode == 0o700 and state.user == "root", "the signing key's folder is private"


def test_mirror_keeps_the_sets_after_the_archive_drops_them(gpusrv):
    """The archive moves on (its pool is gone): the mirror downloads nothing and changes nothing."""
    gpusrv.check_output("mv /srv/hailo-lab/apt/pool /srv/hailo-lab/apt/pool.gone")
    try:
        run = play("playbooks/gpusrv.yml", "--limit", GPUSRV, "--tags", "hailort_mirror")
    finally:
        gpusrv.check_output("mv /srv/hailo-lab/apt/pool.gone /srv/hailo-lab/apt/pool")
    assert run.rc == 0, run.out[-3000:]
    assert run.changed(GPUSRV) == 0

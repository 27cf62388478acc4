"""GPUSrv: Docker with buildx and compose, the builder with linux/arm64 and live binfmt, the CI
runner service, compiled releases whose checksums match their manifests, each collected into a
root-owned folder and signed there (never signed in the compiler's own folder), the runtime image
(linux/arm64) in the registry, and the stub stack serving the contract with that very image."""

from __future__ import annotations

import json

import pytest
from conftest import in_group, var

testinfra_hosts = ["ansible://gpusrv"]


@pytest.fixture(autouse=True)
def _gpusrv(host):
    in_group(host, "gpusrv")


def test_docker_engine_with_buildx_and_compose(host):
    docker = host.service("docker")
    assert docker.is_running and docker.is_enabled
    assert host.run("docker info --format '{{.ServerVersion}}'").rc == 0
    for plugin in ("buildx", "compose"):
        assert host.run(f"docker {plugin} version").rc == 0, f"docker {plugin} missing"


def test_builder_has_linux_arm64(host):
    name = var(host, "buildx_qemu_builder_name")
    out = host.run(f"docker buildx inspect --bootstrap {name}")
    assert out.rc == 0, out.stderr
    platforms = next(line for line in out.stdout.splitlines() if line.strip().startswith("Platforms:"))
    assert "linux/arm64" in platforms, platforms


def test_binfmt_runs_the_pushed_arm64_image(host, stack):
    """aarch64 binfmt is registered and live: the arm64 image from the registry runs here. (A
    container host cannot see binfmt_misc, though the machine's registration serves it.)"""
    if host.file("/proc/sys/fs/binfmt_misc/register").exists:
        entry = host.file("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        assert entry.exists and entry.content_string.startswith("enabled"), "no aarch64 binfmt entry"
    ref = stack.current["image"]
    out = host.run(f"docker run --rm --platform linux/arm64 --entrypoint uname {ref} -m")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "aarch64"


def test_runner_service_running_as_its_account_with_the_labels(host):
    user, home = var(host, "ci_runner_user"), var(host, "ci_runner_home")
    account = host.user(user)
    assert account.exists and account.uid != 0 and "docker" in account.groups
    svc = host.service("actions-runner")
    assert svc.is_enabled and svc.is_running
    assert f"User={user}" in host.file("/etc/systemd/system/actions-runner.service").content_string
    reg = json.loads(host.file(f"{home}/.runner").content_string)
    assert reg["labels"].split(",") == var(host, "ci_runner_labels")
    assert "hailo-builder" in reg["labels"].split(",")


def test_compiled_releases_match_their_manifests(host):
    out_dir = f"{var(host, 'hef_compile_work_dir')}/out"
    manifests = host.run(f"find {out_dir} -mindepth 3 -maxdepth 3 -name manifest.json").stdout.split()
    assert manifests, f"no compiled release under {out_dir}"
    for path in manifests:
        release = path.rsplit("/", 1)[0]
        manifest = json.loads(host.file(path).content_string)
        assert release.endswith(f"/{manifest['model']}/{manifest['version']}"), path
        assert host.file(f"{release}/model.hef").sha256sum == manifest["hef_sha256"], release
        assert host.file(f"{release}/model.onnx").sha256sum == manifest["onnx_sha256"], release
        check = host.run(f"cd {release} && sha256sum --check --strict model.hef.sha256")
        assert check.rc == 0, check.stdout + check.stderr


def test_signed_releases_are_roots_regular_files_matching_the_compilers(host):
    """hef_compile signs and fetches only what it collected out of the compiler's folder."""
    out_dir, signed_dir = f"{var(host, 'hef_compile_work_dir')}/out", var(host, "hef_compile_releases_dir")
    manifests = host.run(f"find {signed_dir} -mindepth 3 -maxdepth 3 -name manifest.json").stdout.split()
    assert manifests, f"no signed release under {signed_dir}"
    for path in manifests:
        release = path.rsplit("/", 1)[0]
        entries = host.run(f"find {release} -mindepth 1 -printf '%y %u %m %f\\n'").stdout.split("\n")
        for kind, user, mode, name in (e.split() for e in entries if e):
            assert (kind, user, mode) == ("f", "root", "644"), f"{release}/{name}: {kind} {user} {mode}"
        assert host.file(f"{release}/manifest.json.sig").exists, f"{release} is not signed"
        compiled = release.replace(signed_dir, out_dir, 1)
        for name in ("manifest.json", "model.hef", "golden.json"):
            assert host.file(f"{release}/{name}").sha256sum == host.file(f"{compiled}/{name}").sha256sum


def test_stub_stack_runs_the_pushed_linux_arm64_image(host, stack):
    """What GPUSrv's contract tests exercise is what the Pis pull: the one linux/arm64 image, by
    digest, from the registry."""
    ref = stack.current["image"]
    assert ref.startswith(
        f"{var(host, 'sidecar_image_registry')}/{var(host, 'sidecar_image_repository')}@sha256:"
    )
    raw = host.run(f"docker buildx imagetools inspect --raw {ref}")
    assert raw.rc == 0, raw.stderr
    assert "manifests" not in json.loads(raw.stdout), "a multi-platform index instead of the arm64 image"
    arch = host.check_output(f"docker image inspect --format '{{{{.Architecture}}}}' {ref}")
    assert arch == "arm64"
    assert stack.container()["Config"]["Image"] == ref


def test_stub_stack_healthy_non_root_read_only(host, stack):
    assert stack.profile == "stub"
    state = stack.container()
    assert state["State"]["Health"]["Status"] == "healthy"
    assert state["Config"]["User"] not in ("", "0", "root", "0:0")
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    health = json.loads(stack.get("/healthz"))
    assert health["status"] == "ok" and health["serving_mode"] == "stub"
    assert health["config_version"] == stack.current["config_version"]

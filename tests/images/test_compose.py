"""The Compose file (roles/sidecar_stack/files/compose.yml, linked from compose/): the stub profile
up with the runtime image (linux/arm64, under QEMU here, as on GPUSrv), the contract smoke from the
host and from the stack's network, the hardening as Docker applied it, and the profiles as Compose
resolves them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from dockerutil import ROOT, SIDECAR, free_port, sh

COMPOSE = ROOT / "compose" / "compose.yml"
CONFIG_VERSION = "ci-compose-1"


def compose(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    return sh(
        "docker", "compose", "-f", str(COMPOSE), *args, env={**os.environ, **env}, timeout=timeout
    ).stdout


@pytest.fixture(scope="module")
def stub_stack(images: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {
        # Every profile mounts the models root (the release pointer lives there); none here.
        "MODELS_DIR": str(tmp_path_factory.mktemp("models")),
        "COMPOSE_PROJECT_NAME": "hailo-ci-stub",
        "SIDECAR_IMAGE": images["ref"],
        "SIDECAR_PORT": str(free_port()),
        "EDGE_NETWORK": "hailo-ci-stub-edge",
        "CONFIG_VERSION": CONFIG_VERSION,
        # The arm64 image under QEMU on a busy CI machine: a probe can take longer than the
        # default 5 s (compose/.env.example says to raise it there).
        "SIDECAR_HEALTH_TIMEOUT": "30s",
    }
    try:
        # --wait returns once the container's own HEALTHCHECK (hailo-sidecar-probe) passes.
        compose(env, "--profile", "stub", "up", "-d", "--wait", "--wait-timeout", "240", timeout=300)
        yield env
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            compose(env, "--profile", "stub", "down", "--volumes", "--remove-orphans", "--timeout", "40")


def _container(env: dict[str, str]) -> dict[str, Any]:
    cid = compose(env, "--profile", "stub", "ps", "-q", "hailo-inference-stub").strip()
    assert cid, "the stub service has no container"
    data: list[dict[str, Any]] = json.loads(sh("docker", "inspect", cid).stdout)
    return data[0]


def test_stub_profile_passes_the_smoke_from_the_host(stub_stack: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{stub_stack['SIDECAR_PORT']}"
    out = sh(SIDECAR, "smoke", "--url", url, "--expect-config-version", CONFIG_VERSION, check=False)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "smoke: 5 passed, 0 failed" in out.stdout


def test_edgeinfer_url_works_on_the_stack_network(images: dict[str, Any], stub_stack: dict[str, str]) -> None:
    """A caller on the edge network reaches http://hailo-inference:9000/infer, as EdgeInfer does."""
    out = sh(
        "docker", "run", "--rm", "--read-only", "--network", stub_stack["EDGE_NETWORK"], images["ref"],
        "smoke", "--url", "http://hailo-inference:9000", "--expect-config-version", CONFIG_VERSION,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_container_runs_hardened(stub_stack: dict[str, str]) -> None:
    c = _container(stub_stack)
    hc = c["HostConfig"]
    assert c["Config"]["User"] == "10001:10001"
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert hc["Privileged"] is False
    assert hc["Memory"] == 512 * 1024 * 1024 and hc["PidsLimit"] == 128
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    assert set(hc["Tmpfs"]) == {"/tmp"}
    assert [b["HostIp"] for b in hc["PortBindings"]["9000/tcp"]] == ["127.0.0.1"]
    assert c["State"]["Health"]["Status"] == "healthy"
    name = c["Name"].lstrip("/")
    assert sh("docker", "exec", name, "id", "-u").stdout.strip() == "10001"
    denied = sh("docker", "exec", name, "touch", "/opt/venv/probe", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert sh("docker", "exec", name, "touch", "/tmp/probe").returncode == 0


REF = "127.0.0.1:5000/hailo/sidecar@sha256:" + "0" * 64


def test_the_image_is_required() -> None:
    """No default image: a stack without SIDECAR_IMAGE fails to resolve, naming the variable."""
    env = {k: v for k, v in os.environ.items() if k != "SIDECAR_IMAGE"}
    proc = sh("docker", "compose", "-f", str(COMPOSE), "--profile", "stub", "config", env=env, check=False)
    assert proc.returncode != 0 and "SIDECAR_IMAGE" in proc.stderr


def test_real_profile_config() -> None:
    """The Pi profile as Compose resolves it: device, group, read-only model mount, real mode."""
    sha = "ab" * 32
    env = {
        "SIDECAR_IMAGE": REF,
        "MODEL_SHA256": sha,
        "CONFIG_VERSION": "cfg-9",
        "HAILO_GID": "989",
        "MODELS_DIR": "/srv/hailo/models",
    }
    cfg = json.loads(compose(env, "--profile", "real", "config", "--format", "json"))
    svc = cfg["services"]["hailo-inference"]
    assert set(cfg["services"]) == {"hailo-inference"}, "only the real service runs in the real profile"
    assert svc["devices"][0]["source"] == "/dev/hailo0" and svc["devices"][0]["target"] == "/dev/hailo0"
    assert svc["group_add"] == ["989"]
    mounts = {m["target"]: m for m in svc["volumes"]}
    assert set(mounts) == {"/models", "/state"}
    mount = mounts["/models"]
    assert (mount["source"], mount["target"], mount["read_only"]) == ("/srv/hailo/models", "/models", True)
    # The unready exit's counts survive restarts (STATE_DIR): a writable folder of the host.
    assert mounts["/state"]["source"] == str(COMPOSE.parent / "state")
    assert not mounts["/state"].get("read_only") and svc["environment"]["STATE_DIR"] == "/state"
    e = svc["environment"]
    assert (e["INFER_MODE"], e["MODEL_SHA256"], e["CONFIG_VERSION"]) == ("hailo", sha, "cfg-9")
    assert e["HEF_PATH"] == "/models/model.hef"
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and svc["user"] == "10001:10001"
    assert svc["networks"]["edge"]["aliases"] == ["hailo-inference"]
    assert "privileged" not in svc
    assert svc["platform"] == "linux/arm64" and svc["image"] == REF


def test_a_second_device_keeps_its_name() -> None:
    """HailoRT opens /dev/ + the name under /sys/class/hailo_chardev: /dev/hailo1 stays hailo1."""
    env = {"SIDECAR_IMAGE": REF, "MODEL_SHA256": "ab" * 32, "HAILO_DEVICE": "/dev/hailo1"}
    svc = json.loads(compose(env, "--profile", "real", "config", "--format", "json"))["services"][
        "hailo-inference"
    ]
    assert (svc["devices"][0]["source"], svc["devices"][0]["target"]) == ("/dev/hailo1", "/dev/hailo1")
    assert svc["environment"]["HAILO_DEVICE"] == "/dev/hailo1"


def test_onnx_profile_config() -> None:
    """The CPU profile: the release's ONNX mounted read-only, its sha256 enforced, no device."""
    sha = "cd" * 32
    env = {
        "SIDECAR_IMAGE": REF,
        "MODEL_SHA256": sha,
        "MODELS_DIR": "/srv/hailo/models",
        "MODEL_FILE": "model.onnx",
    }
    cfg = json.loads(compose(env, "--profile", "onnx", "config", "--format", "json"))
    assert set(cfg["services"]) == {"hailo-inference-onnx"}
    svc = cfg["services"]["hailo-inference-onnx"]
    (mount,) = svc["volumes"]
    assert (mount["source"], mount["target"], mount["read_only"]) == ("/srv/hailo/models", "/models", True)
    e = svc["environment"]
    assert (e["INFER_MODE"], e["ONNX_PATH"], e["MODEL_SHA256"]) == ("onnx", "/models/model.onnx", sha)
    assert "devices" not in svc and "group_add" not in svc
    assert svc["read_only"] is True and svc["user"] == "10001:10001"
    assert svc["networks"]["edge"]["aliases"] == ["hailo-inference"]


def test_env_example_documents_every_variable() -> None:
    import re

    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / "compose" / ".env.example").read_text(), re.M))
    assert used == documented, f"undocumented: {used - documented}; stale: {documented - used}"


SERVICES = [("stub", "hailo-inference-stub"), ("onnx", "hailo-inference-onnx"), ("real", "hailo-inference")]


@pytest.mark.parametrize(("profile", "service"), SERVICES)
def test_every_profile_reads_the_release_pointer_from_the_models_root(profile: str, service: str) -> None:
    """The sidecar_stack role sets RELEASE_POINTER and MODELS_DIR: a new release is swapped into the
    running sidecar, so .env (and the container) change only with the image or the settings."""
    env = {
        "SIDECAR_IMAGE": REF,
        "MODELS_DIR": "/opt/hailo-sidecar/models",
        "RELEASE_POINTER": "/models/current.json",
    }
    svc = json.loads(compose(env, "--profile", profile, "config", "--format", "json"))["services"][service]
    assert svc["environment"]["RELEASE_POINTER"] == "/models/current.json"
    (mount,) = [m for m in svc["volumes"] if m["target"] == "/models"]
    assert (mount["source"], mount["target"], mount["read_only"]) == (
        "/opt/hailo-sidecar/models",
        "/models",
        True,
    )

"""The Pi's path on the lab: a runtime image with HailoRT installed from release files, a release
written by hailo-compile, and the Compose `real` profile serving it in hailo mode.

Hailo's wheel and .deb, the DFC and the device cannot exist here; stand-ins take their place
(lab/standins: hailort_dist, standin_dfc, the hailo_platform package; /dev/null as the device
node). The image build (images/runtime/build.sh, linux/arm64 under QEMU), install-hailort.sh,
hailo-compile, Compose, Docker and the sidecar are the real ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerutil import COMPILE, ROOT, SIDECAR, free_port, sh

sys.path.insert(0, str(ROOT / "lab" / "standins"))
import hailort_dist
import standin_dfc

VERSION = "4.23.0"
COMPOSE = ROOT / "compose" / "compose.yml"


def build(tmp: Path, files: Path, version: str, check: bool = True) -> Any:
    out = tmp / "images.json"
    ca = "/etc/ssl/certs/ca-certificates.crt"
    env = {**os.environ, "REGISTRY": "127.0.0.1:5000", "IMAGE_NAME": "hailo/sidecar-standin",
           "HAILORT_DIR": str(files), "HAILORT_VERSION": version, "OUT": str(out), "FORCE": "1",
           "BUILD_CA": ca if os.path.isfile(ca) else ""}  # fmt: skip
    proc = sh("bash", "images/runtime/build.sh", cwd=ROOT, env=env, timeout=1200, check=check)
    return json.loads(out.read_text()) if check else proc


@pytest.fixture(scope="module")
def hailort_image(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Any]) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hailort")
    built: dict[str, Any] = build(tmp, hailort_dist.build(tmp, VERSION, "arm64"), VERSION)
    return built


def test_image_carries_the_hailort_it_was_given(
    hailort_image: dict[str, Any], images: dict[str, Any]
) -> None:
    ref = hailort_image["ref"]
    assert hailort_image["image"].endswith(f":{images['version']}-hailort{VERSION}"), hailort_image
    assert (hailort_image["platform"], hailort_image["hailort"]) == ("linux/arm64", VERSION)
    assert json.loads(sh("docker", "run", "--rm", ref, "versions").stdout)["hailort"] == VERSION
    labels = json.loads(sh("docker", "image", "inspect", ref).stdout)[0]["Config"]["Labels"]
    assert labels["io.synchrony.hailort.version"] == VERSION
    cli = sh("docker", "run", "--rm", "--entrypoint", "hailortcli", ref).stdout
    assert f"version {VERSION}" in cli
    libs = sh("docker", "run", "--rm", "--entrypoint", "ls", ref, "/opt/hailort/lib").stdout.split()
    assert libs == ["libhailort.so", f"libhailort.so.{VERSION}"]


@pytest.mark.parametrize(
    ("file_version", "arch", "asked", "message"),
    [
        (VERSION, "arm64", "4.22.0", f"is HailoRT {VERSION}, HAILORT_VERSION is 4.22.0"),
        (VERSION, "amd64", VERSION, "is for amd64, this image is arm64"),
    ],
    ids=["version", "arch"],
)
def test_mismatched_hailort_files_fail_the_build(
    tmp_path: Path, file_version: str, arch: str, asked: str, message: str
) -> None:
    proc = build(tmp_path, hailort_dist.build(tmp_path, file_version, arch), asked, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_real_profile_serves_a_compiled_release(hailort_image: dict[str, Any], tmp_path: Path) -> None:
    # 1. Compile: reference model + calibration set -> release folder (stand-in DFC).
    bindir, site = standin_dfc.install(tmp_path / "dfc")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    sh(SIDECAR, "reference-model", str(tmp_path / "model.onnx"))
    sh(SIDECAR, "calib-set", str(tmp_path / "calib.npy"), "--n", "64")
    compile_args = ["--onnx", str(tmp_path / "model.onnx"), "--calib", str(tmp_path / "calib.npy"),
                    "--version", "1.0.0", "--config-version", "lab-real-1",
                    "--out", str(tmp_path / "releases")]  # fmt: skip
    sh(COMPILE, *compile_args, env=env)
    release = tmp_path / "releases" / "imu-encoder" / "1.0.0"
    manifest = json.loads((release / "manifest.json").read_text())

    # 2. Serve it with the real profile, as the Pi does.
    stack = {
        "COMPOSE_PROJECT_NAME": "hailo-ci-real",
        "SIDECAR_IMAGE": hailort_image["ref"],
        "SIDECAR_PORT": str(free_port()),
        "EDGE_NETWORK": "hailo-ci-real-edge",
        "MODELS_DIR": str(release),
        "MODEL_SHA256": manifest["hef_sha256"],
        "CONFIG_VERSION": manifest["config_version"],
        # The stand-in's device node; the container sees it under its host name, as HailoRT needs.
        "HAILO_DEVICE": "/dev/null",
        # arm64 under QEMU on a busy CI machine (as in tests/images/test_compose.py).
        "SIDECAR_HEALTH_TIMEOUT": "30s",
    }
    cenv = {**os.environ, **stack}
    base = ["docker", "compose", "-f", str(COMPOSE), "--profile", "real"]
    try:
        sh(*base, "up", "-d", "--wait", "--wait-timeout", "240", env=cenv, timeout=300)
        url = f"http://127.0.0.1:{stack['SIDECAR_PORT']}"
        out = sh(SIDECAR, "smoke", "--url", url, "--expect-sha256", manifest["hef_sha256"],
                 "--expect-config-version", "lab-real-1", check=False)  # fmt: skip
        print(out.stdout)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "mode hailo" in out.stdout
        cid = sh(*base, "ps", "-q", "hailo-inference", env=cenv).stdout.strip()
        c = json.loads(sh("docker", "inspect", cid).stdout)[0]
        (device,) = c["HostConfig"]["Devices"]
        assert device["PathOnHost"] == device["PathInContainer"] == "/dev/null"
        assert {"HAILO_DEVICE=/dev/null", "INFER_MODE=hailo"} <= set(c["Config"]["Env"])
        assert c["HostConfig"]["GroupAdd"] == ["10001"]
        (models,) = [m for m in c["Mounts"] if m["Destination"] == "/models"]
        assert models["RW"] is False
    finally:
        sh(*base, "down", "--volumes", "--remove-orphans", "--timeout", "40", env=cenv, check=False)

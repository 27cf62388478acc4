"""The compiler image built from images/compiler/Dockerfile with a DFC wheel supplied through the
`dfc` build context, run the way the build server runs it: non-root, read-only root filesystem,
inputs mounted read-only. It is built by images/compiler/build.sh, the role's build path. The
wheel is the stand-in DFC (lab/standins/standin_dfc.py): Hailo's cannot be installed here, so this
checks the image and hailo-compile inside it, not the DFC itself."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerutil import ROOT, SIDECAR, sh

sys.path.insert(0, str(ROOT / "lab" / "standins"))
import standin_dfc

# The first test builds the image (its fixture: up to 900 s, the build's own limit): under
# QEMU-heavy neighbours a cold build took 261 s of the default 300 (ci-10 timed out at 300).
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def compiler_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    wheels = tmp_path_factory.mktemp("dfc")
    standin_dfc.wheel(wheels)
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    env = {**os.environ, "IMAGE_NAME": "hailo-lab/compiler-standin", "APT_PACKAGES": "",
           "BASE": "127.0.0.1:5000/library/debian:bookworm-slim",
           "BUILD_CA": str(ca) if ca.is_file() else ""}  # fmt: skip
    out = sh("bash", "images/compiler/build.sh", str(wheels), cwd=ROOT, env=env, timeout=900).stdout
    ref = out.strip().splitlines()[-1]
    assert ref.startswith("hailo-lab/compiler-standin:3.33.0-"), out
    return ref


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    os.chown(out, 10001, 10001)
    sh(SIDECAR, "reference-model", str(inp / "model.onnx"))
    sh(SIDECAR, "calib-set", str(inp / "calib.npy"), "--n", "64")
    return tmp_path


def run(image: str, work: Path, *args: str) -> Any:
    return sh("bash", str(ROOT / "images/compiler/run.sh"), image, str(work / "in"), str(work / "out"),
              "--onnx", "/in/model.onnx", "--calib", "/in/calib.npy", "--version", "1.0.0",
              "--config-version", "lab-1", *args, check=False)  # fmt: skip


def test_compiles_a_release_and_reruns_from_cache(compiler_image: str, workdir: Path) -> None:
    first = run(compiler_image, workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    release = workdir / "out" / "imu-encoder" / "1.0.0"
    manifest = json.loads((release / "manifest.json").read_text())
    assert (manifest["dfc_version"], manifest["hailort_version"]) == ("3.33.0", "4.23")
    assert (release / "model.hef").stat().st_uid == 10001, "the container ran as uid 10001"
    again = run(compiler_image, workdir)
    assert again.returncode == 0 and "compiled nothing" in again.stdout


def test_invalid_input_exits_2_in_the_container(compiler_image: str, workdir: Path) -> None:
    proc = run(compiler_image, workdir, "--hw-arch", "hailo10h")
    assert proc.returncode == 2 and "--hw-arch 'hailo10h'" in proc.stderr
    assert not any((workdir / "out").iterdir())


def test_image_is_non_root_and_keeps_no_dfc_wheel(compiler_image: str) -> None:
    cfg = json.loads(sh("docker", "image", "inspect", compiler_image).stdout)[0]["Config"]
    assert cfg["User"] == "10001:10001" and cfg["Entrypoint"] == ["hailo-compile"]
    find = ["find", "/", "-xdev", "-name", "hailo_dataflow_compiler-*.whl"]
    found = sh(
        "docker", "run", "--rm", "--user", "0", "--entrypoint", find[0], compiler_image, *find[1:]
    ).stdout
    assert found == "", f"the DFC wheel stayed in the image: {found}"

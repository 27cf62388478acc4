"""The runtime image as shipped: one linux/arm64 image (the Pis' platform, and what GPUSrv's stub
stack runs under QEMU), its configuration and labels, and nothing secret or model-like in its
environment, history or layers."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from dockerutil import sh

BUDGET_MB = 300
SECRET_NAME = re.compile(r"(?i)token|secret|passw|api_?key|private|credential|_cert|ca_bundle")
# Key or certificate material anywhere; credential assignments in the environment and build steps.
PEM = re.compile(
    rb"-----BEGIN ([A-Z ]*(?:PRIVATE KEY|CERTIFICATE))-----\s+[A-Za-z0-9+/=\s]{64,}-----END \1-----"
)
ASSIGNMENT = re.compile(r"(?i)(password|passwd|token|secret|api_?key)=\S")
MODEL_SUFFIXES = (".hef", ".onnx", ".har", ".npy", ".npz")
ALLOWED_BUILD_ARGS = {"BASE", "VERSION", "REVISION", "CREATED", "SOURCE", "HAILORT_VERSION"}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def inspect(ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(sh("docker", "image", "inspect", ref).stdout)
    return data[0]


def test_one_arm64_image_under_the_version_and_revision_tags(images: dict[str, Any]) -> None:
    raw = json.loads(sh("docker", "buildx", "imagetools", "inspect", "--raw", images["image"]).stdout)
    assert "manifests" not in raw, "a multi-platform index: the runtime image is linux/arm64 only"
    assert images["platform"] == "linux/arm64"
    for tag in (images["image"], images["git_tag"]):
        digest = sh(
            "docker", "buildx", "imagetools", "inspect", tag, "--format", "{{json .Manifest.Digest}}"
        ).stdout
        assert json.loads(digest) == images["digest"], f"{tag} is not the image just built"
    dirty = "-dirty" if "-dirty-" in images["revision"] else ""  # a checkout with uncommitted changes
    assert images["git_tag"].endswith(f":git-{images['revision'][:12]}{dirty}")


def test_config_user_port_healthcheck_labels(images: dict[str, Any]) -> None:
    cfg = inspect(images["image"])
    assert cfg["Architecture"] == "arm64" and cfg["Os"] == "linux"
    c = cfg["Config"]
    assert c["User"] == "10001:10001", "the image must run as the fixed non-root uid"
    assert "9000/tcp" in c["ExposedPorts"]
    assert c["Healthcheck"]["Test"] == ["CMD", "hailo-sidecar-probe", "/readyz"]
    assert "HAILORT_LOGGER_PATH=NONE" in c["Env"], "HailoRT would write hailort.log into the tmpfs"
    labels = c["Labels"]
    assert labels["org.opencontainers.image.version"] == images["version"]
    assert labels["org.opencontainers.image.revision"] == images["revision"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", labels["org.opencontainers.image.created"])
    assert labels["io.synchrony.hailort.version"] == images["hailort"]
    size_mb = cfg["Size"] / 1e6
    print(f"linux/arm64: {size_mb:.0f} MB uncompressed, {images['compressed_size'] / 1e6:.0f} MB compressed")
    assert size_mb <= BUDGET_MB, f"the image is {size_mb:.0f} MB, budget {BUDGET_MB}"


def test_environment_and_history_hold_no_secrets(images: dict[str, Any]) -> None:
    ref = images["image"]
    for entry in inspect(ref)["Config"]["Env"]:
        name, _, value = entry.partition("=")
        assert not SECRET_NAME.search(name), f"secret-looking variable in the image: {name}"
        assert not PEM.search(value.encode()), f"key or certificate in {name}"
    history = sh("docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).stdout
    assert not PEM.search(history.encode()) and not ASSIGNMENT.search(history)
    assert str(HOST_CA) not in history, "the CA bundle path leaked into a build step"
    for m in re.finditer(r"\|\d+ ((?:\w+=\S* ?)+)", history):
        names = {kv.split("=", 1)[0] for kv in m.group(1).split()}
        assert names <= ALLOWED_BUILD_ARGS, (
            f"unexpected build args recorded in history: {names - ALLOWED_BUILD_ARGS}"
        )


def _layer_files(ref: str, tmp: Path) -> list[tuple[str, bytes | None, int]]:
    """(path, content if at most 1 MiB, size) of every regular file in every layer."""
    saved = tmp / "image.tar"
    sh("docker", "save", "--output", str(saved), ref)
    out: list[tuple[str, bytes | None, int]] = []
    with tarfile.open(saved) as image:
        for member in image.getmembers():
            blob = image.extractfile(member) if member.isfile() else None
            if blob is None:
                continue
            try:
                layer = tarfile.open(fileobj=io.BytesIO(blob.read()))  # noqa: SIM115 - closed below
            except tarfile.ReadError:
                continue  # config, manifest and index blobs are JSON
            with layer:
                for f in layer.getmembers():
                    data = layer.extractfile(f) if f.isfile() else None
                    if data is not None:
                        out.append((f.name, data.read() if f.size <= 1 << 20 else None, f.size))
    return out


def test_layers_hold_no_model_files_and_no_secrets(images: dict[str, Any], tmp_path: Path) -> None:
    files = _layer_files(images["image"], tmp_path)
    assert len(files) > 1000, "layers were not read"
    names = [n for n, _, _ in files]
    assert not [n for n in names if n.endswith(MODEL_SUFFIXES)], "model files in the image"
    assert not [n for n in names if n.startswith(("models/", "run/secrets/"))]
    ca = HOST_CA.read_bytes() if HOST_CA.is_file() else None
    for name, data, size in files:
        if data is None:
            continue
        assert not PEM.search(data), f"key or certificate material in {name}"
        if ca is not None and size == len(ca):
            assert hashlib.sha256(data).digest() != hashlib.sha256(ca).digest(), (
                f"the build CA bundle is in {name}"
            )


def test_image_reports_its_platform_and_hailort(images: dict[str, Any]) -> None:
    out = sh(
        "docker", "run", "--rm", "--read-only", "--platform", "linux/arm64", images["image"], "versions"
    ).stdout
    v = json.loads(out)
    assert v["machine"] == "aarch64"
    assert v["hailort"] == images["hailort"]
    assert v["python"].startswith("3.11."), "debian:bookworm-slim's Python 3.11 (matches python3-hailort)"
    assert v["onnxruntime"] != "none"

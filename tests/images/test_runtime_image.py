"""The runtime image as shipped: multi-arch list, configuration, labels, and nothing secret or
model-like in its environment, history or layers."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from dockerutil import ROOT, sh

ARCH = {"linux/amd64": ("amd64", "x86_64"), "linux/arm64": ("arm64", "aarch64")}
BUDGET_MB = {"linux/arm64": 300}
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


def test_manifest_list_carries_both_platforms(images: dict[str, Any]) -> None:
    raw = json.loads(sh("docker", "buildx", "imagetools", "inspect", "--raw", images["list"]).stdout)
    listed = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in raw["manifests"]}
    assert set(listed) == {"linux/amd64", "linux/arm64"}
    for platform, built in images["platforms"].items():
        assert listed[platform] == built["digest"], f"{platform} in the list is not the image just built"
    text = sh("docker", "buildx", "imagetools", "inspect", images["list"]).stdout
    assert "Platform:  linux/arm64" in text


def test_config_user_port_healthcheck_labels(images: dict[str, Any], platform: str) -> None:
    built = images["platforms"][platform]
    cfg = inspect(built["ref"])
    assert cfg["Architecture"] == ARCH[platform][0]
    c = cfg["Config"]
    assert c["User"] == "10001:10001", "the image must run as the fixed non-root uid"
    assert "9000/tcp" in c["ExposedPorts"]
    assert c["Healthcheck"]["Test"][-3:] == ["probe", "--path", "/readyz"]
    labels = c["Labels"]
    assert labels["org.opencontainers.image.version"] == images["version"]
    assert labels["org.opencontainers.image.revision"] == images["revision"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", labels["org.opencontainers.image.created"])
    assert labels["io.synchrony.hailort.version"] == images["hailort"]
    size_mb = built["size"] / 1e6
    print(f"{platform}: {size_mb:.0f} MB uncompressed")
    if platform in BUDGET_MB:
        assert size_mb <= BUDGET_MB[platform], (
            f"{platform} image is {size_mb:.0f} MB, budget {BUDGET_MB[platform]}"
        )


def test_environment_and_history_hold_no_secrets(images: dict[str, Any], platform: str) -> None:
    ref = images["platforms"][platform]["ref"]
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


def test_layers_hold_no_model_files_and_no_secrets(
    images: dict[str, Any], platform: str, tmp_path: Path
) -> None:
    files = _layer_files(images["platforms"][platform]["ref"], tmp_path)
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


def test_image_reports_its_platform_and_hailort(images: dict[str, Any], platform: str) -> None:
    ref = images["platforms"][platform]["ref"]
    out = sh("docker", "run", "--rm", "--read-only", "--platform", platform, ref, "versions").stdout
    v = json.loads(out)
    assert v["machine"] == ARCH[platform][1]
    assert v["hailort"] == images["hailort"]
    assert v["python"].startswith("3.11."), "debian:bookworm-slim's Python 3.11 (matches python3-hailort)"
    assert v["onnxruntime"] != "none"


def test_compose_defaults_to_the_built_list(images: dict[str, Any]) -> None:
    assert f"${{SIDECAR_IMAGE:-{images['list']}}}" in (ROOT / "compose" / "compose.yml").read_text()

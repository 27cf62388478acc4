"""The simulated Pis after playbooks/pi.yml: HailoRT set, device access, boot and module
settings, Docker, and the sidecar serving release A (arm64 image under QEMU, onnx profile)."""

from __future__ import annotations

import json

from labplay import STACK, image, manifest, smoke

SET = ["hailo-dkms", "hailofw", "hailort", "python3-hailort"]


def test_device_group_udev_rule_and_module_options(host):
    assert host.group("hailo").exists
    assert "hailo" in host.user("hailo").groups
    rule = host.file("/etc/udev/rules.d/99-hailo-group.rules")
    assert 'SUBSYSTEM=="hailo_chardev", GROUP="hailo", MODE="0660"' in rule.content_string
    conf = host.file("/etc/modprobe.d/hailo_pci.conf").content_string
    assert "options hailo_pci force_desc_page_size=4096" in conf


def test_boot_config_gen3_under_all_and_reboot_reported_pending(host):
    text = host.file("/boot/firmware/config.txt").content_string
    block = text.split("# BEGIN synchrony.hailo_pipeline.hailort\n")[1].split("# END")[0]
    assert block == "[all]\ndtparam=pciex1_gen=3\n"
    assert text.count("dtparam=pciex1_gen=") == 1
    # Not rebooted (hailort_reboot_allowed is false): the Debian marker says a restart is due.
    assert "hailort" in host.file("/run/reboot-required").content_string


def test_hailort_set_installed_from_the_signed_repository_and_held(host):
    held = host.run("apt-mark showhold").stdout.split()
    for name in SET:
        pkg = host.package(name)
        assert pkg.is_installed and pkg.version == "4.23.0-1", name
        assert name in held, f"{name} is not held"
    sources = host.file("/etc/apt/sources.list.d/hailort.sources").content_string
    assert "file:///srv/hailo-lab/apt" in sources and "-----BEGIN PGP PUBLIC KEY BLOCK-----" in sources
    assert "4.23.0" in host.check_output("hailortcli --version")
    assert (
        host.check_output("python3 -c 'import hailo_platform; print(hailo_platform.__version__)'") == "4.23.0"
    )


def test_pinned_set_or_hailo_all(host):
    pref = host.file("/etc/apt/preferences.d/hailort.pref")
    if host.backend.get_hostname() == "pi-bookworm":
        # hailort_version_set: {} there: the archive's hailo-all, held, no pin file.
        assert host.package("hailo-all").is_installed and "hailo-all" in host.run("apt-mark showhold").stdout
        assert not pref.exists
    else:
        for name in SET:
            assert f"Package: {name}\nPin: version 4.23.0-1\nPin-Priority: 1001" in pref.content_string
        assert (
            "4.23.0-1" in host.run("apt-cache policy hailort").stdout.split("Candidate:")[1].splitlines()[0]
        )


def test_docker_with_compose_v2(host):
    assert host.service("docker").is_running
    assert host.run("docker compose version").rc == 0
    if host.backend.get_hostname() == "pi-bookworm":
        # Docker's packages from trixie, everything else (libc) still bookworm's.
        assert host.package("docker.io").version.startswith("26.")
        assert host.package("libc6").version.startswith("2.36")


def _container(host) -> dict:
    cid = host.check_output(f"{STACK} ps -q hailo-inference-onnx")
    assert cid, "the onnx service is not running"
    return json.loads(host.check_output(f"docker inspect {cid}"))[0]


def test_sidecar_runs_the_arm64_image_non_root_with_models_read_only(host):
    state = _container(host)
    assert state["State"]["Health"]["Status"] == "healthy"
    assert state["Config"]["Image"] == image()
    assert state["Config"]["User"] == "10001:10001"
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    (models,) = [m for m in state["Mounts"] if m["Destination"] == "/models"]
    assert models["RW"] is False and models["Source"].startswith(
        "/opt/hailo-sidecar/models/imu-encoder-1.0.0-"
    )
    arch = host.check_output(f"{STACK} exec -T hailo-inference-onnx uname -m")
    assert arch == "aarch64", "the simulated Pi must run the linux/arm64 image (QEMU)"
    denied = host.run(f"{STACK} exec -T hailo-inference-onnx touch /models/x")
    assert denied.rc != 0 and "Read-only file system" in denied.stderr


def test_smoke_passes_with_the_release_sha256(host):
    assert "smoke: 5 passed, 0 failed" in smoke(host, "1.0.0", "lab-A")


def test_release_json_and_local_fact(host):
    m = manifest("1.0.0")
    record = json.loads(host.file("/opt/hailo-sidecar/release.json").content_string)
    path = record["current"]["model"]["path"]
    assert record["current"] == {
        "profile": "onnx", "image": image(), "config_version": "lab-A", "num_motifs": 12,
        "model": {"name": "imu-encoder", "version": "1.0.0", "file": "model.onnx",
                  "sha256": m["onnx_sha256"], "path": path},
    }  # fmt: skip
    assert record["previous"] is None and record["deployed_at"].endswith("Z")
    assert json.loads(host.file("/etc/ansible/facts.d/hailo_sidecar.fact").content_string) == record
    # The release folder: what GPUSrv compiled, read-only, checksums as in the manifest.
    for name, key in (("model.onnx", "onnx_sha256"), ("model.hef", "hef_sha256")):
        f = host.file(f"{path}/{name}")
        assert f.sha256sum == m[key] and f.mode == 0o444 and f.user == "root"
    assert not host.run("ls -d /opt/hailo-sidecar/models/.incoming-*").stdout


def test_published_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9000").is_listening
    assert not host.socket("tcp://0.0.0.0:9000").is_listening

"""The lab's simulated Pis after `make lab`, beyond the shared host checks (tests/infra/test_pi.py):
HailoRT set, device access, boot and module settings, Docker, and the sidecar serving GPUSrv's
release (the arm64 image under QEMU, onnx profile)."""

from __future__ import annotations

import json
import subprocess

import pytest
from labplay import LAB, PIS, RELEASE_A, STACK, host, image_record, manifest, smoke

SET = ["hailo-dkms", "hailofw", "hailort", "python3-hailort"]


@pytest.fixture(params=PIS, scope="module")
def pi(request):
    return host(request.param)


def image() -> str:
    return str(image_record()["ref"])


def test_device_group_udev_rule_and_module_options_in_files_of_our_own(pi):
    assert pi.group("hailo").exists
    assert "hailo" in pi.user("hailo").groups
    rule = pi.file("/etc/udev/rules.d/99-hailo-pipeline.rules")
    assert 'SUBSYSTEM=="hailo_chardev", GROUP="hailo", MODE="0660"' in rule.content_string
    conf = pi.file("/etc/modprobe.d/hailo-pipeline.conf").content_string
    assert "options hailo_pci force_desc_page_size=4096" in conf
    # hailofw's own files are left as the package shipped them.
    assert pi.run("dpkg --verify hailofw").stdout == "", "a file of the hailofw package was changed"
    assert (
        pi.file("/etc/modprobe.d/hailo_pci.conf").exists
        and pi.file("/lib/udev/rules.d/60-hailofw.rules").exists
    )


def test_boot_config_gen3_under_all_and_reboot_reported_pending(pi):
    text = pi.file("/boot/firmware/config.txt").content_string
    block = text.split("# BEGIN synchrony.hailo_pipeline.hailort\n")[1].split("# END")[0]
    assert block == "[all]\ndtparam=pciex1_gen=3\n"
    assert text.count("dtparam=pciex1_gen=") == 1
    # Not rebooted (hailort_reboot_allowed is false): the Debian marker says a restart is due.
    assert "hailort" in pi.file("/run/reboot-required").content_string


def test_hailort_set_installed_from_the_signed_repository_and_held(pi):
    held = pi.run("apt-mark showhold").stdout.split()
    for name in SET:
        pkg = pi.package(name)
        assert pkg.is_installed and pkg.version == "4.23.0-1", name
        assert name in held, f"{name} is not held"
    assert "4.23.0" in pi.check_output("hailortcli --version")
    assert (
        pi.check_output("python3 -c 'import hailo_platform; print(hailo_platform.__version__)'") == "4.23.0"
    )


def test_the_dkms_module_is_where_dkms_puts_it(pi):
    """hailort-drivers' dkms.conf.in installs hailo_pci to updates/dkms (Debian's dkms too, for
    debian*), which depmod prefers over the kernel's own modules."""
    kernel = pi.check_output("uname -r")
    assert (
        pi.check_output("modinfo -F filename hailo_pci") == f"/lib/modules/{kernel}/updates/dkms/hailo_pci.ko"
    )


def test_one_entry_for_the_archive_and_apt_works(pi):
    """Raspberry Pi OS's own raspi.list is used where it exists (lab-pi-bookworm): a second entry
    with another Signed-By would break every apt run. lab-pi-trixie has no entry for the archive
    at all: it installs from GPUSrv's mirror."""
    ours = pi.file("/etc/apt/sources.list.d/hailort.sources")
    mirror = pi.file("/etc/apt/sources.list.d/hailo-pipeline-mirror.sources")
    if pi.file("/etc/apt/sources.list.d/raspi.list").exists:
        assert not ours.exists, "a second entry for the archive next to raspi.list"
        assert not mirror.exists
    else:
        assert not ours.exists, "the archive is switched off on the mirror's Pi"
        assert "URIs: http://lab-gpusrv:8081/" in mirror.content_string
        assert "-----BEGIN PGP PUBLIC KEY BLOCK-----" in mirror.content_string
    update = pi.run("apt-get update")
    assert update.rc == 0 and "Conflicting values" not in update.stderr, update.stderr
    assert not update.stderr.strip(), f"apt warned: {update.stderr}"


def test_the_mirror_serves_the_pinned_set_with_the_archive_off():
    """lab-pi-trixie: hailort_apt_repository false, no copy of the archive on the host; the set
    came from GPUSrv's hailort_mirror, verified with the mirror's key."""
    pi = host("lab-pi-trixie")
    assert not pi.file("/srv/hailo-lab/apt").exists
    assert pi.run("grep -rl /srv/hailo-lab/apt /etc/apt").stdout == ""
    policy = pi.check_output("apt-cache policy hailort hailo-dkms python3-hailort hailofw")
    lines = [ln.split() for ln in policy.splitlines() if ln.strip()[:1].isdigit() and "://" in ln]
    sources = {parts[1].rstrip("/") for parts in lines}
    assert sources == {"http://lab-gpusrv:8081"}, policy
    for name in SET:
        assert pi.package(name).version == "4.23.0-1"


def test_pinned_set_or_hailo_all(pi):
    pref = pi.file("/etc/apt/preferences.d/hailort.pref")
    if pi.backend.get_hostname() == "lab-pi-bookworm":
        # hailort_version_set: {} there: the archive's hailo-all, held, no pin file.
        assert pi.package("hailo-all").is_installed and "hailo-all" in pi.run("apt-mark showhold").stdout
        assert not pref.exists
    else:
        for name in SET:
            assert f"Package: {name}\nPin: version 4.23.0-1\nPin-Priority: 1001" in pref.content_string
        assert "4.23.0-1" in pi.run("apt-cache policy hailort").stdout.split("Candidate:")[1].splitlines()[0]


def test_docker_with_compose_v2(pi):
    assert pi.service("docker").is_running
    assert pi.run("docker compose version").rc == 0
    if pi.backend.get_hostname() == "lab-pi-bookworm":
        # Docker's packages from trixie, everything else (libc) still bookworm's.
        assert pi.package("docker.io").version.startswith("26.")
        assert pi.package("libc6").version.startswith("2.36")


def _container(pi) -> dict:
    cid = pi.check_output(f"{STACK} ps -q hailo-inference-onnx")
    assert cid, "the onnx service is not running"
    return json.loads(pi.check_output(f"docker inspect {cid}"))[0]


def test_sidecar_runs_the_arm64_image_non_root_with_models_read_only(pi):
    state = _container(pi)
    assert state["State"]["Health"]["Status"] == "healthy"
    assert state["Config"]["Image"] == image()
    assert state["Config"]["User"] == "10001:10001"
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    (models,) = [m for m in state["Mounts"] if m["Destination"] == "/models"]
    assert models["RW"] is False and models["Source"] == "/opt/hailo-sidecar/models"
    env = dict(e.split("=", 1) for e in state["Config"]["Env"])
    # The model and its sha256 come from the pointer; compose passes MODEL_SHA256 empty (unset).
    assert env["RELEASE_POINTER"] == "/models/current.json" and env.get("MODEL_SHA256", "") == ""
    arch = pi.check_output(f"{STACK} exec -T hailo-inference-onnx uname -m")
    assert arch == "aarch64", "the simulated Pi must run the linux/arm64 image (QEMU)"
    denied = pi.run(f"{STACK} exec -T hailo-inference-onnx touch /models/x")
    assert denied.rc != 0 and "Read-only file system" in denied.stderr


def test_smoke_passes_with_the_release_sha256(pi):
    assert "smoke: 5 passed, 0 failed" in smoke(pi, "1.0.0", "lab-1")


def test_release_json_and_local_fact(pi):
    m = manifest(RELEASE_A)
    record = json.loads(pi.file("/opt/hailo-sidecar/release.json").content_string)
    path = record["current"]["model"]["path"]
    folder = path.rsplit("/", 1)[1]
    assert record["current"] == {
        "profile": "onnx", "image": image(), "config_version": "lab-1", "num_motifs": 12,
        "model": {"name": "imu-encoder", "version": "1.0.0", "file": "model.onnx",
                  "sha256": m["onnx_sha256"], "path": path, "folder": folder},
    }  # fmt: skip
    # The pointer the sidecar serves from, and what it reports.
    pointer = json.loads(pi.file("/opt/hailo-sidecar/models/current.json").content_string)
    assert pointer == {"folder": folder, "file": "model.onnx", "sha256": m["onnx_sha256"],
                       "config_version": "lab-1", "num_motifs": 12, "model": "imu-encoder",
                       "version": "1.0.0"}  # fmt: skip
    assert record["previous"] is None and record["deployed_at"].endswith("Z")
    assert json.loads(pi.file("/etc/ansible/facts.d/hailo_sidecar.fact").content_string) == record
    # The release folder: what GPUSrv compiled, read-only, checksums as in the manifest.
    for name, want in (("model.onnx", m["onnx_sha256"]), ("model.hef", m["hef_sha256"]),
                       ("golden.json", m["golden"]["sha256"])):  # fmt: skip
        f = pi.file(f"{path}/{name}")
        assert f.sha256sum == want and f.mode == 0o444 and f.user == "root"
    assert not pi.run("ls -d /tmp/*.hailo-release").stdout, "a staging folder was left behind"


def test_the_release_is_signed_by_gpusrv_and_verifies_on_the_pi(pi):
    """lab-gpusrv's hef_compile signed the release; the Pi holds the signature and it verifies there
    with the fleet's allowed_signers (the role checked it before placing the folder)."""
    record = json.loads(pi.file("/opt/hailo-sidecar/release.json").content_string)
    path = record["current"]["model"]["path"]
    signers = (LAB / "allowed_signers").read_text()
    assert signers.startswith(
        'hailo-pipeline-release@lab-gpusrv namespaces="hailo-pipeline-release" ssh-ed25519 '
    )
    pi.run(f"printf '%s' '{signers}' > /tmp/allowed_signers_test")
    verify = pi.run(
        "ssh-keygen -Y verify -f /tmp/allowed_signers_test -I hailo-pipeline-release@lab-gpusrv "
        f"-n hailo-pipeline-release -s {path}/manifest.json.sig < {path}/manifest.json"
    )
    pi.run("rm -f /tmp/allowed_signers_test")
    assert verify.rc == 0 and "Good" in verify.stdout, verify.stderr


def test_published_on_the_machines_loopback_only(pi):
    """In the lab the stack listens on the host container's every address (sidecar_stack_bind
    0.0.0.0) and the container publishes it on the machine's 127.0.0.1 only."""
    assert pi.socket("tcp://0.0.0.0:9000").is_listening
    inspect = subprocess.run(["docker", "inspect", pi.backend.get_hostname()], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    bindings = json.loads(inspect)[0]["HostConfig"]["PortBindings"]
    assert [b["HostIp"] for b in bindings["9000/tcp"]] == ["127.0.0.1"]

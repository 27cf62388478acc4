"""The release signing key on lab-gpusrv: mode 0600, root's, and nowhere but its own file: not in
Ansible's output at -vvv, not in any other file on GPUSrv (its Docker images included), not on
the controller."""

from __future__ import annotations

from pathlib import Path

from labplay import GPUSRV, LAB, host, play

KEY = "/etc/hailo-pipeline/release-signing/id_ed25519"


def test_the_signing_key_stays_in_its_file() -> None:
    g = host(GPUSRV)
    key = g.file(KEY)
    assert key.exists and key.mode == 0o600 and key.user == "root"
    body = [ln for ln in key.content_string.splitlines() if ln and not ln.startswith("-----")]
    # OpenSSH's key format, decoded: bytes 0-156 are the header, the public key and (in the private
    # section) the key type and the public key again; the 32-byte private seed is at 161-192, in the
    # fourth base64 line (bytes 157-209). The third line holds only public bytes.
    secret = body[3]
    run = play("playbooks/gpusrv.yml", "--tags", "hef_compile", "-vvv",
               env={"HAILO_RUNNER_TOKEN": "lab-registration-token"})  # fmt: skip
    assert run.rc == 0, run.out[-3000:]
    assert "Sign the release's manifest" in run.out
    assert secret not in run.out, "the private key reached Ansible's output"
    # Every top-level folder but the kernel's and the runtime's: grep's --exclude-dir=proc does not
    # keep it out of /proc (it read /proc/1/pagemap for hours); -D skip: no FIFO blocks it.
    tops = "$(ls -d /* | grep -vxE '/(proc|sys|dev|run)')"
    found = g.run(f"grep -rlF -D skip -- '{secret}' {tops} 2>/dev/null").stdout.split()
    assert found == [KEY], f"the private key is in other files on {GPUSRV}: {found}"
    on_controller = [p for p in LAB.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert on_controller == [], on_controller
    assert Path(LAB / "allowed_signers").read_text().startswith("hailo-pipeline-release@lab-gpusrv ")


def test_a_link_to_the_key_in_the_compilers_output_is_refused() -> None:
    """A compromised compiler (its DFC wheel runs as the container's user, who owns the output
    folder) replaces model.onnx by a link to the release key: hailo-compile inside the container
    sees a dangling link and calls the release up to date, and root used to sign and fetch it,
    following the link, into the controller's artifacts. The role refuses it before signing; the
    controller's release and GPUSrv's signed one stay as they were."""
    g = host(GPUSRV)
    out = "/opt/hailo/compile/out/imu-encoder/1.0.0"
    fetched = LAB / "artifacts" / "imu-encoder" / "1.0.0"
    before = {p.name: p.read_bytes() for p in fetched.iterdir()}
    signed = g.check_output("sha256sum /opt/hailo/releases/imu-encoder/1.0.0/*")
    g.check_output(f"cp -a {out}/model.onnx /root/model.onnx.keep")
    try:
        g.check_output(f"setpriv --reuid=10001 --regid=10001 --clear-groups ln -sfn {KEY} {out}/model.onnx")
        run = play(
            "playbooks/gpusrv.yml",
            "--tags",
            "hef_compile",
            env={"HAILO_RUNNER_TOKEN": "lab-registration-token"},
        )
    finally:
        g.check_output(f"rm -f {out}/model.onnx && cp -a /root/model.onnx.keep {out}/model.onnx")
        g.check_output("rm -f /root/model.onnx.keep")
    assert run.rc != 0, run.out[-3000:]
    assert "model.onnx is a symbolic link: a release holds regular files only" in run.text, run.out[-3000:]
    assert {p.name: p.read_bytes() for p in fetched.iterdir()} == before, "the controller's release changed"
    assert g.check_output("sha256sum /opt/hailo/releases/imu-encoder/1.0.0/*") == signed

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

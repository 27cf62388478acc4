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
    secret = body[2]  # a line of the private part (the first ones repeat the public key's header)
    run = play("playbooks/gpusrv.yml", "--tags", "hef_compile", "-vvv",
               env={"HAILO_RUNNER_TOKEN": "lab-registration-token"})  # fmt: skip
    assert run.rc == 0, run.out[-3000:]
    assert "Sign the release's manifest" in run.out
    assert secret not in run.out, "the private key reached Ansible's output"
    found = g.run(
        f"grep -rlF -- '{secret}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null"
    ).stdout.split()
    assert found == [KEY], f"the private key is in other files on {GPUSRV}: {found}"
    on_controller = [p for p in LAB.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert on_controller == [], on_controller
    assert Path(LAB / "allowed_signers").read_text().startswith("hailo-pipeline-release@lab-gpusrv ")

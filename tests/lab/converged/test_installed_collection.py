"""The collection as a Galaxy user installs it (the tarball, not this checkout) runs both playbooks
against the lab's converged hosts: gpusrv.yml for real with nothing to change (it builds the image
and the compiler from the sources the tarball ships), pi.yml in check mode. The rollouts
(tests/lab/rollout) run pi.yml from the same install for real."""

from __future__ import annotations

import subprocess

from labplay import GPUSRV, PIS, ROOT, play


def test_gpusrv_playbook_from_the_installed_tarball_changes_nothing(installed_playbooks):
    assert not (installed_playbooks.parent / "lab").exists(), "the lab is not part of the collection"
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    # Outside a git checkout the revision of the sources is given, as a Galaxy user would.
    run = play(installed_playbooks / "gpusrv.yml", "-e", f"sidecar_image_revision={revision}")
    assert run.rc == 0, run.out[-4000:]
    assert run.changed(GPUSRV) == 0, run.out[-4000:]


def test_pi_playbook_from_the_installed_tarball_in_check_mode(installed_playbooks):
    run = play(installed_playbooks / "pi.yml", "--check", extra={"pi_rollout_batches": ["100%"]})
    assert run.rc == 0, run.out[-4000:]
    for name in PIS:
        assert run.recap[name]["failed"] == 0 and run.changed(name) == 0, run.out[-4000:]

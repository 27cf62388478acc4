"""dpkg interrupted in the middle of a HailoRT install (power lost during the apt run).

apt installs in two passes: every package unpacked (`dpkg --unpack`), then configured (`dpkg
--configure`, where hailo-dkms's postinst builds and installs the driver). The drill leaves
lab-pi-bookworm between the two, as a cut there would: hailo-dkms and hailort unpacked again
(`apt-get download` of the installed versions), not configured (`dpkg --audit` lists them). The
unpack takes their hold away, as apt's unpack of a held package does in the role's upgrade
(allow_change_held_packages): dpkg sets every package it unpacks to "install" (dpkg's
src/main/unpack.c, process_archive: `if (wanttoinstall(pkg)) pkg_set_want(pkg, PKG_WANT_INSTALL)`),
so they are "iU", and a cut there leaves HailoRT unheld. The next run of the hailort role
finishes the configuration and holds them again; when the configuration itself fails (the
driver's postinst cannot install the module: its folder made a file), the run stops naming `dpkg
--configure -a` and the fix. Not reproduced: dpkg's own journal (/var/lib/dpkg/updates) of a run
killed inside dpkg, which the role reads the same way (`ls -A /var/lib/dpkg/updates`)."""

from __future__ import annotations

import pytest
from drill import note
from labplay import host, play

pytestmark = pytest.mark.timeout(900)
PI = "lab-pi-bookworm"
HAILORT = (
    "lab/playbooks/hailort.yml",
    "--limit",
    PI,
    "--tags",
    "hailort_preflight,hailort_install,hailort_verify",
)
PACKAGES = ("hailo-dkms", "hailort")


def status(pi, name: str) -> str:
    return pi.check_output(f"dpkg-query --show --showformat='${{db:Status-Abbrev}}' {name}").strip()


def test_an_interrupted_hailort_install_is_finished_or_named(timed):
    pi = host(PI)
    # The installed versions' packages, as apt fetched them for the install the cut interrupts.
    version = "dpkg-query --show --showformat='${Version}'"
    wanted = " ".join(f"{n}={pi.check_output(f'{version} {n}')}" for n in PACKAGES)
    pi.run_expect([0], "rm -rf /tmp/drill-debs && mkdir /tmp/drill-debs")
    pi.run_expect([0], f"cd /tmp/drill-debs && apt-get download {wanted}")
    assert {status(pi, n) for n in PACKAGES} == {"hi"}, "the drill starts from HailoRT installed and held"
    pi.run_expect([0], "dpkg --unpack /tmp/drill-debs/*.deb")
    assert {status(pi, n) for n in PACKAGES} == {"iU"}, (
        "unpacked, not configured (the hold gone with the unpack)"
    )
    assert "unpacked but not yet configured" in pi.check_output("dpkg --audit")
    kernel = pi.check_output("uname -r")
    extra = f"/lib/modules/{kernel}/extra"
    # The driver's postinst cannot install the module: configuring fails as a failed DKMS build does.
    pi.run_expect([0], f"mv {extra} {extra}.away && touch {extra}")
    try:
        stopped = play(*HAILORT)
    finally:
        pi.run_expect([0], f"rm -f {extra} && mv {extra}.away {extra}")
    assert stopped.rc != 0
    assert (
        f"dpkg was interrupted on {PI}" in stopped.text
        and "`dpkg --configure -a` could not finish it" in stopped.text
    )
    assert "Run `dpkg --configure -a` on the host" in stopped.text
    assert status(pi, "hailo-dkms") in ("iF", "iU"), "the failed configuration is dpkg's to report"
    finished = play(*HAILORT)
    assert finished.rc == 0, finished.out[-3000:]
    assert f"dpkg was interrupted on {PI}; `dpkg --configure -a` finished it" in finished.text
    assert {status(pi, n) for n in PACKAGES} == {"hi"}, "installed and held again"
    assert pi.check_output("dpkg --audit") == ""
    assert pi.file(f"{extra}/hailo_pci.ko").exists, "the driver's postinst ran"
    again = play(*HAILORT)
    assert again.rc == 0 and again.changed(PI) == 0, "nothing left to finish"
    note("dpkg interrupted during the HailoRT install", stopped_s=round(stopped.seconds),
         finished_s=round(finished.seconds))  # fmt: skip

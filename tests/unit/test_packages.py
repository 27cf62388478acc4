"""plugins/filter/packages.py: which packages a role still asks apt for, which it still has to
hold, and the installed versions, from dpkg-query's output; checked on made-up output and on this
Debian machine's own dpkg database."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location(
    "packages", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "packages.py"
)
assert _spec and _spec.loader
packages: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packages)
# The roles' format.
FMT = "--showformat=${db:Status-Abbrev} ${Package} ${Version}\n"
OUT = (
    "ii  dkms 3.0.10-8\n"
    "rc  docker.io 20.10.24\n"  # removed, its configuration left
    "iU  openssh-client 1:9.2p1-2\n"  # unpacked, not configured
    "hi  hailort 4.23.0-1\n"  # held
    "ii  libc6:arm64 2.36-9\n"
    "iiR python3-hailort 4.23.0-1\n"  # reinstall required: broken
)


def test_only_fully_installed_packages_count() -> None:
    wanted = ["dkms", "docker.io", "openssh-client", "libc6", "hailort", "python3-hailort", "node-exporter"]
    assert packages.dpkg_missing(OUT, wanted) == [
        "docker.io",
        "openssh-client",
        "python3-hailort",
        "node-exporter",
    ]
    # apt's NAME=VERSION: another version installed is missing too (apt would change it).
    assert packages.dpkg_missing(OUT, ["hailort=4.23.0-1", "dkms=3.0.*"]) == []
    assert packages.dpkg_missing(OUT, ["hailort=4.22.0-1", "dkms=3.1*"]) == ["hailort=4.22.0-1", "dkms=3.1*"]
    assert packages.dpkg_missing("", ["dkms"]) == ["dkms"]
    assert packages.dpkg_missing(None, ["dkms"]) == ["dkms"]


def test_holds_only_what_is_installed_and_not_held() -> None:
    assert packages.dpkg_unheld(OUT, ["hailort", "dkms", "docker.io", "hailo-all"]) == ["dkms"]


def test_versions_of_installed_packages() -> None:
    assert packages.dpkg_versions(OUT) == {"dkms": "3.0.10-8", "hailort": "4.23.0-1", "libc6": "2.36-9"}


def test_against_this_hosts_dpkg() -> None:
    """The roles' format on this Debian machine: an installed package and an unknown one (dpkg-query
    exits 1 and still lists the known ones; the roles ignore the exit code)."""
    run = subprocess.run(
        ["dpkg-query", "--show", FMT, "dpkg", "no-such-package-hailo"], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert packages.dpkg_missing(run.stdout, ["dpkg", "no-such-package-hailo"]) == ["no-such-package-hailo"]
    version = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", "dpkg"], capture_output=True, text=True
    )
    assert packages.dpkg_versions(run.stdout) == {"dpkg": version.stdout}


def test_a_held_package_unpacked_and_not_configured_is_held_again_once_configured(tmp_path: Path) -> None:
    """Power lost between apt's unpack and configure passes of a HailoRT upgrade, with this
    machine's dpkg in a database of the test's own: the unpack takes the hold away (dpkg sets what it
    unpacks to "install": src/main/unpack.c, process_archive, `pkg_set_want(pkg, PKG_WANT_INSTALL)`),
    so the package is "iU", `dpkg --audit` lists it (what makes the hailort role run `dpkg
    --configure -a`), and it is neither installed nor to hold for the filters. Once configured it
    is "ii": the role's hold step holds it again (tests/lab/drills/test_dpkg.py on the lab)."""
    control = tmp_path / "pkg" / "DEBIAN"
    control.mkdir(parents=True)
    (control / "control").write_text(
        "Package: hailo-drill\nVersion: 4.23.0-1\nArchitecture: all\nMaintainer: lab <lab@example.org>\n"
        "Description: a package to interrupt\n"
    )
    deb = tmp_path / "hailo-drill.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(control.parent), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    admin, root = tmp_path / "admin", tmp_path / "root"
    for d in (admin / "updates", admin / "info", root):
        d.mkdir(parents=True)
    (admin / "status").touch()
    dpkg = ["dpkg", "--force-not-root", "--force-script-chrootless", f"--admindir={admin}",
            f"--instdir={root}", "--log=/dev/null"]  # fmt: skip

    def run(*args: str, stdin: str | None = None) -> str:
        out = subprocess.run([*dpkg, *args], input=stdin, check=True, capture_output=True, text=True)
        return out.stdout

    def state() -> str:
        return subprocess.run(["dpkg-query", f"--admindir={admin}", "--show", FMT, "hailo-drill"],
                              check=True, capture_output=True, text=True).stdout  # fmt: skip

    run("--install", str(deb))
    run("--set-selections", stdin="hailo-drill hold\n")
    assert state().split()[0] == "hi"
    assert packages.dpkg_unheld(state(), ["hailo-drill"]) == []
    run("--unpack", str(deb))
    assert state().split()[0] == "iU"
    assert "unpacked but not yet configured" in run("--audit")
    assert packages.dpkg_missing(state(), ["hailo-drill=4.23.0-1"]) == ["hailo-drill=4.23.0-1"]
    assert packages.dpkg_unheld(state(), ["hailo-drill"]) == []
    run("--configure", "-a")
    assert state().split()[0] == "ii" and run("--audit") == ""
    assert packages.dpkg_missing(state(), ["hailo-drill=4.23.0-1"]) == []
    assert packages.dpkg_unheld(state(), ["hailo-drill"]) == ["hailo-drill"]

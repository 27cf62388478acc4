"""Stand-in for the Raspberry Pi archive's HailoRT packages (tests and the lab only, no Hailo code).

The real packages cannot exist here. ``build_repo`` writes a signed apt repository with the same
package names and relations as the archive's Hailo-8 set, one set per version:
  hailo-all        depends on the four below at the same version
  hailort          /usr/bin/hailortcli (answers --version, scan, fw-control identify), libhailort
  python3-hailort  hailo_platform with __version__ (depends on hailort at the same version)
  hailo-dkms       /usr/src/hailo_pci-VERSION/dkms.conf (depends on dkms; nothing is built)
  hailofw          /lib/firmware/hailo/hailo8_fw.bin (its text is the firmware version)
so the hailort role's repository, pin, hold and version checks run against apt for real.
``hailortcli fw-control identify`` answers only when a character device sits at /dev/hailo0.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import tempfile
from email.utils import formatdate
from pathlib import Path

SUITES = ("bookworm", "trixie")
ARCHES = ("amd64", "arm64")
STANDIN = "stand-in for the Raspberry Pi archive's package (tests and lab only)"

HAILORTCLI = """#!/bin/sh
# Stand-in hailortcli {v} (tests and lab only): not HailoRT.
fw_version() {{ cat /lib/firmware/hailo/hailo8_fw.bin 2>/dev/null || echo unknown; }}
case "$1" in
  --version) echo "HailoRT-CLI version {v}" ;;
  scan|fw-control)
    if [ ! -c /dev/hailo0 ]; then
      echo "[HailoRT] [error] CHECK failed - Failed to create vdevice. there are not enough free" \
        "devices. requested: 1, found: 0 - HAILO_OUT_OF_PHYSICAL_DEVICES(74)" >&2
      exit 74
    fi
    if [ "$1" = scan ]; then echo "Hailo Devices:"; echo "[-] Device: 0001:01:00.0"; exit 0; fi
    echo "Executing on device: 0001:01:00.0"
    echo "Identifying board"
    echo "Control Protocol Version: 2"
    echo "Firmware Version: $(fw_version) (release,app,extended context switch buffer)"
    echo "Board Name: Hailo-8"
    echo "Device Architecture: HAILO8"
    ;;
  *) echo "stand-in hailortcli: $1 is not simulated" >&2; exit 2 ;;
esac
"""


def _deb(pool: Path, name: str, version: str, files: dict[str, tuple[str, int]], depends: str = "") -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        control = (
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            f"Maintainer: hailo-pipeline lab <lab@localhost>\nSection: misc\nPriority: optional\n"
            + (f"Depends: {depends}\n" if depends else "")
            + f"Description: {STANDIN}\n"
        )
        (root / "DEBIAN/control").write_text(control)
        for rel, (text, mode) in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        out = pool / f"{name}_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                       check=True, capture_output=True)  # fmt: skip
        return out


def _set(pool: Path, upstream: str, revision: str = "1") -> list[Path]:
    v = f"{upstream}-{revision}"
    binding = (
        f'"""Stand-in hailo_platform {upstream} (tests and lab only): not HailoRT."""\n'
        f'__version__ = "{upstream}"\n'
    )
    return [
        _deb(pool, "hailort", v, {
            "usr/bin/hailortcli": (HAILORTCLI.format(v=upstream), 0o755),
            f"usr/lib/libhailort.so.{upstream}": (f"stand-in libhailort {upstream}\n", 0o644),
        }),
        _deb(pool, "python3-hailort", v, {
            "usr/lib/python3/dist-packages/hailo_platform/__init__.py": (binding, 0o644),
        }, depends=f"hailort (= {v})"),
        _deb(pool, "hailo-dkms", v, {
            f"usr/src/hailo_pci-{upstream}/dkms.conf": (
                f'# stand-in: nothing to build\nPACKAGE_NAME="hailo_pci"\n'
                f'PACKAGE_VERSION="{upstream}"\n', 0o644),
        }, depends="dkms"),
        _deb(pool, "hailofw", v, {"lib/firmware/hailo/hailo8_fw.bin": (f"{upstream}\n", 0o644)}),
        _deb(pool, "hailo-all", v, {}, depends=", ".join(
            f"{p} (= {v})" for p in ("hailort", "python3-hailort", "hailo-dkms", "hailofw"))),
    ]  # fmt: skip


def _stanza(deb: Path, root: Path) -> str:
    control = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
    ).stdout
    data = deb.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return (
        control.rstrip("\n") + f"\nFilename: {deb.relative_to(root)}\nSize: {len(data)}\nSHA256: {digest}\n"
    )


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", *args],
                          check=True, capture_output=True, text=True)  # fmt: skip


def build_repo(dest: Path, versions: tuple[str, ...] = ("4.23.0", "4.22.0")) -> Path:
    """Writes the repository to ``dest``; returns the ASCII-armored signing key (dest/archive-key.asc)."""
    pool = dest / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    debs = [d for v in versions for d in _set(pool, v)]
    packages = "\n".join(_stanza(d, dest) for d in sorted(debs)).encode()
    home = Path(tempfile.mkdtemp(prefix="hailo-apt-gpg-"))
    os.chmod(home, 0o700)
    _gpg(
        home,
        "--passphrase",
        "",
        "--quick-gen-key",
        "hailo-pipeline lab stand-in archive",
        "ed25519",
        "sign",
        "never",
    )
    key = dest / "archive-key.asc"
    key.write_text(_gpg(home, "--armor", "--export").stdout)
    for suite in SUITES:
        dist = dest / "dists" / suite
        sums = []
        for arch in ARCHES:
            d = dist / "main" / f"binary-{arch}"
            d.mkdir(parents=True, exist_ok=True)
            for name, body in (("Packages", packages), ("Packages.gz", gzip.compress(packages, mtime=0))):
                (d / name).write_bytes(body)
                sums.append(f" {hashlib.sha256(body).hexdigest()} {len(body)} main/binary-{arch}/{name}")
        (dist / "Release").write_text(
            f"Origin: hailo-pipeline lab\nLabel: stand-in Raspberry Pi archive (Hailo packages)\n"
            f"Suite: {suite}\nCodename: {suite}\nDate: {formatdate(usegmt=True)}\n"
            f"Architectures: {' '.join(ARCHES)}\nComponents: main\nSHA256:\n" + "\n".join(sums) + "\n"
        )
        _gpg(home, "--clearsign", "--output", str(dist / "InRelease"), str(dist / "Release"))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    return key


if __name__ == "__main__":
    import sys

    print(build_repo(Path(sys.argv[1]), tuple(sys.argv[2:]) or ("4.23.0", "4.22.0")))

"""Stand-in for the Raspberry Pi archive's HailoRT packages (lab only, no Hailo code).

The real packages cannot exist here. ``build_repo`` writes a signed apt repository with the same
package names and relations as the archive's Hailo-8 set, one set per version:
  hailo-all        depends on the four below at the same version (bookworm's hailo-all does not
                   depend on hailo-dkms, HAILO.md: this stand-in's does, as trixie's may)
  hailort          /usr/bin/hailortcli, libhailort
  python3-hailort  hailo_platform with __version__ (depends on hailort at the same version)
  hailo-dkms       /usr/src/hailo_pci-VERSION/dkms.conf (depends on dkms); its postinst puts a
                   hailo_pci.ko whose modinfo version is VERSION under /lib/modules/$(uname -r)/
                   updates/dkms, where DKMS installs hailort-drivers' module (its dkms.conf.in
                   says DEST_MODULE_LOCATION=/updates/dkms, and Debian's dkms uses /updates/dkms
                   for debian* whatever the package says), and runs depmod (kmod's depmod prefers
                   updates/ over the kernel's own modules)
  hailofw          /lib/firmware/hailo/hailo8_fw.VERSION.bin, and the two files the real package
                   owns (dpkg -L hailofw, 4.18): /etc/modprobe.d/hailo_pci.conf (a conffile) and
                   /lib/udev/rules.d/60-hailofw.rules
and an empty linux-image-rpi-2712 (the kernel metapackage), so the hailort role's repository, pin,
hold and version checks run against apt for real.

hailortcli prints what the real one prints (hailort/hailortcli: `--version`, fw_control_command.cpp
for `fw-control identify`, parse_hef_command.cpp for `parse-hef`, benchmark_command.cpp for the
`benchmark` summary, with made-up figures) for a simulated device that is
present when a character device sits at /dev/hailo0. Without one, as 4.23 does with no device
listed: `scan` prints "Hailo devices not found" (scan_command.cpp), `fw-control identify` prints
nothing, both exit 0 (command.cpp DeviceCommand runs on each device found: none), and
`benchmark`, which opens a VDevice, fails with status 74. The device runs the
firmware it loaded at boot: /run/hailo-standin/firmware when a test put one there (a firmware
upgraded without a reboot), else the installed hailofw's version.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from email.utils import formatdate
from pathlib import Path

SUITES = ("bookworm", "trixie")
ARCHES = ("amd64", "arm64")
STANDIN = "stand-in for the Raspberry Pi archive's package (tests and lab only)"

HAILORTCLI = """#!/bin/sh
# Stand-in hailortcli {v} (lab only): not HailoRT. Output formats: see lab/standins/hailort_apt.py.
fw_version() {{
  cat /run/hailo-standin/firmware 2>/dev/null \
    || ls /lib/firmware/hailo/ 2>/dev/null | sed -n 's/^hailo8_fw\\.\\(.*\\)\\.bin$/\\1/p' | head -n 1
}}
no_device() {{
  echo "[HailoRT] [error] CHECK failed - Failed to create vdevice. there are not enough free devices." \
    "requested: 1, found: 0" >&2
  echo "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_OUT_OF_PHYSICAL_DEVICES(74)" >&2
  exit 74
}}
case "$1" in
  --version) echo "HailoRT-CLI version {v}" ;;
  scan)
    # scan_command.cpp: an empty device list is not an error.
    [ -c /dev/hailo0 ] || {{ echo "Hailo devices not found"; exit 0; }}
    echo "Hailo Devices:"
    echo "[-] Device: 0001:01:00.0"
    ;;
  fw-control)
    # command.cpp DeviceCommand: a Device per device found (none: nothing printed, success). A
    # Device does not mark the device as used, so another process holding it changes nothing.
    [ -c /dev/hailo0 ] || exit 0
    echo "Executing on device: 0001:01:00.0"
    echo "Identifying board"
    echo "Control Protocol Version: 2"
    echo "Firmware Version: $(fw_version) (release,app,extended context switch buffer)"
    echo "Logger Version: 0"
    echo "Board Name: Hailo-8"
    echo "Device Architecture: HAILO8"
    echo "Serial Number: <N/A>"
    echo "Part Number: <N/A>"
    echo "Product Name: <N/A>"
    echo
    ;;
  benchmark)
    # The summary of hailortcli/benchmark_command.cpp (figures made up: no device here).
    [ -c /dev/hailo0 ] || no_device
    [ -f "$2" ] || {{ echo "hef: File does not exist: $2" >&2; exit 2; }}
    echo "Starting Measurements..."
    echo "Measuring FPS in hw_only mode"
    echo "Measuring FPS and Power in streaming mode"
    echo "Measuring HW Latency"
    echo
    echo "======="
    echo "Summary"
    echo "======="
    echo "FPS     (hw_only)                 = 4012.5"
    echo "        (streaming)               = 3987.1"
    echo "Latency (hw)                      = 0.42 ms"
    echo "        (overall)                 = 0.61 ms"
    echo "Device 0001:01:00.0:"
    echo "  Power in streaming mode (average) = 1.7 W"
    echo "                          (max)     = 1.8 W"
    ;;
  parse-hef)
    python3 -c 'import sys; sys.path.insert(0, "/usr/lib/python3/dist-packages/hailo_platform/standin"); \
import standin_hef; sys.stdout.write(standin_hef.describe(standin_hef.read(sys.argv[1])))' "$2"
    ;;
  *) echo "stand-in hailortcli: $1 is not simulated" >&2; exit 2 ;;
esac
"""

# DKMS's postinst for hailort-drivers builds hailo_pci and installs it under updates/dkms for the
# running kernel (hailort-drivers linux/pcie/dkms.conf.in: DEST_MODULE_LOCATION=/updates/dkms);
# this one installs the stand-in module built with the set there.
DKMS_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
  dest="/lib/modules/$(uname -r)/updates/dkms"
  mkdir -p "$dest"
  cp /usr/src/hailo_pci-{v}/hailo_pci.ko "$dest/hailo_pci.ko"
  depmod -a "$(uname -r)" 2>/dev/null || true
fi
"""
DKMS_PRERM = """#!/bin/sh
set -e
rm -f "/lib/modules/$(uname -r)/updates/dkms/hailo_pci.ko"
depmod -a "$(uname -r)" 2>/dev/null || true
"""
# The files hailofw owns on Raspberry Pi OS (HAILO.md: dpkg -L hailofw).
HAILOFW_MODPROBE = "options hailo_pci force_desc_page_size=4096\n"
HAILOFW_UDEV = 'SUBSYSTEM=="hailo_chardev", MODE="0666"\n'


def module_ko(version: str, work: Path) -> bytes:
    """A kernel-module-shaped ELF whose .modinfo says version=VERSION (what `modinfo -F version`
    reads); built with the machine's objcopy."""
    info = work / "modinfo.bin"
    fields = {
        "version": version,
        "license": "GPL",
        "description": "stand-in hailo_pci (lab only)",
        "name": "hailo_pci",
    }
    info.write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in fields.items()))
    out = work / "hailo_pci.ko"
    subprocess.run(["objcopy", "-I", "binary", "-O", "elf64-x86-64", "--rename-section", ".data=.modinfo",
                    str(info), str(out)], check=True, capture_output=True)  # fmt: skip
    return out.read_bytes()


def _deb(
    pool: Path,
    name: str,
    version: str,
    files: dict[str, tuple[str | bytes, int]],
    depends: str = "",
    scripts: dict[str, str] | None = None,
) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        for script, text in (scripts or {}).items():
            (root / "DEBIAN" / script).write_text(text)
            (root / "DEBIAN" / script).chmod(0o755)
        conffiles = [f"/{rel}" for rel in files if rel.startswith("etc/")]
        if conffiles:
            (root / "DEBIAN/conffiles").write_text("\n".join(conffiles) + "\n")
        control = (
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            f"Maintainer: hailo-pipeline lab <lab@localhost>\nSection: misc\nPriority: optional\n"
            + (f"Depends: {depends}\n" if depends else "")
            + f"Description: {STANDIN}\n"
        )
        (root / "DEBIAN/control").write_text(control)
        for rel, (content, mode) in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            path.chmod(mode)
        out = pool / f"{name}_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                       check=True, capture_output=True)  # fmt: skip
        return out


def _set(pool: Path, upstream: str, revision: str = "1") -> list[Path]:
    v = f"{upstream}-{revision}"
    binding = (
        f'"""Stand-in hailo_platform {upstream} (lab only): not HailoRT."""\n__version__ = "{upstream}"\n'
    )
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as work:
        ko = module_ko(upstream, Path(work))
    return [
        _deb(pool, "hailort", v, {
            "usr/bin/hailortcli": (HAILORTCLI.format(v=upstream), 0o755),
            f"usr/lib/libhailort.so.{upstream}": (f"stand-in libhailort {upstream}\n", 0o644),
        }),
        _deb(pool, "python3-hailort", v, {
            "usr/lib/python3/dist-packages/hailo_platform/__init__.py": (binding, 0o644),
            "usr/lib/python3/dist-packages/hailo_platform/standin/standin_hef.py": (
                (here / "standin_hef.py").read_text(), 0o644),
        }, depends=f"hailort (= {v})"),
        _deb(pool, "hailo-dkms", v, {
            f"usr/src/hailo_pci-{upstream}/dkms.conf": (
                f'# stand-in: nothing to build\nPACKAGE_NAME="hailo_pci"\n'
                f'PACKAGE_VERSION="{upstream}"\nDEST_MODULE_LOCATION="/updates/dkms"\n', 0o644),
            f"usr/src/hailo_pci-{upstream}/hailo_pci.ko": (ko, 0o644),
        }, depends="dkms, kmod", scripts={"postinst": DKMS_POSTINST.format(v=upstream), "prerm": DKMS_PRERM}),
        _deb(pool, "hailofw", v, {
            f"lib/firmware/hailo/hailo8_fw.{upstream}.bin": (f"stand-in firmware {upstream}\n", 0o644),
            "etc/modprobe.d/hailo_pci.conf": (HAILOFW_MODPROBE, 0o644),
            "lib/udev/rules.d/60-hailofw.rules": (HAILOFW_UDEV, 0o644),
        }),
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
    # A kernel metapackage as the archive has it (empty): what hailort_hold_kernel holds.
    debs.append(_deb(pool, "linux-image-rpi-2712", "6.12.25-1+rpt1", {}))
    packages = "\n".join(_stanza(d, dest) for d in sorted(debs)).encode()
    home = Path(tempfile.mkdtemp(prefix="hailo-apt-gpg-"))  # mode 0700, as gpg wants its home
    try:
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
    finally:
        # The signing key lives only as long as the build: agent stopped, home removed.
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return key


if __name__ == "__main__":
    import sys

    print(build_repo(Path(sys.argv[1]), tuple(sys.argv[2:]) or ("4.23.0", "4.22.0")))

"""Stand-in HailoRT release files (wheel + .deb) for the runtime image's HailoRT path (lab only).

Hailo's real files cannot exist here. ``build(dest, version, arch)`` writes the file names and
package metadata that images/runtime/install-hailort.sh expects from Hailo's downloads:
  hailort-VERSION-cp311-cp311-linux_aarch64.whl   the hailo_platform stand-in package
                                                  (lab/standins/hailo_platform) + standin_hef
  hailort_VERSION_ARCH.deb                        usr/lib/libhailort.so.VERSION (+ .so link),
                                                  usr/bin/hailortcli
The library is a placeholder file, not ELF: nothing in the image loads it, the stand-in binding
is pure Python (its "native" part is lab/standins/hailo_platform/pyhailort/_pyhailort.py).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

STANDINS = Path(__file__).resolve().parent
MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}


def _package_files() -> dict[str, bytes]:
    files = {
        str(f.relative_to(STANDINS)): f.read_bytes()
        for f in sorted((STANDINS / "hailo_platform").rglob("*.py"))
    }
    files["standin_hef.py"] = (STANDINS / "standin_hef.py").read_bytes()
    return files


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(dest: Path, version: str, arch: str = "arm64") -> Path:
    """The binding's wheel, named and tagged as Hailo's (CPython 3.11, Linux on ARCH)."""
    tag = f"cp311-cp311-linux_{MACHINE[arch]}"
    path = dest / f"hailort-{version}-{tag}.whl"
    info = f"hailort-{version}.dist-info"
    files = _package_files()
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: hailort\nVersion: {version}\nRequires-Dist: numpy\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: hailo-pipeline-lab\nRoot-Is-Purelib: false\nTag: {tag}\n"
    ).encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def deb(dest: Path, version: str, arch: str) -> Path:
    root = dest.parent / f"hailort-deb-root-{arch}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN/control").write_text(
        f"Package: hailort\nVersion: {version}\nArchitecture: {arch}\nMaintainer: tests <tests@localhost>\n"
        "Description: stand-in for HailoRT (tests only)\n"
    )
    lib = root / f"usr/lib/libhailort.so.{version}"
    lib.write_text(f"stand-in libhailort {version}\n")
    link = root / "usr/lib/libhailort.so"
    if not link.is_symlink():
        link.symlink_to(lib.name)
    cli = root / "usr/bin/hailortcli"
    cli.write_text(f'#!/bin/sh\necho "HailoRT-CLI version {version} (stand-in)"\n')
    cli.chmod(0o755)
    path = dest / f"hailort_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(path)], check=True,
                   capture_output=True)  # fmt: skip
    return path


def build(dest: Path, version: str = "4.23.0", arch: str = "arm64") -> Path:
    """A folder for `--build-context hailort=` holding the stand-in wheel and .deb."""
    out = dest / "hailort"
    out.mkdir(parents=True, exist_ok=True)
    wheel(out, version, arch)
    deb(out, version, arch)
    return out

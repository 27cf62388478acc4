"""Stand-in HailoRT release files (wheel + .deb) for the runtime image's HailoRT path; tests only.

Hailo's real files cannot exist here. ``build(dest, version, arch)`` writes the same file names
and package metadata that images/runtime/install-hailort.sh expects from Hailo:
  hailort-VERSION-py3-none-any.whl   the hailo_platform stand-in (tests/fakes/hailo_platform)
  hailort_VERSION_ARCH.deb           usr/lib/libhailort.so.VERSION (+ .so link), usr/bin/hailortcli
The library is a placeholder file, not ELF: nothing in the image loads it, the stand-in binding
is pure Python.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

BINDING = Path(__file__).resolve().parents[1] / "hailo_platform" / "__init__.py"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(dest: Path, version: str) -> Path:
    path = dest / f"hailort-{version}-py3-none-any.whl"
    info = f"hailort-{version}.dist-info"
    files = {
        "hailo_platform/__init__.py": BINDING.read_bytes(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: hailort\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
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


def build(dest: Path, version: str = "4.23.0", arch: str = "amd64") -> Path:
    """A folder for `HAILORT_DIR` holding the stand-in wheel and .deb."""
    out = dest / "hailort"
    out.mkdir(parents=True, exist_ok=True)
    wheel(out, version)
    deb(out, version, arch)
    return out

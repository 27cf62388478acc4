"""hailo-state: the host's whole HailoRT state as one JSON object on stdout (synchrony.hailo_pipeline
hailort role; installed as /usr/local/libexec/hailo-state). Reads only; standard library only.

  hailo-state [--device /dev/hailo0] [--driver-version-file /sys/module/hailo_pci/version]
              [--skip firmware,holders,dkms,binding]

The one reader of HailoRT's state: the role's verify phase (verdicts: the
synchrony.hailo_pipeline.hailort_problems filter), the monitoring agent's collector, tests/infra
and the acceptance playbook all read this output. Every parse of a vendor's text is here, its
source named beside it. Keys (a part not read, or skipped, is null):
  kernel          the running kernel's release (uname -r)
  packages        name -> {status, want, state, error, version, upstream} for the HailoRT packages
                  dpkg knows (state "installed", "half-configured", "unpacked", ...; upstream: the
                  version without epoch and Debian revision)
  library         hailortcli --version: {version, output, error}
  binding         the Python binding (hailo_platform): {version, error}
  module          hailo_pci: {loaded, loaded_version (the driver version file, trimmed), file and
                  file_version (modinfo for the running kernel), origin ("dkms": updates/ or extra/,
                  "in-tree": the kernel's own kernel/ tree, "other"), error (modinfo's)}
  dkms            {status: the lines of `dkms status hailo_pci`} (null: dkms absent or skipped)
  device          {path, present, char, mode ("0660"), group}
  firmware        hailortcli fw-control identify: {rc, version, fields, output, error}
                  (null: no device node, or skipped)
  holders         the processes holding the device node: [{pid, comm, cmdline, container:
                  {id, name, project} or null}] (null: no device node, or skipped)
  reboot_pending  /run/reboot-required exists
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

PACKAGES = ("hailort", "hailo-dkms", "python3-hailort", "hailofw", "hailo-all")
PARTS = ("firmware", "holders", "dkms", "binding")
TIMEOUT = 30
# hailort's hailortcli/hailortcli.cpp: set_version_flag("-v,--version", "HailoRT-CLI version {}.{}.{}").
CLI_VERSION = re.compile(r"HailoRT-CLI version (\d+\.\d+\.\d+)")
# hailort's hailortcli/fw_control_command.cpp (FwControlIdentifyCommand): "Label: value" lines after
# command.cpp's "Executing on device: <id>"; the firmware as "Firmware Version: X.Y.Z (release,app,...)"
# (fw_version_string).
FIELD = re.compile(r"^([A-Za-z][A-Za-z ]*?): ?(.*)$")
FIRMWARE = re.compile(r"^(\d+\.\d+\.\d+)")
# dpkg-query(1) --show with ${db:Status-Abbrev}: the wanted action, the package state and the error
# flag, one character each (dpkg's lib/dpkg/pkg-namevalue.c names them).
WANT = {"u": "unknown", "i": "install", "h": "hold", "r": "remove", "p": "purge"}
STATE = {"n": "not-installed", "c": "config-files", "H": "half-installed", "U": "unpacked",
         "F": "half-configured", "W": "triggers-awaited", "t": "triggers-pending",
         "i": "installed"}  # fmt: skip
CONTAINER_ID = re.compile(r"([0-9a-f]{64})")
# HailoRT's logger writes hailort.log into its working folder and ~/.hailo/hailort unless the
# path is "NONE" (libhailort/src/utils/hailort_logger.cpp, parse_log_path: unset means "."):
# this reader writes nothing, so neither does a tool or the binding it runs.
LOGGER_OFF = {"HAILORT_LOGGER_PATH": "NONE"}


def run(argv: list[str]) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr); status None when the command is missing or timed out."""
    try:
        env = {**os.environ, **LOGGER_OFF}
        p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env)
    except FileNotFoundError:
        return None, "", f"{argv[0]}: not found"
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "", f"{argv[0]}: {e}"
    return p.returncode, p.stdout, p.stderr


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def upstream(version: str) -> str | None:
    """4.23.0-1 -> 4.23.0, 1:4.23.0-1 -> 4.23.0 (deb-version(7): [epoch:]upstream[-revision])."""
    if not version:
        return None
    return re.sub(r"-[^-]*$", "", re.sub(r"^[0-9]+:", "", version)) or None


def packages(names: tuple[str, ...]) -> dict[str, dict[str, object]]:
    # Tab-separated: the abbreviation's third character (the error flag) is a space when clear.
    fmt = "--showformat=${db:Status-Abbrev}\t${Package}\t${Version}\n"
    _rc, out, _err = run(["dpkg-query", "--show", fmt, *names])
    found: dict[str, dict[str, object]] = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or len(fields[0]) < 2:
            continue
        abbrev, name, version = fields[0], fields[1].split(":", 1)[0], fields[2]
        found[name] = {
            "status": abbrev.strip(),
            "want": WANT.get(abbrev[0], abbrev[0]),
            "state": STATE.get(abbrev[1], abbrev[1]),
            "error": "reinst-required" if abbrev[2:3] == "R" else None,
            "version": version or None,
            "upstream": upstream(version),
        }
    return found


def library() -> dict[str, object]:
    _rc, out, err = run(["hailortcli", "--version"])
    m = CLI_VERSION.search(out)
    return {"version": m.group(1) if m else None, "output": out.strip(), "error": last_line(err) or None}


def binding() -> dict[str, object]:
    # python3-hailort's hailo_platform has __version__; the distribution's metadata otherwise.
    code = ("import importlib.metadata as m, hailo_platform as h; "
            "print(getattr(h, '__version__', None) or m.version('hailort'))")  # fmt: skip
    # -I: the system's python3 alone (no PYTHON* variables, user site or working folder on its path).
    _rc, out, err = run(["python3", "-I", "-c", code])
    m = re.match(r"(\d+\.\d+\.\d+)", out.strip())
    return {"version": m.group(1) if m else None, "error": None if m else (last_line(err) or None)}


def module(version_file: Path) -> dict[str, object]:
    try:
        loaded: str | None = version_file.read_text().strip()
    except OSError:
        loaded = None
    # kmod's modinfo (tools/modinfo.c): -F prints one field of the module depmod's index finds for
    # the running kernel; it fails ("Module hailo_pci not found.") when there is none.
    rc, out, err = run(["modinfo", "-F", "filename", "hailo_pci"])
    path = out.strip() if rc == 0 else ""
    file_version = None
    if path:
        _rc, v, _e = run(["modinfo", "-F", "version", "hailo_pci"])
        m = re.search(r"\d+\.\d+\.\d+", v)
        file_version = m.group(0) if m else None
    origin = None
    if path:
        # DKMS installs under updates/dkms (hailort-drivers' dkms.conf.in, Debian's dkms for debian*)
        # or extra/ (DKMS's default); the kernel's own modules are under kernel/.
        origin = ("in-tree" if "/kernel/" in path
                  else "dkms" if "/updates/" in path or "/extra/" in path else "other")  # fmt: skip
    return {"loaded": loaded is not None, "loaded_version": loaded, "file": path or None,
            "file_version": file_version, "origin": origin,
            "error": None if path else (last_line(err) or last_line(out) or None)}  # fmt: skip


def dkms() -> dict[str, object] | None:
    if not shutil.which("dkms"):
        return None
    _rc, out, err = run(["dkms", "status", "hailo_pci"])
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return {"status": lines, "error": last_line(err) or None}


def device(path: Path) -> dict[str, object]:
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path), "present": False, "char": False, "mode": None, "group": None}
    try:
        group: str | None = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"path": str(path), "present": True, "char": stat.S_ISCHR(st.st_mode),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}", "group": group}  # fmt: skip


def firmware() -> dict[str, object]:
    # 4.23 with no device listed (no /sys/class/hailo_chardev) prints nothing and exits 0
    # (command.cpp DeviceCommand runs on each device found: none).
    rc, out, err = run(["hailortcli", "fw-control", "identify"])
    fields = {}
    for line in out.splitlines():
        m = FIELD.match(line.strip())
        if m:
            fields[m.group(1)] = m.group(2).strip()
    m = FIRMWARE.match(fields.get("Firmware Version", ""))
    return {"rc": rc, "version": m.group(1) if m else None, "fields": fields, "output": out.strip(),
            "error": err.strip() or None}  # fmt: skip


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _holds(pid: str, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def _container(cid: str) -> dict[str, object]:
    """The container's name and Compose project (docker inspect), as far as Docker answers."""
    if not shutil.which("docker"):
        return {"id": cid, "name": None, "project": None}
    fmt = '{{.Name}}|{{index .Config.Labels "com.docker.compose.project"}}'
    _rc, out, _err = run(["docker", "inspect", "--format", fmt, cid])
    name, _sep, project = out.strip().partition("|")
    return {"id": cid, "name": name.lstrip("/") or None, "project": project or None}


def holders(path: str) -> list[dict[str, object]]:
    """Every process with PATH open (root sees them all): a container's processes carry their
    container's id in /proc/PID/cgroup."""
    found = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        if int(pid) == os.getpid() or not _holds(pid, path):
            continue
        ids = CONTAINER_ID.findall(_read(f"/proc/{pid}/cgroup"))
        found.append({"pid": int(pid), "comm": _read(f"/proc/{pid}/comm"),
                      "cmdline": _read(f"/proc/{pid}/cmdline")[:200],
                      "container": _container(ids[-1]) if ids else None})  # fmt: skip
    return found


def state(node: Path, version_file: Path, skip: set[str]) -> dict[str, object]:
    kernel = os.uname().release
    dev = device(node)
    return {
        "kernel": kernel,
        "packages": packages(PACKAGES),
        "library": library(),
        "binding": None if "binding" in skip else binding(),
        "module": module(version_file),
        "dkms": None if "dkms" in skip else dkms(),
        "device": dev,
        "firmware": firmware() if dev["present"] and "firmware" not in skip else None,
        "holders": holders(str(node)) if dev["present"] and "holders" not in skip else None,
        "reboot_pending": Path("/run/reboot-required").exists(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", type=Path, default=Path("/dev/hailo0"))
    ap.add_argument("--driver-version-file", type=Path, default=Path("/sys/module/hailo_pci/version"))
    ap.add_argument("--skip", default="", help=f"parts not to read, comma-separated: {', '.join(PARTS)}")
    a = ap.parse_args(argv)
    skip = {p for p in a.skip.split(",") if p}
    if skip - set(PARTS):
        unknown = ", ".join(sorted(skip - set(PARTS)))
        ap.error(f"--skip: unknown part(s) {unknown} (known: {', '.join(PARTS)})")
    json.dump(state(a.device, a.driver_version_file, skip), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

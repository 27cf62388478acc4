"""HailoRT's verdicts on a host's state as roles/hailort/files/hailo-state.py prints it (the one
reader of HailoRT's state: packages, module, device node, firmware, holders, kernel, DKMS), for the
hailort role's verify phase and tests/infra alike. hailort_versions picks each part's version;
hailort_problems names what would stop HailoRT on the host, each problem with its fix.

HailoRT refuses a driver of another version (status 76, HAILO_INVALID_DRIVER_VERSION) and firmware
of another major.minor (16, HAILO_UNSUPPORTED_FW_VERSION), and gives the device to one process (74,
HAILO_OUT_OF_PHYSICAL_DEVICES). No Ansible import: tests/infra loads this file as it is.
Each filter's documentation (ansible-doc -t filter): plugins/filter/<name>.yml.
Unit tests: tests/unit/test_hailort_state.py on the recorded states in tests/unit/hailort_states/."""

from __future__ import annotations

from typing import Any

LIBRARY = "hailort"
DRIVER = "hailo-dkms"
# dpkg states that are no problem: installed, or not (any more).
SETTLED = ("installed", "not-installed", "config-files")


def _part(state: dict[str, Any], name: str) -> dict[str, Any]:
    return state.get(name) or {}


def _package(state: dict[str, Any], name: str) -> str | None:
    """The upstream version of NAME when dpkg has it fully installed (no error flag), else None."""
    p = (state.get("packages") or {}).get(name) or {}
    return p.get("upstream") if p.get("state") == "installed" and not p.get("error") else None


def hailort_versions(state: dict[str, Any]) -> dict[str, Any]:
    module, device = _part(state, "module"), _part(state, "device")
    return {
        "package": _package(state, LIBRARY),
        "driver_package": _package(state, DRIVER),
        "library": _part(state, "library").get("version"),
        "binding": _part(state, "binding").get("version"),
        "module": module.get("file_version"),
        "driver": module.get("loaded_version") or None,
        "firmware": _part(state, "firmware").get("version"),
        "device": device.get("path") if device.get("present") else None,
    }


def _holder(h: dict[str, Any]) -> tuple[str, str]:
    """A holder's description and the command that stops it."""
    c = h.get("container")
    if c:
        short = str(c["id"])[:12]
        name = c.get("name") or short
        return f"PID {h['pid']} ({h.get('comm')}, container {name} ({short}))", f"docker rm -f {name}"
    return f"PID {h['pid']} ({h.get('comm')}, not in a container)", f"kill {h['pid']}"


def _dpkg(state: dict[str, Any], host: str) -> list[dict[str, str]]:
    out = []
    for name, p in sorted((state.get("packages") or {}).items()):
        if p.get("state") in SETTLED and not p.get("error"):
            continue
        what = p.get("state") + (", reinst-required" if p.get("error") else "")
        out.append({"check": "dpkg", "message": (
            f"{name} {p.get('version')} is {what} on {host} (dpkg status {p.get('status')}): an apt run was"
            " interrupted (power lost?) or the package's configuration failed. Run `dpkg --configure -a` on"
            " the host and fix what it reports (a driver that DKMS cannot build: `dkms status`), then run"
            " again.")})  # fmt: skip
    return out


def _parts(state: dict[str, Any], v: dict[str, Any], host: str) -> list[dict[str, str]]:
    """The library, binding, packages, module and loaded driver at one version."""
    kernel, module = state.get("kernel"), _part(state, "module")
    dkms_installed = v["driver_package"] is not None
    out = []
    missing = not v["library"] or not v["binding"]
    apart = v["library"] != v["package"] or v["binding"] != v["library"]
    if missing or apart or (dkms_installed and v["driver_package"] != v["library"]):
        binding = v["binding"] or f"missing: {_part(state, 'binding').get('error') or ''}"
        driver = f", driver package (hailo-dkms) {v['driver_package']}" if dkms_installed else ""
        out.append({"check": "versions", "message": (
            f"HailoRT parts differ on {host}: library (hailortcli) {v['library'] or 'missing'}, hailort"
            f" package {v['package'] or 'not installed'}, Python binding {binding}{driver}. Install one"
            " matching set: hailort_version_set with the same HailoRT version for hailort, hailo-dkms and"
            " python3-hailort (or hailort_version_set: {} for the archive's hailo-all).")})  # fmt: skip
    # hailo-all on bookworm may take the driver from the kernel: the module checks only with hailo-dkms.
    if dkms_installed and not module.get("file"):
        out.append({"check": "module", "message": (
            f"There is no hailo_pci module for the running kernel {kernel} on {host} (modinfo:"
            f" {module.get('error') or ''}): hailo-dkms {v['driver_package']} was not built for it, typically"
            f" after a kernel upgrade. Run `dkms status hailo_pci` and `dkms autoinstall -k {kernel}` (it"
            " needs that kernel's headers), or boot the kernel it was built for; hailort_hold_kernel: true"
            " keeps the kernel with the set.")})  # fmt: skip
    # DKMS installs hailo_pci under updates/dkms (hailort-drivers' dkms.conf.in; Debian's dkms does
    # so for debian*), which depmod prefers over the kernel's own modules: the kernel's one is
    # chosen only when DKMS has no build for the running kernel.
    if dkms_installed and module.get("file") and module.get("origin") == "in-tree":
        out.append({"check": "in-tree module", "message": (
            f"The running kernel's own hailo_pci ({module['file']}, version {v['module'] or '?'}) is used"
            f" because DKMS has no build of hailo-dkms {v['driver_package']} for the running kernel {kernel}"
            " (a DKMS build goes to updates/dkms, which depmod prefers): HailoRT will see the wrong driver"
            f" version (status 76). Run `dkms status hailo_pci` and `dkms autoinstall -k {kernel}` (it needs"
            " that kernel's headers), then reboot; hailort_hold_kernel: true keeps the kernel with the"
            " set.")})  # fmt: skip
    if v["module"] and v["module"] != v["library"]:
        out.append({"check": "module version", "message": (
            f"The hailo_pci module for the running kernel ({module.get('file')}) is {v['module']}, the"
            f" library {v['library']}: after a reboot HailoRT fails with status 76"
            " (HAILO_INVALID_DRIVER_VERSION). Install the set's hailo-dkms (dkms status"
            " hailo_pci).")})  # fmt: skip
    if v["driver"] and v["driver"] != v["library"]:
        out.append({"check": "driver", "message": (
            f"The loaded hailo_pci driver is {v['driver']} but the library is {v['library']}: HailoRT will"
            " fail with status 76 (HAILO_INVALID_DRIVER_VERSION). Reboot so the DKMS-built"
            f" {v['driver_package']} module loads (check `dkms status hailo_pci`); the kernel's own older"
            " hailo_pci loads when DKMS has no build for the running kernel (`dkms autoinstall -k"
            f" {kernel}`).")})  # fmt: skip
    return out


def _device(state: dict[str, Any], v: dict[str, Any], host: str, owner: str) -> list[dict[str, str]]:
    """The device answers, runs the driver's and the library's firmware, and no other process has it."""
    fw, node = _part(state, "firmware"), _part(state, "device").get("path")
    out = []
    if state.get("firmware") is not None:
        if fw.get("rc") != 0 or not v["firmware"]:
            said = (fw.get("error") or fw.get("output") or "no output").strip()
            out.append({"check": "identify", "message": (
                f"`hailortcli fw-control identify` on {host} found no device or failed: {said}. It opens the"
                " device directly (not through a VDevice), so another process holding it is not the cause; no"
                " output means HailoRT lists no device under /sys/class/hailo_chardev: the driver is not"
                " loaded (`lsmod | grep hailo_pci`, `dkms status hailo_pci`) or the device did not come up"
                " (`lspci | grep -i hailo`, `dmesg | grep -i hailo`).")})  # fmt: skip
        elif v["driver"] and v["firmware"] != v["driver"]:
            out.append({"check": "firmware", "message": (
                f"The device on {host} runs firmware {v['firmware']}, the loaded driver is {v['driver']}: the"
                " firmware is loaded when the driver starts, so HailoRT was upgraded without a reboot"
                ' ("Unsupported firmware operation"). Reboot the Pi (or reset the PCIe'
                " device).")})  # fmt: skip
        if v["firmware"] and v["library"] and v["firmware"].split(".")[:2] != v["library"].split(".")[:2]:
            out.append({"check": "firmware version", "message": (
                f"The device on {host} reports firmware {v['firmware']} (library {v['library']}). Firmware"
                " major.minor must match the library (HAILO_UNSUPPORTED_FW_VERSION, status 16): install"
                " hailofw at the set's version and reboot.")})  # fmt: skip
    # The sidecar stack's own containers may hold it (a running sidecar).
    others = [h for h in state.get("holders") or [] if (h.get("container") or {}).get("project") != owner]
    if others:
        described = [_holder(h) for h in others]
        who = ", ".join(d for d, _fix in described)
        out.append({"check": "holders", "message": (
            f"{node} on {host} is held by {who}: HailoRT gives the device to"
            " one process, so the sidecar would fail with status 74 (HAILO_OUT_OF_PHYSICAL_DEVICES). Stop it"
            f" first: {'; '.join(f for _who, f in described)}.")})  # fmt: skip
    return out


def hailort_problems(
    state: dict[str, Any],
    host: str,
    device_required: bool = True,
    owner_project: str = "hailo",
    check_mode: bool = False,
) -> list[dict[str, str]]:
    """Every problem, in the order HailoRT would meet them; [] for a healthy host."""
    v = hailort_versions(state)
    # Check mode on a host without HailoRT yet: nothing to ask, the verdicts wait for a real run.
    if check_mode and not v["library"]:
        return []
    out = _dpkg(state, host) + _parts(state, v, host)
    device = _part(state, "device")
    if device_required and not device.get("present"):
        pending = (" (a reboot is pending: dtparam=pciex1_gen=3 or the hailo_pci options changed)"
                   if state.get("reboot_pending") else "")  # fmt: skip
        out.append({"check": "device", "message": (
            f"No {device.get('path')} on {host}{pending}. Check the AI Kit/HAT is seated (`lspci | grep -i"
            " hailo`), the driver loaded (`dmesg | grep -i hailo`, `dkms status`); on a host without the"
            " device set hailort_device_required: false.")})  # fmt: skip
    # In check mode the configuration before this (the node's group, a reboot) may be pending.
    if device.get("present") and not check_mode:
        out += _device(state, v, host, owner_project)
    return out


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"hailort_versions": hailort_versions, "hailort_problems": hailort_problems}

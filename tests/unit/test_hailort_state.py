"""HailoRT's state, read once (roles/hailort/files/hailo-state.py) and judged once
(plugins/filter/hailort.py: hailort_versions, hailort_problems): each field failure the hailort
role's verify phase stops a host for is a recorded state here (tests/unit/hailort_states/, each
described in its README) with the checks it must fail and the fix it must name; the reader runs
for real on this machine, against the lab's stand-in hailortcli (which prints what hailort's
hailortcli/*.cpp print) and on this machine's own dpkg database and processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATES = Path(__file__).resolve().parent / "hailort_states"
READER = ROOT / "roles" / "hailort" / "files" / "hailo-state.py"
HOST = "pi-0001"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hailort: Any = _load("hailort_filter", ROOT / "plugins" / "filter" / "hailort.py")
reader: Any = _load("hailo_state", READER)


def state(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((STATES / f"{name}.json").read_text())
    return data


def problems(s: dict[str, Any], **kw: Any) -> list[dict[str, str]]:
    result: list[dict[str, str]] = hailort.hailort_problems(s, HOST, **kw)
    return result


def test_a_healthy_pi_has_no_problems() -> None:
    s = state("healthy")
    assert problems(s) == []
    assert hailort.hailort_versions(s) == {
        "package": "4.23.0", "driver_package": "4.23.0", "library": "4.23.0", "binding": "4.23.0",
        "module": "4.23.0", "driver": "4.23.0", "firmware": "4.23.0", "device": "/dev/hailo0",
    }  # fmt: skip


def test_the_sidecars_own_container_may_hold_the_device_no_other_project() -> None:
    """The healthy Pi's sidecar (Compose project hailo) holds the node: no problem for its own
    project, a problem for any other."""
    (found,) = problems(state("healthy"), owner_project="another-stack")
    assert found["check"] == "holders"
    assert "container hailo-hailo-inference-1 (3f9c1d2e4b5a)" in found["message"]
    assert "docker rm -f hailo-hailo-inference-1" in found["message"]


K = "6.12.62+rpt-rpi-2712"  # the kernel booted after an upgrade DKMS did not build for
# state -> (the checks that fail, in order; what the messages must say). The texts are the ones the
# lab's field-failure checks (tests/lab/converged/test_pi_guards.py) look for on a stopped host.
FAILURES: dict[str, tuple[list[str], list[str]]] = {
    "dkms_package_of_another_version": (
        ["versions", "module version"],
        [f"HailoRT parts differ on {HOST}", "driver package (hailo-dkms) 4.22.0", "Install one matching set",
         "is 4.22.0, the library 4.23.0: after a reboot HailoRT fails with status 76"],
    ),
    "loaded_driver_of_another_version": (
        ["driver", "firmware"],
        ["loaded hailo_pci driver is 4.22.0", "status 76 (HAILO_INVALID_DRIVER_VERSION)",
         "runs firmware 4.23.0, the loaded driver is 4.22.0"],
    ),
    "firmware_of_another_version": (
        ["firmware", "firmware version"],
        ["runs firmware 4.22.0, the loaded driver is 4.23.0", "Reboot the Pi (or reset the PCIe device)",
         "status 16", "install hailofw at the set's version and reboot"],
    ),
    "no_module_for_the_running_kernel": (
        ["module", "device"],
        [f"no hailo_pci module for the running kernel {K}", "Module hailo_pci not found",
         f"dkms autoinstall -k {K}", "hailort_hold_kernel"],
    ),
    "in_tree_module": (
        ["in-tree module", "module version", "driver", "firmware version"],
        [f"The running kernel's own hailo_pci (/lib/modules/{K}/kernel/",
         f"DKMS has no build of hailo-dkms 4.23.0 for the running kernel {K}", f"dkms autoinstall -k {K}",
         "hailort_hold_kernel"],
    ),
    "no_device": (
        ["device"],
        [f"No /dev/hailo0 on {HOST} (a reboot is pending", "lspci | grep -i hailo",
         "hailort_device_required: false"],
    ),
    "identify_finds_no_device": (
        ["identify"],
        ["found no device or failed: no output", "another process holding it is not the cause",
         "/sys/class/hailo_chardev", "dkms status hailo_pci"],
    ),
    "held_by_other_processes": (
        ["holders"],
        [f"/dev/hailo0 on {HOST} is held by PID 1893 (sleep, container stale-sidecar (9a8b7c6d5e4f))",
         "PID 3120 (python3, not in a container)", "docker rm -f stale-sidecar; kill 3120", "status 74"],
    ),
    "dpkg_half_configured": (
        ["dpkg", "dpkg", "versions"],
        [f"hailo-dkms 4.23.0-1 is half-configured on {HOST} (dpkg status hF)", "hailort 4.23.0-1 is unpacked",
         "Run `dpkg --configure -a` on the host", "hailort package not installed"],
    ),
    "binding_missing": (
        ["versions"],
        ["Python binding missing: ModuleNotFoundError: No module named 'hailo_platform'"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FAILURES))
def test_each_field_failure_stops_the_host_naming_its_fix(name: str) -> None:
    checks, texts = FAILURES[name]
    found = problems(state(name))
    assert [p["check"] for p in found] == checks
    text = " ".join(p["message"] for p in found)
    for expected in texts:
        assert expected in text, f"{name}: {expected!r} not in {text!r}"
    # The shadowing's fix is a DKMS build; a depmod override fixes nothing (issue 25).
    assert "override hailo_pci" not in text
    # The sidecar stack's own container is never named as a holder.
    assert "hailo-hailo-inference-1" not in text


def test_the_recorded_states_are_all_used() -> None:
    assert sorted(p.stem for p in STATES.glob("*.json")) == sorted([*FAILURES, "healthy", "fresh_host"])


def test_a_missing_device_is_no_problem_where_none_is_required() -> None:
    assert problems(state("no_device"), device_required=False) == []


def test_check_mode_waits_for_what_a_real_run_would_change() -> None:
    """Check mode on a host without HailoRT has nothing to judge; on a converged one the device
    checks wait (the configuration before them may be pending), the versions do not."""
    fresh = state("fresh_host")
    assert problems(fresh, check_mode=True) == []
    assert [p["check"] for p in problems(fresh)] == ["versions", "device"]
    assert problems(state("held_by_other_processes"), check_mode=True) == []
    stale = problems(state("loaded_driver_of_another_version"), check_mode=True)
    assert [p["check"] for p in stale] == ["driver"]


# -- the reader itself ---------------------------------------------------------------------------
def read(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(READER), *args], capture_output=True, text=True, check=True,
                         env=env)  # fmt: skip
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_the_reader_on_a_host_without_hailort(tmp_path: Path) -> None:
    """This machine has no HailoRT: every part is read, found missing, and judged as verify would."""
    s = read("--device", str(tmp_path / "hailo0"), "--driver-version-file", str(tmp_path / "version"),
             "--skip", "dkms")  # fmt: skip
    assert set(s) == {"kernel", "packages", "library", "binding", "module", "dkms", "device", "firmware",
                      "holders", "reboot_pending"}  # fmt: skip
    assert s["kernel"] == os.uname().release and s["dkms"] is None
    assert s["device"]["present"] is False and s["firmware"] is None and s["holders"] is None
    assert s["library"]["version"] is None and s["module"]["loaded"] is False
    assert [p["check"] for p in problems(s)] == ["versions", "device"]
    assert problems(s, check_mode=True) == []


def test_the_reader_parses_hailortcli_and_modinfo_as_they_print(tmp_path: Path) -> None:
    """The lab's stand-in hailortcli prints `--version` as hailortcli.cpp does and `fw-control
    identify` as fw_control_command.cpp does; modinfo -F prints the field's value alone (kmod's
    tools/modinfo.c). The kernel's own module (kernel/ tree) is told from a DKMS build."""
    sys.path.insert(0, str(ROOT / "lab" / "standins"))
    import hailort_apt

    firmware = tmp_path / "firmware"
    firmware.write_text("4.23.0\n")
    # /dev/null is a character device, as the node is.
    cli = hailort_apt.HAILORTCLI.format(v="4.23.0").replace("/dev/hailo0", "/dev/null")
    (tmp_path / "hailortcli").write_text(cli.replace("/run/hailo-standin/firmware", str(firmware)))
    kernel = os.uname().release
    (tmp_path / "modinfo").write_text(
        "#!/bin/sh\n"
        f'[ "$3" = hailo_pci ] || {{ echo "modinfo: ERROR: Module $3 not found." >&2; exit 1; }}\n'
        f'case "$2" in filename) echo /lib/modules/{kernel}/kernel/drivers/misc/hailo_pci.ko ;;'
        " version) echo 4.22.0 ;; esac\n"
    )
    for tool in ("hailortcli", "modinfo"):
        (tmp_path / tool).chmod(0o755)
    version_file = tmp_path / "version"
    version_file.write_text("4.22.0\n")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    s = read("--device", "/dev/null", "--driver-version-file", str(version_file), "--skip", "holders,dkms",
             env=env)  # fmt: skip
    assert s["library"] == {"version": "4.23.0", "output": "HailoRT-CLI version 4.23.0", "error": None}
    assert s["firmware"]["rc"] == 0 and s["firmware"]["version"] == "4.23.0"
    assert s["firmware"]["fields"]["Board Name"] == "Hailo-8"
    assert s["firmware"]["fields"]["Device Architecture"] == "HAILO8"
    assert s["module"] == {"loaded": True, "loaded_version": "4.22.0", "origin": "in-tree", "error": None,
                           "file": f"/lib/modules/{kernel}/kernel/drivers/misc/hailo_pci.ko",
                           "file_version": "4.22.0"}  # fmt: skip
    assert s["device"]["char"] is True
    v = hailort.hailort_versions(s)
    assert (v["library"], v["module"], v["driver"], v["firmware"]) == ("4.23.0", "4.22.0", "4.22.0", "4.23.0")
    # No hailo-dkms here: the module checks wait for it; the driver's version does not.
    assert [p["check"] for p in problems(s)] == ["versions", "module version", "driver", "firmware"]


def test_the_reader_runs_hailort_with_its_log_files_off(tmp_path: Path) -> None:
    """The reader writes nothing: HailoRT's logger, unless HAILORT_LOGGER_PATH is "NONE", writes
    hailort.log (as root) into the working folder and ~/.hailo/hailort (hailort's
    libhailort/src/utils/hailort_logger.cpp, parse_log_path and get_main_log_path). Each tool that
    loads libhailort, and the binding's python3 (-I: no PYTHON* variables or working folder on its
    path), is run so; doubles on PATH write down what they were given."""
    seen = tmp_path / "seen"
    for tool, prints in (("hailortcli", "HailoRT-CLI version 4.23.0"), ("python3", "4.23.0")):
        (tmp_path / tool).write_text(
            f"#!/bin/sh\n# test double of {tool}: records its logger path and arguments\n"
            f'echo "{tool} ${{HAILORT_LOGGER_PATH-unset}} $*" >>{seen}\necho "{prints}"\n'
        )
        (tmp_path / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "HAILORT_LOGGER_PATH": "/var/tmp"}
    s = read("--device", "/dev/null", "--skip", "holders,dkms", env=env)
    assert s["library"]["version"] == "4.23.0" and s["binding"]["version"] == "4.23.0"
    lines = seen.read_text().splitlines()
    assert sorted(line.split(" ", 3)[:3] for line in lines) == [
        ["hailortcli", "NONE", "--version"], ["hailortcli", "NONE", "fw-control"], ["python3", "NONE", "-I"],
    ]  # fmt: skip


def test_the_reader_finds_the_processes_holding_the_node(tmp_path: Path) -> None:
    node = tmp_path / "hailo0"
    node.write_text("")
    code = "import sys, time; f = open(sys.argv[1]); print(flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(node)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # the node is open
        s = read("--device", str(node), "--skip", "firmware,dkms,binding")
    finally:
        holder.kill()
        holder.wait()
    (found,) = [h for h in s["holders"] if h["pid"] == holder.pid]
    assert found["container"] is None and str(node) in found["cmdline"]
    assert [h["pid"] for h in s["holders"]] == [holder.pid], "the reader itself holds nothing"
    (p,) = [p for p in problems(s) if p["check"] == "holders"]
    assert f"PID {holder.pid} (python" in p["message"] and f"kill {holder.pid}" in p["message"]


def test_the_reader_reads_dpkgs_states_from_its_database() -> None:
    """This machine's own dpkg: a package installed (dpkg-query's status abbreviation "ii"), one
    dpkg does not know left out."""
    found = reader.packages(("dpkg", "no-such-package-hailo"))
    version = subprocess.run(["dpkg-query", "--show", "--showformat=${Version}", "dpkg"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert found == {"dpkg": {"status": "ii", "want": "install", "state": "installed", "error": None,
                              "version": version, "upstream": version.rsplit("-", 1)[0]}}  # fmt: skip
    assert reader.upstream("1:4.23.0-1") == "4.23.0" and reader.upstream("4.23.0") == "4.23.0"


def test_an_unknown_part_to_skip_is_refused() -> None:
    run = subprocess.run([sys.executable, str(READER), "--skip", "firmware,temperature"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 2 and "unknown part(s) temperature" in run.stderr and run.stdout == ""

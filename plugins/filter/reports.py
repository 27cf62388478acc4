"""Filters that compute the collection's reports, so playbooks only print them and unit tests reach
them (tests/unit/test_reports.py): the rollout report and its summary lines (playbooks/pi.yml),
the rollback's closing message (sidecar_stack) and the hardware acceptance's summary and verdict
(playbooks/acceptance.yml). Each filter's documentation (ansible-doc -t filter): plugins/filter/<name>.yml."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def rollout_report(
    hosts: Iterable[Mapping[str, Any]], fact_name: str = "hailo_sidecar", active: Iterable[str] | None = None
) -> dict[str, Any]:
    """Per host of the play (its hostvars): the release result, the error that stopped it, the
    release it served before the run, how its sidecar ran before, whether this run reached it, the
    preflight's refusal, and whether it became unreachable: gone from ACTIVE (the play's hosts still
    in it, ansible_play_hosts) without an error of its own (a failed host always has one: pi.yml's
    rescues, pi_preflight_error for a host the preflight play refused, pi_rollout_error after it)."""
    still = None if active is None else set(active)
    report = {}
    for hv in hosts:
        result = hv.get("sidecar_stack_result")
        error = hv.get("pi_rollout_error")
        refused = hv.get("pi_preflight_error")
        local = hv.get("ansible_local") or {}
        before_run = hv.get("pi_rollout_before") or {}
        gone = still is not None and hv["inventory_hostname"] not in still
        unreachable = gone and error is None and refused is None
        report[hv["inventory_hostname"]] = {
            "result": None if unreachable else result,
            "error": error,
            "refused": refused,
            "before": (local.get(fact_name) or {}).get("current"),
            "before_status": (before_run.get("stdout") or "").strip() or None,
            "reached": result is not None or error is not None or refused is not None or unreachable,
            "unreachable": unreachable,
        }
    return report


def _release_text(release: Mapping[str, Any]) -> str:
    model = release.get("model")
    what = f"{model['name']} {model['version']} sha256 {model['sha256'][:12]}" if model else "no model"
    image = release["image"]
    image = image.split("@")[1][:19] if "@" in image else image
    return f"config {release['config_version']}, {release['profile']}, {what}, image {image}"


def rollout_lines(report: Mapping[str, Any], check_mode: bool = False) -> list[str]:
    """One line per host: how it ended in this run, its health, and the release it serves."""
    lines = ["check mode: no host was changed"] if check_mode else []
    for host, h in report.items():
        result = h["result"]
        if result is not None:
            release = result["release"]
            if result.get("rolled_back"):
                how = f"rolled back from {result['failed_release']['config_version']}"
            elif h["error"] is not None:
                how = "FAILED"
            elif not result.get("changed", True):
                how = "unchanged"
            else:
                how = "deployed"
            if result.get("path"):
                how += f" ({result['path']})"
            health = "healthy" if result.get("healthy") else "NOT healthy"
            if result.get("restored"):
                how += f" (put back: {', '.join(result['restored'])})"
        else:
            release = h["before"]
            if h.get("unreachable"):
                how = "UNREACHABLE during this run (its state is unknown; run again when it is back)"
            elif h["error"] is not None:
                how = f"FAILED before the stack: {h['error']}"
            elif h.get("refused") is not None:
                how = f"refused in preflight (nothing changed): {h['refused']}"
            else:
                how = "not reached"
            health = f"{h['before_status'] or 'no sidecar'} (before the run)"
        tail = _release_text(release) if release else "no release recorded"
        lines.append(f"{host}: {how}, {health}; {tail}")
    return lines


def rollout_outcome(hv: Mapping[str, Any]) -> str:
    """How this run ended on one host (its hostvars): deployed, unchanged, rolled_back or failed."""
    result = hv.get("sidecar_stack_result") or {}
    if result.get("rolled_back"):
        return "rolled_back"
    if hv.get("pi_rollout_error") is not None:
        return "failed"
    return "deployed" if result.get("changed") else "unchanged"


def release_pointer(release: Mapping[str, Any]) -> dict[str, Any]:
    """The pointer the sidecar reads (RELEASE_POINTER, models root's current.json) for a release
    record of the sidecar_stack role: the folder and file to serve, its sha256 and what to report."""
    model = release.get("model")
    folder = (model.get("folder") or str(model["path"]).rstrip("/").rsplit("/", 1)[-1]) if model else None
    return {
        "folder": folder,
        "file": model["file"] if model else None,
        "sha256": model["sha256"] if model else None,
        "config_version": release["config_version"],
        "num_motifs": int(release["num_motifs"]),
        "model": model["name"] if model else None,
        "version": model["version"] if model else None,
    }


def rollback_message(
    target: Mapping[str, Any],
    failure: Iterable[str],
    result: Mapping[str, Any],
    rollback: bool,
    host: str,
    stack_dir: str,
) -> str:
    """Why a change failed on a host and what the rollback did (RESULT, sidecar_stack_result:
    rolled_back, the release it went back to, what it put back, or stopped), or why there was none."""
    head = f"Release {target['config_version']} ({target['image']}) failed on {host}: {'; '.join(failure)}."
    if result.get("rolled_back"):
        restored = ", ".join(result.get("restored") or []) or "nothing differed"
        return (
            f"{head} Rolled back to {result['release']['config_version']}, which passes the smoke again "
            f"(the last good state put back: {restored})."
        )
    if not rollback:
        return f"{head} No rollback: sidecar_stack_rollback is false."
    if result.get("stopped"):
        return (
            f"{head} No rollback: nothing ran on {host} before this change (no last good state in "
            f"{stack_dir}/last-good.json), so the stack was stopped (docker compose down): nothing "
            "half-started serves. Fix the change and run again."
        )
    return (
        f"{head} No rollback: this is the last good state ({stack_dir}/last-good.json has not changed since "
        f"it last passed); look at `docker compose --project-directory {stack_dir} logs`."
    )


_BENCH = re.compile(r"c=|MET|MISS")
# lspci -vv: "LnkSta: Speed 8GT/s, Width x1" (sometimes "Speed 8GT/s (ok), Width x1 (ok)").
_LNKSTA = re.compile(r"LnkSta:\s*Speed\s+([0-9.]+GT/s)[^,]*,\s*Width\s+(x\d+)")
_DMESG_ERROR = re.compile(r"(?i)error|fail|fault|timeout")
# hailortcli benchmark's summary: "FPS (hw_only) = ...", "(streaming) = ...", "Latency (hw) = ...",
# "(overall) = ..." (the continuation lines carry no FPS/Latency word).
_HAILORTCLI = re.compile(r"^\s*(?:FPS|Latency)?\s*\((?:hw_only|streaming|hw|overall)\)\s*=")


def acceptance_report(d: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware acceptance's summary lines and the problems that refuse the host.

    d: host, release (sidecar_stack's current release), targets {p95_ms, windows_per_s},
    testinfra {rc, stdout_lines} or None (not run), device (path), device_present, hailortcli {rc,
    stdout_lines, stderr} or None, bench {rc, stdout_lines, stderr} or None, lspci (`lspci -d 1e60: -vv`),
    dmesg (the kernel log's hailo lines), fidelity_probe {rc, stderr} or None (hailo-sidecar
    fidelity on the device; lab/scripts/acceptance.py compares its record with the stand-in).
    A task result that was skipped counts as None (not run)."""
    d = {k: (None if isinstance(v, Mapping) and v.get("skipped") else v) for k, v in d.items()}
    release = d["release"]
    model = release.get("model") or {}
    testinfra = d.get("testinfra")
    lines = [
        f"{d['host']}: {release['profile']}, {model.get('name', 'no model')} {model.get('version', '')}, "
        f"config {release['config_version']}",
        "testinfra: not run (make acceptance runs tests/infra from a checkout first)"
        if testinfra is None
        else f"testinfra: {(testinfra.get('stdout_lines') or ['(no output)'])[-1] or '(no output)'}",
        f"hailortcli benchmark {model.get('path', '?')}/model.hef:",
    ]
    problems = []
    if testinfra is not None and testinfra.get("rc", 1) != 0:
        problems.append("testinfra failed (see the summary)")
    if release["profile"] != "real":
        problems.append(
            f"the sidecar serves the {release['profile']} profile, not the HEF on the device (real)"
        )
    hailortcli = d.get("hailortcli")
    if not d["device_present"]:
        lines.append(f"  not run: no {d['device']} (the acceptance needs the Hailo-8)")
        problems.append(f"no Hailo device at {d['device']}")
    elif hailortcli is None or hailortcli.get("rc", 1) != 0:
        lines.append(f"  FAILED: {((hailortcli or {}).get('stderr') or 'not run').strip()}")
        problems.append("hailortcli benchmark failed")
    else:
        lines += [f"  {ln.strip()}" for ln in hailortcli["stdout_lines"] if _HAILORTCLI.search(ln)]
    link = _LNKSTA.search(d.get("lspci") or "")
    speed = f"{link[1]}, {link[2]}" if link else "not known (no lspci, or no Hailo on the bus)"
    lines.append(f"PCIe link (target Gen3 8GT/s, x1): {speed}")
    errors = [ln for ln in d.get("dmesg") or [] if _DMESG_ERROR.search(ln)]
    lines.append(
        f"hailo errors in dmesg: {len(errors)}" + ("" if not errors else f" (last: {errors[-1].strip()})")
    )
    targets = d["targets"]
    lines.append(
        f"sidecar bench (targets: p95 < {targets['p95_ms']} ms, >= {targets['windows_per_s']} windows/s):"
    )
    bench = d.get("bench")
    if bench is None:
        lines.append("  not run (check mode)")
    else:
        picked = [ln for ln in bench.get("stdout_lines") or [] if _BENCH.search(ln)]
        lines += picked or [f"  {(bench.get('stderr') or 'no output').strip()}"]
        if bench.get("rc", 1) != 0:
            problems.append("the sidecar missed a target or failed")
    probe = d.get("fidelity_probe")
    if probe is not None and probe.get("rc", 1) != 0:
        last = (probe.get("stderr") or "no output").strip().splitlines()[-1:]
        lines.append(f"fidelity probe (hailo-sidecar fidelity): not run: {' '.join(last)}")
    return {"lines": lines, "problems": problems}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "rollout_report": rollout_report,
            "rollout_lines": rollout_lines,
            "rollback_message": rollback_message,
            "release_pointer": release_pointer,
            "rollout_outcome": rollout_outcome,
            "acceptance_report": acceptance_report,
        }

"""The hailo textfile collector (monitoring_agent role): the Pi's HailoRT state, its release and
its last rollout, for prometheus-node-exporter's textfile collector. Run by hailo-textfile.timer
every minute; writes OUT atomically (a temporary file renamed over it), reads only.

  hailo-textfile.py OUT [--device /dev/hailo0] [--release /opt/hailo-sidecar/release.json]
                        [--desired /opt/hailo-sidecar/desired.json]
                        [--rollout /var/lib/hailo-pipeline/rollout.json] [--pull-agent]
                        [--hailo-state /usr/local/libexec/hailo-state]

HailoRT's parts and the device node come from the hailort role's state reader (--hailo-state, its
JSON: roles/hailort/files/hailo-state.py), run without the parts that touch the device (firmware,
holders); when it cannot be read, those series are left out, the rest is written and the run
exits 1 (systemctl status hailo-textfile says why).

Metrics (one host each):
  hailo_host_hailort_version_info{part, version}  library (hailortcli), binding (python3-hailort),
                                                  driver (the loaded hailo_pci), package (hailort)
  hailo_host_hailort_versions_agree               1 when every part found is one version
  hailo_host_device_present, hailo_host_device_mode
  hailo_host_release_info{model, version, sha256, config_version, profile}
  hailo_host_release_deployed_timestamp_seconds
  hailo_host_desired_release_info{model, version, config_version}
                                                  the release this host must serve: what the
                                                  inventory gave the last pi.yml run that reached
                                                  it (sidecar_stack writes desired.json first)
  hailo_host_rollout_result{result}, hailo_host_rollout_timestamp_seconds, hailo_host_rollout_changed
  hailo_host_rollout_target_info{tag, version, state}, hailo_host_rollout_target_tagged_timestamp_seconds
                                                  pull mode: the tag the agent works towards and
                                                  where it is (waiting, held, applying, ...)
  hailo_host_pull_agent_enabled                   1 with --pull-agent (the host is in pull mode)
  hailo_host_textfile_run_timestamp_seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HAILO_STATE = Path("/usr/local/libexec/hailo-state")


def hailort_state(reader: Path, device: Path) -> dict[str, Any] | None:
    """The state reader's JSON, without the parts that touch the device; None (said on stderr) when
    it cannot be run or prints no JSON object."""
    argv = [sys.executable, str(reader), "--device", str(device), "--skip", "firmware,holders,dkms"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        data = json.loads(run.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        print(f"hailo-textfile: cannot read the HailoRT state ({reader}): {e}", file=sys.stderr)
        return None
    if run.returncode != 0 or not isinstance(data, dict):
        print(f"hailo-textfile: {reader} failed: {run.stderr.strip()}", file=sys.stderr)
        return None
    return data


def versions(state: dict[str, Any]) -> dict[str, str]:
    """The parts found and their versions: library (hailortcli), binding, package (hailort, in
    whatever state dpkg has it), driver (the loaded hailo_pci)."""

    def part(name: str) -> dict[str, Any]:
        value = state.get(name)
        return value if isinstance(value, dict) else {}

    found = {
        "library": part("library").get("version"),
        "binding": part("binding").get("version"),
        "package": (part("packages").get("hailort") or {}).get("upstream"),
        "driver": part("module").get("loaded_version"),
    }
    return {k: v for k, v in found.items() if v}


def label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def timestamp(text: object) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (2026-12-01T10:00:00Z, or with an offset; none
    given: UTC), or None when TEXT is not one."""
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def read_json(path: Path) -> dict[str, Any]:
    """The file's JSON object, or {} when it is missing or unreadable (a host before its first rollout)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def info(name: str, help_text: str, labels: dict[str, object]) -> list[str]:
    """An info-style gauge: one series, value 1, labels from LABELS."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
            name + "{" + ",".join(f'{k}="{label(v)}"' for k, v in labels.items()) + "} 1"]  # fmt: skip


def gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]


def rollout_lines(rollout: dict[str, Any]) -> list[str]:
    """The last rollout (pi.yml's record or the pull agent's) and, in pull mode, its target."""
    out = info("hailo_host_rollout_result", "The last rollout's outcome on this host (value 1).",
               {"result": rollout.get("result", "unknown")})  # fmt: skip
    at = timestamp(rollout.get("at"))
    if at is not None:
        out += gauge("hailo_host_rollout_timestamp_seconds", "When the last rollout was recorded.", at)
    changed = rollout.get("changed")
    changed = int(changed) if isinstance(changed, bool | int) else 0
    out += gauge(
        "hailo_host_rollout_changed", "1 (or the count) when the last rollout changed the host.", changed
    )
    # The pull agent's target (roles/pull_agent): {"tag", "version", "tagged_at", "state"}, absent
    # when the agent has none.
    target = rollout.get("target")
    if isinstance(target, dict) and isinstance(target.get("tag"), str) and target["tag"]:
        out += info("hailo_host_rollout_target_info", "The tag the pull agent works towards and its state.",
                    {k: target.get(k) or "" for k in ("tag", "version", "state")})  # fmt: skip
        tagged = timestamp(target.get("tagged_at"))
        if tagged is not None:
            out += gauge(
                "hailo_host_rollout_target_tagged_timestamp_seconds",
                "When the target tag was signed.",
                tagged,
            )
    return out


def hailort_lines(state: dict[str, Any]) -> list[str]:
    out: list[str] = []
    found = versions(state)
    out.append("# HELP hailo_host_hailort_version_info The HailoRT parts found on this host, by version.")
    out.append("# TYPE hailo_host_hailort_version_info gauge")
    out += [
        f'hailo_host_hailort_version_info{{part="{p}",version="{label(v)}"}} 1'
        for p, v in sorted(found.items())
    ]
    out.append("# HELP hailo_host_hailort_versions_agree 1 when every HailoRT part found is one version.")
    out.append("# TYPE hailo_host_hailort_versions_agree gauge")
    out.append(f"hailo_host_hailort_versions_agree {1 if len(set(found.values())) <= 1 else 0}")
    device = state.get("device") or {}
    present = bool(device.get("char"))
    mode = int(device["mode"], 8) if present and device.get("mode") else 0
    out.append("# HELP hailo_host_device_present 1 when the Hailo device node exists.")
    out.append("# TYPE hailo_host_device_present gauge")
    out.append(f"hailo_host_device_present {1 if present else 0}")
    out.append("# HELP hailo_host_device_mode The device node's permission bits (0660 is 432).")
    out.append("# TYPE hailo_host_device_mode gauge")
    out.append(f"hailo_host_device_mode {mode}")
    return out


def lines(
    state: dict[str, Any] | None, release_file: Path, rollout_file: Path, desired_file: Path, pull_agent: bool
) -> list[str]:
    out = hailort_lines(state) if state is not None else []
    record = read_json(release_file)
    current = record.get("current") or {}
    if isinstance(current, dict) and current:
        model = current.get("model") if isinstance(current.get("model"), dict) else {}
        labels = {"model": model.get("name", ""), "version": model.get("version", ""),
                  "sha256": model.get("sha256", ""), "config_version": current.get("config_version", ""),
                  "profile": current.get("profile", "")}  # fmt: skip
        out += info("hailo_host_release_info", "The release deployed on this host (release.json).", labels)
        deployed = timestamp(record.get("deployed_at"))
        if deployed is not None:
            out += gauge(
                "hailo_host_release_deployed_timestamp_seconds", "When the release was deployed.", deployed
            )
    desired = read_json(desired_file)
    if desired:
        out += info("hailo_host_desired_release_info", "The release this host must serve (desired.json).",
                    {k: desired.get(k) or "" for k in ("model", "version", "config_version")})  # fmt: skip
    rollout = read_json(rollout_file)
    if rollout:
        out += rollout_lines(rollout)
    if pull_agent:
        out += gauge(
            "hailo_host_pull_agent_enabled", "1: the host is in pull mode (its agent is watched).", 1
        )
    out += gauge(
        "hailo_host_textfile_run_timestamp_seconds",
        "When this file was written (the host's clock).",
        round(time.time()),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", type=Path, default=Path("/dev/hailo0"))
    ap.add_argument("--release", type=Path, default=Path("/opt/hailo-sidecar/release.json"))
    ap.add_argument("--desired", type=Path, default=Path("/opt/hailo-sidecar/desired.json"))
    ap.add_argument("--rollout", type=Path, default=Path("/var/lib/hailo-pipeline/rollout.json"))
    ap.add_argument("--pull-agent", action="store_true", help="this host runs the pull agent")
    ap.add_argument("--hailo-state", type=Path, default=HAILO_STATE, help="the hailort role's state reader")
    a = ap.parse_args(argv)
    state = hailort_state(a.hailo_state, a.device)
    text = "\n".join(lines(state, a.release, a.rollout, a.desired, a.pull_agent)) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hailo-textfile.", dir=a.out.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, a.out)
    return 0 if state is not None else 1


if __name__ == "__main__":
    sys.exit(main())

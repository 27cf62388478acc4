"""Filters the sidecar_stack role decides with, so the role only asks and prints and unit tests
reach every verdict (tests/unit/test_stack_filters.py):

- setting_problems: the role's variables against their bounds: the sidecar's own (files/
  sidecar-settings.json, generated from sidecar_app/settings.py) and the role's (vars/main.yml);
  one sentence per bad value, naming the variable and the allowed range;
- clock_problems: the host's clock against the controller's, the release's making and the
  release keys' validity (ssh-keygen's allowed_signers valid-after / valid-before) at that time,
  before any signature is checked;
- rollback_plan: what a change that failed does next: put the last good state back, stop the
  stack (nothing ran before it) or nothing (rollback off);
- env_changes: what a rollback puts back, from the .env that failed to the last good one;
- container_failure: why the stack's container does not serve (state, exits, memory, last log)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

# datetime.UTC is 3.11+; the controller may run 3.10 (ansible-core 2.17).
UTC = timezone.utc  # noqa: UP017

# Compose durations with one unit, Docker sizes (its units are powers of 1024).
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_SIZE = re.compile(r"^([0-9]+)([bkmg]?)$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "": 1, "b": 1, "k": 2**10, "mb": 2**20, "g": 2**30}
_INT = re.compile(r"^-?[0-9]+$")
_WHAT = {
    "int": "an integer",
    "float": "a number",
    "duration": "a duration (5s, 500ms, 2m)",
    "size": "a size (512m, 1g)",
}


def _number(value: Any, kind: str) -> float | None:
    """VALUE as KIND (int, float, duration in seconds, size in bytes), or None when it is not one."""
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    if kind == "int":
        return float(int(text)) if _INT.match(text) else None
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None  # nan passes every comparison as False
    match = (_DURATION if kind == "duration" else _SIZE).match(text)
    if match is None:
        return None
    unit = match[2].lower()
    return float(match[1]) * _UNIT["mb" if kind == "size" and unit == "m" else unit]


def _range(spec: Mapping[str, Any]) -> str:
    """The allowed range in words, the bounds as the spec writes them (and the value that turns
    the setting off, when it has one)."""
    show = {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in spec.items()}
    if "off" in spec:
        return f" {show['off']} (off) or" + _range({k: v for k, v in spec.items() if k != "off"})
    if "ge" in spec and "le" in spec:
        return f" from {show['ge']} to {show['le']}"
    low = f"at least {show['ge']}" if "ge" in spec else f"greater than {show['gt']}" if "gt" in spec else ""
    high = f"at most {show['le']}" if "le" in spec else f"below {show['lt']}" if "lt" in spec else ""
    return " " + " and ".join(p for p in (low, high) if p) if low or high else ""


def _problem(value: Any, spec: Mapping[str, Any]) -> str | None:
    """What is wrong with VALUE (ending in what is allowed), or None."""
    kind = spec.get("type", "str")
    if "choices" in spec:
        choices = ", ".join(map(str, spec["choices"]))
        return None if value in spec["choices"] else f"it must be one of {choices}"
    if kind in _WHAT:
        n = _number(value, kind)
        bound = {k: _number(spec[k], kind) for k in ("ge", "gt", "le", "lt") if k in spec}
        ok = n is not None and "off" in spec and n == _number(spec["off"], kind)
        below = n is not None and (n < bound.get("ge", n) or ("gt" in bound and n <= bound["gt"]))  # type: ignore[operator]
        above = n is not None and (n > bound.get("le", n) or ("lt" in bound and n >= bound["lt"]))  # type: ignore[operator]
        ok = ok or (n is not None and not below and not above)
        return None if ok else f"it must be {_WHAT[kind]}{_range(spec)}"
    if kind == "bool":
        return None if isinstance(value, bool) else "it must be true or false"
    text = "" if value is None else str(value)
    low, high = spec.get("min_length", 0), spec.get("max_length")
    if len(text) < low or (high is not None and len(text) > high):
        return f"it must be {low} to {high} characters" if high else f"it must be at least {low} characters"
    if spec.get("pattern") and not re.search(spec["pattern"], text):
        return f"it must match {spec['pattern']}"
    return None


def setting_problems(
    values: Mapping[str, Any],
    specs: Mapping[str, Mapping[str, Any]],
    sidecar: Mapping[str, Mapping[str, Any]] | None = None,
    passed: Mapping[str, str] | None = None,
) -> list[str]:
    """VALUES (variable -> value) against their bounds: SPECS (variable -> type, bounds or
    choices) for the role's own, SIDECAR (the sidecar's table, by setting) for each variable PASSED
    as a sidecar setting (variable -> setting). One sentence per bad value, in VALUES' order."""
    every = {**specs, **{var: {**(sidecar or {})[env], "env": env} for var, env in (passed or {}).items()}}
    problems = []
    for name, value in values.items():
        spec = every.get(name)
        why = _problem(value, spec) if spec is not None else None
        if spec is not None and why:
            whose = f" (the sidecar's {spec['env']})" if spec.get("env") else ""
            shown = value if isinstance(value, int | float) or str(value).strip() else repr(value)
            problems.append(f"{name} is {shown}: {why}{whose}.")
    return problems


_VALID = re.compile(r'(valid-after|valid-before)="?([0-9]{8}(?:[0-9]{4}(?:[0-9]{2})?)?)Z?"?')


def _signer_time(text: str) -> datetime:
    """ssh-keygen's allowed_signers time, YYYYMMDD[HHMM[SS]] (ssh-keygen(1), ALLOWED SIGNERS): the
    host's local time, or UTC with a Z; taken as UTC here (a time zone moves it by hours at most,
    inside what a clock without time sync is off by)."""
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}[len(text)]
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(text: str) -> float | None:
    """An ISO 8601 UTC time (the manifest's created_at, 2026-12-07T09:44:14Z) as epoch seconds."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


def clock_problems(
    host_epoch: Any, controller_epoch: Any, max_skew_s: Any, allowed_signers: str = "", created_at: str = ""
) -> list[str]:
    """Why the host's clock cannot check a release signature: it is more than MAX_SKEW_S from the
    controller's, earlier than the release was made (CREATED_AT, its manifest's), or no release key
    is valid at its time (ALLOWED_SIGNERS' windows). In pull mode the controller is the host, so
    the release's making and the key windows are the checks that remain: a clock 40 days ahead
    passes the first two and is caught by the last. Empty: the clock can check a signature."""
    host, controller, skew_max = float(host_epoch), float(controller_epoch), float(max_skew_s)
    problems = []
    skew = host - controller
    if abs(skew) > skew_max:
        amount = f"{abs(skew) / 3600:.1f} hours" if abs(skew) >= 3600 else f"{abs(skew):.0f} seconds"
        problems.append(
            f"its clock is {amount} {'ahead of' if skew > 0 else 'behind'} the controller's (host "
            f"{_utc(host)}, controller {_utc(controller)}; sidecar_stack_max_clock_skew_s {skew_max:g})"
        )
    made = _when(created_at)
    if made is not None and host < made - skew_max:
        problems.append(f"its clock ({_utc(host)}) is earlier than the release was made ({created_at})")
    windows = []
    for line in (allowed_signers or "").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            found = {k: _signer_time(v) for k, v in _VALID.findall(line)}
            windows.append((found.get("valid-after"), found.get("valid-before")))
    at = datetime.fromtimestamp(host, UTC)
    if windows and all((a is not None and at < a) or (b is not None and at >= b) for a, b in windows):
        spans = "; ".join(
            " ".join(f"{k} {t:%Y-%m-%d %H:%M}" for k, t in (("valid-after", a), ("valid-before", b)) if t)
            for a, b in windows
        )
        # Alone, it is the clock or the keys: with a right clock every key has expired (or is not
        # valid yet), and no release can be verified until the allowed signers are renewed.
        alone = "" if problems else (
            f"; either its clock ({_utc(host)}) is wrong or every release key has expired or is not valid "
            "yet (then renew sidecar_stack_allowed_signers)"
        )  # fmt: skip
        problems.append(f"at its time no release key is valid (keys: {spans} UTC){alone}")
    return problems


def _env(text: str) -> dict[str, str]:
    lines = (line for line in (text or "").splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in lines)}


def rollback_plan(rollback: Any, last_good: Mapping[str, Any] | None) -> str:
    """What rollback.yml does after a change failed on a host: "restore" (put the last good state
    back and start it), "stop" (no last good state: nothing ran here before this change, so the
    stack is stopped) or "none" (ROLLBACK, sidecar_stack_rollback, is off). ROLLBACK is taken as
    Jinja's `and` takes it (its truth)."""
    if not rollback:
        return "none"
    return "stop" if last_good is None else "restore"


def env_changes(after: str, before: str) -> list[str]:
    """NAME: new -> old for each setting that differs between the .env AFTER (the one that failed)
    and BEFORE (the last good one): what a rollback puts back."""
    new, old = _env(after), _env(before)
    unset = "(unset)"
    names = [n for n in dict.fromkeys([*old, *new]) if old.get(n) != new.get(n)]
    return [f"{n} {new.get(n, unset)} -> {old.get(n, unset)}" for n in names]


def container_failure(inspect: str, logs: str = "", exits: str = "") -> str:
    """Why the stack's container is not serving: `docker inspect --format '{{json .State}}'` (its
    state, OOMKilled, the healthcheck's last output), the exit statuses `docker events` reported
    for it (EXITS, one per line: a crash loop shows as several; 137 is SIGKILL, as the kernel ends
    a container over its memory limit) and its last log line. Empty when there is no container."""
    try:
        state = json.loads((inspect or "").strip().splitlines()[0])
    except (IndexError, ValueError):
        return ""
    parts = [f"the container is {state.get('Status', '?')}"]
    if state.get("OOMKilled"):
        parts.append("killed for using more memory than its limit (sidecar_stack_mem_limit)")
    codes = [c.strip() for c in (exits or "").splitlines() if c.strip()]
    if codes:
        note = {
            "137": " (SIGKILL: the kernel ends a container that uses more memory than its limit, "
            "sidecar_stack_mem_limit)",
            "2": " (the sidecar refused its settings)",
        }.get(codes[-1], "")
        parts.append(
            f"it exited {len(codes)} times in the last 10 minutes, last with status {codes[-1]}{note}"
        )
    health = state.get("Health") or {}
    probes = health.get("Log") or []
    if health.get("Status") and health["Status"] != "healthy":
        last = " ".join(str(probes[-1].get("Output") or "").split())[:200] if probes else ""
        parts.append(f"health {health['Status']}" + (f" (last probe: {last})" if last else ""))
    lines = [line.strip() for line in (logs or "").splitlines() if line.strip()]
    if lines:
        parts.append(f"its last log line: {lines[-1][:300]}")
    return ", ".join(parts)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "setting_problems": setting_problems,
            "clock_problems": clock_problems,
            "rollback_plan": rollback_plan,
            "env_changes": env_changes,
            "container_failure": container_failure,
        }

"""The fleet's monitoring in the lab: Prometheus on lab-gpusrv (the monitoring role) scrapes both
Pis' sidecars and node exporters (monitoring_agent), sees each Pi's HailoRT versions, release
and last rollout through the hailo collector, and the down alert fires when a Pi's sidecar stops
and clears when it is back (the lab's `for:` durations are seconds). The dashboard uses only
metrics these exporters really export. The drift alert is seen in tests/lab/rollout (two Pis on
two releases)."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from labplay import GPUSRV, PIS, ROOT, STACK, host

PROM = "http://127.0.0.1:9090"


@pytest.fixture(scope="module")
def gpusrv() -> Any:
    return host(GPUSRV)


def api(gpusrv: Any, path: str, query: str | None = None) -> Any:
    """Prometheus's HTTP API on lab-gpusrv; a PromQL query is URL-encoded by curl."""
    form = f" -G --data-urlencode {shlex.quote('query=' + query)}" if query else ""
    return json.loads(gpusrv.check_output(f"curl -fsS {shlex.quote(PROM + path)}{form}"))["data"]


def until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what}: not within {timeout:.0f} s"
            return result
        time.sleep(3)


def firing(gpusrv: Any, alert: str, host_name: str) -> bool:
    alerts = api(gpusrv, "/api/v1/alerts")["alerts"]
    return any(
        a["labels"]["alertname"] == alert and a["labels"].get("host") == host_name and a["state"] == "firing"
        for a in alerts
    )


def test_every_pi_is_scraped(gpusrv: Any) -> None:
    def all_up() -> bool:
        targets = api(gpusrv, "/api/v1/targets?state=active")["activeTargets"]
        seen = {
            (t["labels"]["host"], t["labels"]["job"]): t["health"] for t in targets if "host" in t["labels"]
        }
        return seen == {(p, job): "up" for p in PIS for job in ("hailo-sidecar", "node")}

    until("both Pis' sidecars and node exporters up", all_up)
    sites = {r["metric"]["site"] for r in api(gpusrv, "/api/v1/query", 'up{job="node"}')["result"]}
    assert sites == {"lab"}


def test_the_collector_reports_versions_release_and_rollout(gpusrv: Any) -> None:
    def by_host(query: str) -> dict[str, dict[str, Any]]:
        return {r["metric"]["host"]: r for r in api(gpusrv, "/api/v1/query", query)["result"]}

    until("the hailo collector's metrics", lambda: len(by_host("hailo_host_release_info")) == len(PIS))
    agree = by_host("hailo_host_hailort_versions_agree")
    assert {h: r["value"][1] for h, r in agree.items()} == {p: "1" for p in PIS}
    releases = by_host("hailo_host_release_info")
    assert {r["metric"]["config_version"] for r in releases.values()} == {"lab-1"}
    rollouts = by_host("hailo_host_rollout_result")
    assert {r["metric"]["result"] for r in rollouts.values()} <= {"deployed", "unchanged"}


def exposition_names(text: str) -> set[str]:
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    out = {n for n, _ in names} | set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    for name, kind in names:
        out |= {name + s for s in (("_bucket", "_count", "_sum") if kind == "histogram" else ("_total",))}
    return out


def test_the_dashboard_uses_only_metrics_the_lab_exports(gpusrv: Any) -> None:
    pi = host(PIS[0])
    exported = exposition_names(pi.check_output("curl -fsS http://127.0.0.1:9000/metrics"))
    exported |= exposition_names(pi.check_output("curl -fsS http://127.0.0.1:9100/metrics"))
    dashboard = json.loads((ROOT / "roles/monitoring/files/grafana/hailo-fleet.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"]
            for m in re.findall(r"\b((?:hailo|node)_[a-z0-9_]+)\b", t["expr"])}  # fmt: skip
    assert used and sorted(used - exported) == []


def test_the_down_alert_fires_and_clears(gpusrv: Any) -> None:
    name = PIS[1]
    pi = host(name)
    pi.check_output(f"{STACK} stop")
    try:
        until(f"HailoSidecarDown firing for {name}", lambda: firing(gpusrv, "HailoSidecarDown", name))
    finally:
        pi.check_output(f"{STACK} start")
    until(f"HailoSidecarDown cleared for {name}", lambda: not firing(gpusrv, "HailoSidecarDown", name), 180)
    assert not firing(gpusrv, "HailoSidecarDown", PIS[0]), "the other Pi was never down"


def test_the_rules_on_gpusrv_are_the_roles(gpusrv: Any) -> None:
    groups = api(gpusrv, "/api/v1/rules")["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"]}
    assert {
        "HailoSidecarDown",
        "HailoFleetDrift",
        "HailoInferLatencyBudgetBurnFast",
        "HailoDeviceHot",
    } <= alerts
    assert Path(ROOT / "roles/monitoring/templates/hailo-pipeline.rules.yml.j2").read_text().count(
        "- alert:"
    ) == len(alerts)

"""The fleet's monitoring in the lab: Prometheus on lab-gpusrv (the monitoring role) scrapes both
Pis' sidecars and node exporters (monitoring_agent) and nothing else under their jobs, sees each
Pi's HailoRT versions, release, desired release and last rollout through the hailo collector;
the down alert fires when a Pi's sidecar stops and clears when it is back; a node exporter that
stops pages once, through Alertmanager, at the stand-in receiver, with the alert it causes
silenced; Alertmanager's file keeps its webhook token from everyone but Alertmanager (the lab's
`for:` durations are seconds). The dashboard uses only metrics these exporters really export.
Drift against the desired release, firing and clearing, is seen in tests/lab/rollout."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from labplay import (
    ALERTMANAGER,
    GPUSRV,
    LAB,
    PIS,
    PROMETHEUS,
    RELEASE_A,
    ROOT,
    STACK,
    alert,
    api,
    firing,
    host,
    manifest,
    notifications,
    query,
    until,
)


@pytest.fixture(scope="module")
def gpusrv() -> Any:
    return host(GPUSRV)


def test_every_pi_is_scraped_and_nothing_else_under_their_jobs(gpusrv: Any) -> None:
    def all_up() -> bool:
        targets = api(f"{PROMETHEUS}/api/v1/targets?state=active")["activeTargets"]
        seen = {
            (t["labels"].get("host"), t["labels"]["job"]): t["health"]
            for t in targets
            if t["labels"]["job"] != "prometheus"
        }
        return seen == {(p, job): "up" for p in PIS for job in ("hailo-sidecar", "node")}

    until("both Pis' sidecars and node exporters up (and no other target)", all_up)
    assert {r["metric"].get("site") for r in query('up{job="node"}').values()} == {"lab"}
    # Since Prometheus was installed: no series of these jobs without a host. Debian's package
    # started it with its example configuration, whose job "node" scrapes localhost:9100; the
    # role then restarted it, and that job's last `up` stayed in queries for five minutes
    # (a series without host or site: the KeyError this test met). The role installs without
    # starting the services now.
    strays = api(f"{PROMETHEUS}/api/v1/query", 'count_over_time(up{job=~"node|hailo-sidecar", host=""}[1d])')
    assert strays["result"] == [], f"series scraped under the fleet's jobs without a host: {strays['result']}"


def test_the_collector_reports_versions_release_desired_release_and_rollout(gpusrv: Any) -> None:
    until("the hailo collector's metrics", lambda: len(query("hailo_host_desired_release_info")) == len(PIS))
    agree = query("hailo_host_hailort_versions_agree")
    assert {h: r["value"][1] for h, r in agree.items()} == {p: "1" for p in PIS}
    releases = query("hailo_host_release_info")
    assert {r["metric"]["config_version"] for r in releases.values()} == {"lab-1"}
    rollouts = query("hailo_host_rollout_result")
    assert {r["metric"]["result"] for r in rollouts.values()} <= {"deployed", "unchanged"}
    # What the inventory gives each Pi (sidecar_stack's desired.json), as it serves it: no drift.
    m = manifest(RELEASE_A)
    expected = {"model": m["model"], "version": m["version"], "config_version": "lab-1"}
    for series in (query("hailo_host_desired_release_info"), query("hailo_sidecar_release_info")):
        assert {h: {k: r["metric"][k] for k in expected} for h, r in series.items()} == {
            p: expected for p in PIS
        }
    assert not [p for p in PIS if alert("HailoFleetDrift", p)]


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
    # Recording rules (level:metric:operation) are Prometheus's, not an exporter's.
    exprs = [re.sub(r"\b\w+:\w+:\w+\b", "", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:hailo|node)_[a-z0-9_]+)\b", e)}
    assert used and sorted(used - exported) == []


def test_the_down_alert_fires_and_clears(gpusrv: Any) -> None:
    name = PIS[1]
    pi = host(name)
    pi.check_output(f"{STACK} stop")
    try:
        until(f"HailoSidecarDown firing for {name}", lambda: firing("HailoSidecarDown", name))
    finally:
        pi.check_output(f"{STACK} start")
    until(f"HailoSidecarDown cleared for {name}", lambda: not firing("HailoSidecarDown", name), 180)
    assert not firing("HailoSidecarDown", PIS[0]), "the other Pi was never down"


# What a stopped node exporter can cause on its host: alerts that read it, and the host's down.
BLINDED = re.compile(
    r"HailoNodeExporterDown|HailoHostDown|HailoTextfile\w+|HailoHostClockSkew|HailoHostDisk\w+|"
    r"HailoRTVersionsDisagree|HailoRolloutFailed|HailoPullAgentStale|HailoFleetDrift"
)


def test_a_stopped_node_exporter_pages_once_and_silences_what_it_blinds(gpusrv: Any) -> None:
    """On call's view: the node exporter on a Pi stops. The page receiver gets one notification
    (HailoNodeExporterDown); the hailo textfile then goes unseen too (HailoTextfileMissing fires
    in Prometheus) and Alertmanager keeps it to itself; nothing reaches the ticket receiver. Once
    the exporter is back, the page is resolved."""
    name = PIS[0]
    pi = host(name)
    since = float(gpusrv.check_output("date +%s.%N"))
    pi.check_output("systemctl stop prometheus-node-exporter")
    try:
        until(
            f"{name}'s page",
            lambda: ("page", "firing", "HailoNodeExporterDown", name) in notifications(since),
        )
        until("HailoTextfileMissing firing in Prometheus", lambda: firing("HailoTextfileMissing", name))

        def silenced() -> bool:
            found = [
                a
                for a in api(f"{ALERTMANAGER}/api/v2/alerts?filter=alertname%3D%22HailoTextfileMissing%22")
                if a["labels"].get("host") == name
            ]
            return (
                bool(found)
                and found[0]["status"]["state"] == "suppressed"
                and bool(found[0]["status"]["inhibitedBy"])
            )

        until("HailoTextfileMissing silenced by Alertmanager", silenced)
        # A group interval (10 s in the lab) and more: nothing else about this host arrives.
        time.sleep(15)
        during = [n for n in notifications(since) if n[3] == name and BLINDED.fullmatch(n[2])]
    finally:
        pi.check_output("systemctl start prometheus-node-exporter")
    assert during == [("page", "firing", "HailoNodeExporterDown", name)]
    until(
        f"{name}'s page resolved",
        lambda: ("page", "resolved", "HailoNodeExporterDown", name) in notifications(since),
    )
    after = [n for n in notifications(since) if n[3] == name and BLINDED.fullmatch(n[2])]
    assert [n for n in after if n[0] == "ticket"] == [], "the silenced alert reached the ticket receiver"
    assert not [n for n in notifications(since) if n[3] == PIS[1] and BLINDED.fullmatch(n[2])]


def test_alertmanagers_token_is_kept_from_everyone_else(gpusrv: Any) -> None:
    config = gpusrv.file("/etc/prometheus/alertmanager.yml")
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)
    token = "lab-page-token-8c1f2e"
    assert token in config.content_string, "the lab's page URL (and its token) is Alertmanager's receiver"
    logs = LAB / "logs"
    assert [p for p in logs.glob("*gpusrv*.log")], "no gpusrv.yml log to read"
    assert not [p.name for p in logs.glob("*.log") if token in p.read_text(errors="replace")], (
        "the token was printed"
    )


def test_the_rules_on_gpusrv_are_the_roles(gpusrv: Any) -> None:
    groups = api(f"{PROMETHEUS}/api/v1/rules")["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {
        "HailoSidecarDown",
        "HailoFleetDrift",
        "HailoInferLatencyBudgetBurnFast",
        "HailoHostDown",
    } <= alerts
    template = Path(ROOT / "roles/monitoring/templates/hailo-pipeline.rules.yml.j2").read_text()
    assert template.count("- alert:") == len(alerts)

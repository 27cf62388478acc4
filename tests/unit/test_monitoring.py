"""The monitoring role's Prometheus files, with promtool (Debian's prometheus package; make setup
installs it): the alert rules rendered with the role's defaults pass `promtool check rules` and
their unit tests (tests/monitoring/rules_test.yml: each alert firing for one host, quiet for
another), prometheus.yml passes `promtool check config`, and the dashboard and the rules use only
metrics that the sidecar, the hailo textfile collector and the node exporter export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from prometheus_client.registry import CollectorRegistry

from sidecar_app.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# What the node exporter exports that the rules and the dashboard use, and Prometheus's own.
NODE_EXPORTER = {"node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_textfile_mtime_seconds"}
PROMETHEUS = {"up"}


def render(name: str, **over: Any) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string((ROLE / "templates" / name).read_text())
    return template.render(**{"ansible_managed": "test", **defaults, **over})


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert Path(PROMTOOL).exists(), "promtool is missing: make setup installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(render("hailo-pipeline.rules.yml.j2"))
    return path


def alert_names(rules: Path) -> list[str]:
    groups = yaml.safe_load(rules.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"]]


def test_the_rules_pass_promtool_and_their_unit_tests(rules: Path) -> None:
    check = promtool("check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(ROOT / "tests" / "monitoring" / "rules_test.yml", rules.parent / "rules_test.yml")
    run = promtool("test", "rules", "rules_test.yml", cwd=rules.parent)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_every_alert_is_tested_firing(rules: Path) -> None:
    tests = yaml.safe_load((ROOT / "tests" / "monitoring" / "rules_test.yml").read_text())["tests"]
    firing = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert sorted(set(alert_names(rules)) - firing) == [], "alerts without a test that shows them firing"
    for name in alert_names(rules):
        rule = next(
            r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if r["alert"] == name
        )
        assert rule["labels"]["severity"] in ("critical", "warning", "info") and rule["for"]
        assert "{{ $labels.host }}" in rule["annotations"]["summary"] and rule["annotations"]["runbook"]


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        render("hailo-pipeline.rules.yml.j2").replace("hailo_sidecar_ready == 0", "hailo_sidecar_ready ==")
    )
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_prometheus_yml_passes_promtool(rules: Path, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", monitoring_rules_file=str(rules)))
    run = promtool("check", "config", str(config))
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = [j["job_name"] for j in yaml.safe_load(config.read_text())["scrape_configs"]]
    assert jobs == ["prometheus", "hailo-sidecar", "node"]


def exported() -> set[str]:
    """Every series name the sidecar and the hailo collector can export (histograms expanded)."""
    registry: CollectorRegistry = Metrics().registry
    names = set()
    for family in registry.collect():
        suffixes = (
            ("_bucket", "_count", "_sum")
            if family.type == "histogram"
            else ("_total",)
            if family.type == "counter"
            else ("",)
        )
        names |= {family.name + s for s in suffixes}
    collector = (ROOT / "roles" / "monitoring_agent" / "files" / "hailo-textfile.py").read_text()
    names |= set(re.findall(r"\b(hailo_host_[a-z_]+)\b", collector))
    return names | NODE_EXPORTER | PROMETHEUS


def used(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:hailo|node)_[a-z0-9_]+|up)\b(?=\s*[{\[)=<>*/+-]|\s*$)", expr))


def test_the_dashboard_and_the_rules_use_only_exported_metrics(rules: Path) -> None:
    dashboard = json.loads((ROLE / "files" / "grafana" / "hailo-fleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    names = set().union(*map(used, exprs))
    assert names, "no metric names found in the expressions"
    assert sorted(names - exported()) == []
    # What operators were promised: p95, readiness, model and config, temperature, rollouts.
    for needed in ("hailo_sidecar_request_duration_seconds_bucket", "hailo_sidecar_ready",
                   "hailo_sidecar_model_info", "hailo_sidecar_device_temperature_celsius",
                   "hailo_host_rollout_result"):  # fmt: skip
        assert any(needed in e for e in exprs), needed


def test_the_hailo_collector_writes_the_hosts_state(tmp_path: Path) -> None:
    release = tmp_path / "release.json"
    release.write_text(json.dumps({"deployed_at": "2026-12-01T10:00:00Z", "current": {
        "profile": "real", "config_version": "cfg-7",
        "model": {"name": "imu-encoder", "version": "1.4.0", "sha256": "ab" * 32}}}))  # fmt: skip
    rollout = tmp_path / "rollout.json"
    rollout.write_text(json.dumps({"result": "rolled_back", "at": "2026-12-01T10:05:00Z", "changed": True}))
    out = tmp_path / "textfile" / "hailo.prom"
    script = ROOT / "roles" / "monitoring_agent" / "files" / "hailo-textfile.py"
    subprocess.run(["python3", str(script), str(out), "--device", str(tmp_path / "hailo0"),
                    "--release", str(release), "--rollout", str(rollout)], check=True)  # fmt: skip
    text = out.read_text()
    assert ('hailo_host_release_info{model="imu-encoder",version="1.4.0",sha256="' + "ab" * 32
            + '",config_version="cfg-7",profile="real"} 1') in text  # fmt: skip
    assert "hailo_host_release_deployed_timestamp_seconds 1796119200.0" in text
    assert (
        'hailo_host_rollout_result{result="rolled_back"} 1' in text and "hailo_host_rollout_changed 1" in text
    )
    assert "hailo_host_device_present 0" in text
    assert not [p for p in out.parent.iterdir() if p != out], "a temporary file was left beside it"

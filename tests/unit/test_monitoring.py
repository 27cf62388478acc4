"""The monitoring role's Prometheus and Alertmanager files, rendered by Ansible as the role renders
them (tests/monitoring/render.yml: the role's defaults, vars and preflight), checked by the
vendors' own tools (Debian's prometheus and prometheus-alertmanager packages; make setup installs
them): the alert rules pass `promtool check rules` and their unit tests
(tests/monitoring/rules_test.yml), prometheus.yml `promtool check config`, alertmanager.yml
`amtool check-config` and `amtool config routes test`, and a real Alertmanager given a down Pi's
alerts notifies once. The hailo textfile collector runs on recorded state files and its output
passes `promtool check metrics`; the dashboard and the rules use only metrics the exporters
export, and the sidecar exports every error kind it can count from start-up."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from sidecar_app.metrics import ERROR_KINDS, LATENCY_BUCKETS, Metrics

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
TESTS = ROOT / "tests" / "monitoring"
RECORDED = TESTS / "recorded"
COLLECTOR = ROOT / "roles" / "monitoring_agent" / "files" / "hailo-textfile.py"
# The hailort role's state reader, which the collector runs (installed as /usr/local/libexec/hailo-state).
HAILO_STATE = ROOT / "roles" / "hailort" / "files" / "hailo-state.py"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
from monitoring import prometheus_le  # noqa: E402  (plugins/filter/monitoring.py)

# What the node exporter exports that the rules and the dashboard use, and Prometheus's own.
NODE_EXPORTER = {
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_textfile_mtime_seconds",
    "node_textfile_scrape_error",
    "node_time_seconds",
}
PROMETHEUS = {"up"}
# A webhook token as a site would keep it in a vault: never printed.
TOKEN = "T0KEN-9f86d081884c7d659a2feaa0c55ad015"


def tool(path: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert Path(path).exists(), (
        f"{path} is missing: make setup installs Debian's prometheus and prometheus-alertmanager"
    )
    return subprocess.run([path, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def render(out: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    """tests/monitoring/render.yml: the role's files into OUT, with EXTRA over its defaults."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    extra = {
        "render_dir": str(out),
        "monitoring_rules_file": str(out / "rules.yml"),
        "_monitoring_alert_secrets_dir": str(out),
        **extra,
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(TESTS / "render.yml"),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Receivers for the rendered Alertmanager: a webhook that records what reaches it.
SINK_PORT = free_port()
RECEIVERS = {
    "monitoring_alert_page_webhook_url": f"http://127.0.0.1:{SINK_PORT}/page",
    "monitoring_alert_page_webhook_token": TOKEN,
    "monitoring_alert_ticket_webhook_url": f"http://127.0.0.1:{SINK_PORT}/ticket",
    "monitoring_alert_page_email": ["oncall@example.org"],
    "monitoring_alert_smtp_smarthost": "smtp.example.org:587",
    "monitoring_alert_smtp_from": "alertmanager@example.org",
    "monitoring_alert_smtp_username": "alertmanager",
    "monitoring_alert_smtp_password": "smtp-" + TOKEN,
    "monitoring_alert_group_wait": "1s",
    "monitoring_alert_group_interval": "2s",
}
# Bad values: each stops the role's preflight, naming the variable.
BAD = {
    "p95 target between two buckets": (
        {"monitoring_p95_target_seconds": 0.06},
        "monitoring_p95_target_seconds",
    ),
    "unknown for: key": ({"monitoring_for": {"drfit": "1h"}}, "monitoring_for"),
    "webhook not http(s)": (
        {"monitoring_alert_page_webhook_url": f"ftp://hooks.example.org/{TOKEN}"},
        "monitoring_alert_page_webhook_url",
    ),
    # Alertmanager serves its configuration, URLs unmasked, at /api/v2/status and logs a failed
    # notification's URL: a token belongs in monitoring_alert_page_webhook_token.
    "token in the webhook's URL": (
        {"monitoring_alert_page_webhook_url": f"https://hooks.example.org/page?token={TOKEN}"},
        "monitoring_alert_page_webhook_token",
    ),
    "password in the webhook's URL": (
        {"monitoring_alert_ticket_webhook_url": f"https://bot:{TOKEN}@hooks.example.org/ticket"},
        "monitoring_alert_ticket_webhook_url",
    ),
    "email without a smarthost": (
        {"monitoring_alert_ticket_email": ["tickets@example.org"]},
        "monitoring_alert_smtp_smarthost",
    ),
}


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """The role's files with its defaults, with receivers, and one run per bad value, at once."""
    base = tmp_path_factory.mktemp("monitoring")
    cases: dict[str, dict[str, Any]] = {"defaults": {}, "receivers": RECEIVERS}
    cases |= {name: extra for name, (extra, _) in BAD.items()}
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        done = dict(
            zip(cases, pool.map(lambda c: render(base / c.replace(" ", "-"), **cases[c]), cases), strict=True)
        )
    return {name: (base / name.replace(" ", "-"), done[name]) for name in cases}


@pytest.fixture(scope="module")
def rendered(runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]) -> Path:
    out, run = runs["defaults"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return out


def groups(rules: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = yaml.safe_load(rules.read_text())["groups"]
    return data


def alerts(rules: Path) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups(rules) for r in g["rules"] if "alert" in r}


def test_the_rules_pass_promtool_and_their_unit_tests(rendered: Path) -> None:
    check = tool(PROMTOOL, "check", "rules", str(rendered / "rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(TESTS / "rules_test.yml", rendered / "rules_test.yml")
    run = tool(PROMTOOL, "test", "rules", "rules_test.yml", cwd=rendered)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_every_alert_is_tested_at_its_firing_edge(rendered: Path) -> None:
    """For each alert, one case where it is absent one evaluation before its `for:` has passed and
    firing at it, and its rule says who to call (severity), about what (host, value) and how."""
    spec = yaml.safe_load((TESTS / "rules_test.yml").read_text())
    step = spec["evaluation_interval"]
    assert step == "1m"
    edges: dict[str, set[int]] = {}
    for case in spec["tests"]:
        at: dict[tuple[str, int], bool] = {}
        for t in case["alert_rule_test"]:
            at[(t["alertname"], minutes(t["eval_time"]))] = bool(t["exp_alerts"])
        for (name, m), fires in at.items():
            if fires and at.get((name, m - 1)) is False:
                edges.setdefault(name, set()).add(m)
    rules = alerts(rendered / "rules.yml")
    assert sorted(set(rules) - set(edges)) == [], "alerts without a firing edge in rules_test.yml"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info") and rule["for"], name
        summary = rule["annotations"]["summary"]
        assert re.search(r"\$labels\.(host|job)", summary) and "$value" in summary, name
        assert rule["annotations"]["runbook"], name


def minutes(duration: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", duration)
    assert m, f"eval_time {duration}: whole minutes"
    return int(m[1] or 0) * 60 + int(m[2] or 0)


def test_every_expression_used_twice_is_a_recording_rule(rendered: Path) -> None:
    """The slow-request ratio at each burn-rate window, the p95 and the clock's offset are each
    computed once, by a recording rule; the alerts and the dashboard read the recorded series."""
    rules = [r for g in groups(rendered / "rules.yml") for r in g["rules"]]
    records = {r["record"]: " ".join(r["expr"].split()) for r in rules if "record" in r}
    assert {f"host:hailo_infer_slow_requests:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h")} <= set(
        records
    )
    assert {"host:hailo_infer_latency_seconds:p95_rate5m", "instance:node_clock_offset:seconds"} <= set(
        records
    )
    exprs = [" ".join(r["expr"].split()) for r in rules if "alert" in r]
    for name, expr in records.items():
        assert not [e for e in exprs if expr in e], f"{name}'s expression written again in an alert"
        assert [e for e in exprs if name in e], f"{name} is read by no alert"
    # Every latency computation is a recorded one (the bucket-missing alert only counts series).
    assert not [e for e in exprs if "rate(hailo_sidecar_request_duration_seconds" in e]
    dashboard = json.loads((ROLE / "files" / "grafana" / "hailo-fleet.json").read_text())
    assert "host:hailo_infer_latency_seconds:p95_rate5m" in [
        t["expr"] for p in dashboard["panels"] for t in p["targets"]
    ]


def test_a_broken_rule_fails_the_check(rendered: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    rules = (rendered / "rules.yml").read_text()
    bad.write_text(rules.replace("hailo_sidecar_ready[2m]) == 0", "hailo_sidecar_ready[2m]) =="))
    assert tool(PROMTOOL, "check", "rules", str(bad)).returncode != 0


def test_prometheus_yml_passes_promtool(rendered: Path) -> None:
    run = tool(PROMTOOL, "check", "config", str(rendered / "prometheus.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = [
        j["job_name"] for j in yaml.safe_load((rendered / "prometheus.yml").read_text())["scrape_configs"]
    ]
    assert jobs == ["prometheus", "hailo-sidecar", "node"]


# -- the p95 target and the histogram's buckets ------------------------------------------------
def test_the_roles_buckets_are_the_sidecars() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert tuple(defaults["monitoring_latency_buckets"]) == LATENCY_BUCKETS
    assert defaults["monitoring_p95_target_seconds"] in LATENCY_BUCKETS


@pytest.mark.parametrize("bound", [*LATENCY_BUCKETS, 1, 5e-05, 1234567.0, 12345678.0, float("inf")])
def test_le_is_written_as_the_sidecars_client_writes_it(bound: float) -> None:
    """prometheus_client's own formatting (utils.floatToGoString) is the reference; for each of
    the sidecar's buckets, the string is the le label its /metrics really carries."""
    assert prometheus_le(bound) == floatToGoString(bound)
    assert prometheus_le(str(bound)) == floatToGoString(bound)


def test_the_burn_rules_select_a_bucket_the_sidecar_exports(rendered: Path) -> None:
    exposition = generate_latest(Metrics().registry).decode()
    exprs = [r["expr"] for g in groups(rendered / "rules.yml") for r in g["rules"] if 'le="' in r["expr"]]
    assert len(exprs) == 5, "four burn-rate windows and the bucket check"
    for expr in exprs:
        (le,) = set(re.findall(r'le="([^"]+)"', expr))
        assert (
            f'hailo_sidecar_request_duration_seconds_bucket{{endpoint="/infer",le="{le}"}} 0.0' in exposition
        )


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_value_stops_in_preflight(
    runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], case: str
) -> None:
    out, run = runs[case]
    assert run.returncode != 0, run.stdout[-2000:]
    text = " ".join((run.stdout + run.stderr).split())
    assert BAD[case][1] in text, text[-2000:]
    assert not (out / "rules.yml").exists(), "a file was written after a failed preflight"
    assert TOKEN not in run.stdout + run.stderr, "a webhook token reached Ansible's output"


# -- Alertmanager ------------------------------------------------------------------------------
def test_alertmanager_yml_passes_amtool_and_routes_by_severity(
    runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> None:
    for case in ("defaults", "receivers"):
        out, run = runs[case]
        assert run.returncode == 0, run.stdout[-3000:]
        config = str(out / "alertmanager.yml")
        check = tool(AMTOOL, "check-config", config)
        assert check.returncode == 0, check.stdout + check.stderr
        for severity, receiver in (("critical", "page"), ("warning", "ticket"), ("info", "ticket")):
            route = tool(
                AMTOOL,
                "config",
                "routes",
                "test",
                "--config.file",
                config,
                f"severity={severity}",
                "alertname=X",
                "host=pi-1",
            )
            assert route.stdout.strip() == receiver, (severity, route.stdout, route.stderr)
    am = yaml.safe_load((runs["receivers"][0] / "alertmanager.yml").read_text())
    assert am["route"]["group_by"] == ["alertname", "host"]
    receivers = {r["name"]: r for r in am["receivers"]}
    assert receivers["page"]["email_configs"][0]["to"] == "oncall@example.org"
    assert am["global"]["smtp_auth_password"] == "smtp-" + TOKEN
    assert TOKEN not in runs["receivers"][1].stdout, "the render printed a secret"
    text = (runs["receivers"][0] / "alertmanager.yml").read_text()
    assert text.count(TOKEN) == text.count("smtp-" + TOKEN) == 1, "the webhook's token in alertmanager.yml"


def test_the_secrets_file_is_not_world_readable_and_never_printed() -> None:
    """The task that writes alertmanager.yml (webhook tokens, the SMTP password) prints nothing
    and leaves it to root and Alertmanager's group; no other task or message uses a secret."""
    tasks = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    flat = [t for task in tasks for t in [task, *task.get("block", [])]]
    (write,) = [
        t for t in flat if (t.get("ansible.builtin.template") or {}).get("src") == "alertmanager.yml.j2"
    ]
    assert write["no_log"] is True
    assert write["ansible.builtin.template"]["mode"] == "0640"
    assert write["ansible.builtin.template"]["group"] == "prometheus"
    tokens = [t for t in flat if "block" not in t and "webhook_token" in json.dumps(t)]
    assert [t["name"] for t in tokens] == [
        "Write the webhooks' tokens (a receiver without one has no file)",
        "Remove the token of a receiver that has none",
    ]
    assert all(t["no_log"] is True for t in tokens)
    assert tokens[0]["ansible.builtin.copy"]["mode"] == "0640"
    assert tokens[0]["ansible.builtin.copy"]["group"] == "prometheus"
    for path in (ROLE / "tasks").glob("*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            for t in [task, *task.get("block", [])]:
                if t is not write and t not in tokens:
                    shown = json.dumps({k: v for k, v in t.items() if k != "block"})
                    assert not re.search(
                        r"\{\{[^}]*(webhook_url|webhook_token|smtp_password)[^}]*\}\}", shown
                    ), t["name"]


class Sink(BaseHTTPRequestHandler):
    """The webhook receivers (a paging and a ticket service): records each notification."""

    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    authorization: ClassVar[dict[str, set[str | None]]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Sink.received.append((self.path, json.loads(body)))
        Sink.authorization.setdefault(self.path, set()).add(self.headers.get("Authorization"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def alertmanager(
    runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], tmp_path: Path
) -> Iterator[str]:
    """A real Alertmanager on the rendered configuration (receivers: Sink), its API's URL."""
    out, run = runs["receivers"]
    assert run.returncode == 0, run.stdout[-3000:]
    Sink.received = []
    Sink.authorization = {}
    sink = ThreadingHTTPServer(("127.0.0.1", SINK_PORT), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    port = free_port()
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={out / 'alertmanager.yml'}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{url}/-/ready") is not None, "Alertmanager ready", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sink.shutdown()
        sink.server_close()


def get(url: str) -> Any:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
    except OSError:
        return None
    return json.loads(body) if body.strip().startswith((b"[", b"{")) else body


def wait_for(check: Any, what: str, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert proc is None or proc.poll() is None, (
            f"Alertmanager exited: {proc.stderr.read() if proc.stderr else ''}"
        )
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)
    return result


def fire(url: str, *alerts_: dict[str, str]) -> None:
    """Posts firing alerts as Prometheus does (API v2, endsAt a few evaluations ahead)."""
    import urllib.request

    now = datetime.now(UTC)
    body = [
        {
            "labels": a,
            "annotations": {"summary": a["alertname"]},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
        for a in alerts_
    ]
    req = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).close()


def test_a_down_pi_pages_once_and_its_dependants_are_silenced(alertmanager: str) -> None:
    """What Prometheus sends when pi-1 is off the network (every alert about it), pi-3's node
    exporter stopped (the textfile alert it causes), pi-4 burns its budget fast (the slow burn and
    p95 fire too), pi-5's rollout failed (and it drifts): one page per cause, one ticket per cause."""
    pi1 = {"host": "pi-1", "site": "s1"}
    fire(
        alertmanager,
        {"alertname": "HailoHostDown", "severity": "critical", **pi1},
        {"alertname": "HailoSidecarDown", "severity": "critical", "job": "hailo-sidecar", **pi1},
        {"alertname": "HailoNodeExporterDown", "severity": "critical", "job": "node", **pi1},
        {"alertname": "HailoTextfileMissing", "severity": "warning", "needs": "node", **pi1},
        {"alertname": "HailoNodeExporterDown", "severity": "critical", "job": "node", "host": "pi-3"},
        {"alertname": "HailoTextfileMissing", "severity": "warning", "needs": "node", "host": "pi-3"},
        {
            "alertname": "HailoInferLatencyBudgetBurnFast",
            "severity": "critical",
            "needs": "sidecar",
            "host": "pi-4",
        },
        {
            "alertname": "HailoInferLatencyBudgetBurnSlow",
            "severity": "warning",
            "needs": "sidecar",
            "host": "pi-4",
        },
        {"alertname": "HailoInferP95High", "severity": "warning", "needs": "sidecar", "host": "pi-4"},
        {"alertname": "HailoRolloutFailed", "severity": "warning", "needs": "node", "host": "pi-5"},
        {"alertname": "HailoFleetDrift", "severity": "warning", "needs": "sidecar node", "host": "pi-5"},
        {"alertname": "HailoDeviceHot", "severity": "warning", "needs": "sidecar", "host": "pi-2"},
    )
    expected = {
        ("/page", "HailoHostDown", "pi-1"),
        ("/page", "HailoNodeExporterDown", "pi-3"),
        ("/page", "HailoInferLatencyBudgetBurnFast", "pi-4"),
        ("/ticket", "HailoRolloutFailed", "pi-5"),
        ("/ticket", "HailoDeviceHot", "pi-2"),
    }

    def notified() -> list[tuple[str, str, str]]:
        return [
            (path.split("?")[0], a["labels"]["alertname"], a["labels"]["host"])
            for path, body in Sink.received
            for a in body["alerts"]
        ]

    wait_for(lambda: len(notified()) >= len(expected), "the notifications")
    # Two more group intervals: nothing else arrives.
    time.sleep(5)
    assert sorted(notified()) == sorted(expected)
    assert all(len(body["alerts"]) == 1 for _, body in Sink.received), "one notification per host and alert"
    # The page webhook's token as a header, from its file; the ticket webhook has none.
    assert Sink.authorization == {"/page": {"Bearer " + TOKEN}, "/ticket": {None}}
    states = {
        (a["labels"]["alertname"], a["labels"]["host"]): a["status"]
        for a in get(f"{alertmanager}/api/v2/alerts")
    }
    for silenced in (
        ("HailoSidecarDown", "pi-1"),
        ("HailoNodeExporterDown", "pi-1"),
        ("HailoTextfileMissing", "pi-1"),
        ("HailoTextfileMissing", "pi-3"),
        ("HailoInferLatencyBudgetBurnSlow", "pi-4"),
        ("HailoInferP95High", "pi-4"),
        ("HailoFleetDrift", "pi-5"),
    ):
        assert states[silenced]["state"] == "suppressed" and states[silenced]["inhibitedBy"], silenced
    assert states[("HailoHostDown", "pi-1")]["state"] == "active"


def start_alertmanager(config: Path, data: Path) -> tuple[subprocess.Popen[str], str, Path]:
    port = free_port()
    log = data / "alertmanager.log"
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(f"{url}/-/ready") is not None, "Alertmanager ready", proc)
    return proc, url, log


def test_the_webhook_token_is_not_in_alertmanagers_api_or_log(
    runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], tmp_path: Path
) -> None:
    """The page webhook's token is Alertmanager's (the receiver's credentials_file holds it), yet
    not past its 0640 files: Alertmanager 0.25 (Debian's) serves its whole configuration, webhook
    URLs unmasked, at /api/v2/status to anyone who reaches 127.0.0.1:9093, and a receiver that does
    not answer (the 3 a.m. case) gets its POST logged with Go's error, which quotes the URL, to the
    journal (journalctl -u prometheus-alertmanager)."""
    out, run = runs["receivers"]
    assert run.returncode == 0, run.stdout[-3000:]
    config = yaml.safe_load((out / "alertmanager.yml").read_text())
    (page,) = [r for r in config["receivers"] if r["name"] == "page"]
    auth = page["webhook_configs"][0]["http_config"]["authorization"]
    assert Path(auth["credentials_file"]).read_text() == TOKEN
    proc, url, log = start_alertmanager(out / "alertmanager.yml", tmp_path)  # no receiver listens
    try:
        status: dict[str, Any] = get(f"{url}/api/v2/status")
        fire(url, {"alertname": "HailoHostDown", "severity": "critical", "host": "pi-1"})
        wait_for(lambda: "Notify attempt failed" in log.read_text(), "a failed notification", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert TOKEN not in status["config"]["original"], "the webhook's token is served at /api/v2/status"
    assert "page-webhook.token" in status["config"]["original"]
    assert TOKEN not in log.read_text(), "the webhook's token is in Alertmanager's log"


# -- the sidecar's metrics ---------------------------------------------------------------------
def raised_kinds() -> set[str]:
    """Every kind the sidecar counts in hailo_sidecar_backend_errors_total, read from its sources:
    ModelLoadError/DeviceError("kind", ...), and in the backends the HailoRT status table
    (_STATUS) and the (kind, message) pairs their classifiers return."""
    kinds: set[str] = set()
    for path in (ROOT / "sidecar_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") in ("ModelLoadError", "DeviceError")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                kinds.add(node.args[0].value)
            pairs: list[ast.expr] = []
            if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(getattr(t, "id", "") == "_STATUS" for t in targets):
                    pairs = [v for v in node.value.values if v is not None]
            elif isinstance(node, ast.Return) and node.value is not None and path.parent.name == "backends":
                pairs = [node.value]
            for pair in pairs:
                if (
                    isinstance(pair, ast.Tuple)
                    and len(pair.elts) == 2
                    and isinstance(pair.elts[0], ast.Constant)
                ):
                    kinds.add(pair.elts[0].value)
    return kinds


def test_every_error_kind_is_exported_at_zero_from_start_up() -> None:
    kinds = raised_kinds()
    assert {
        "device_unavailable",
        "driver_mismatch",
        "permission_denied",
        "checksum_mismatch",
        "hailort",
    } <= kinds
    assert sorted(kinds - set(ERROR_KINDS)) == [], "kinds the sidecar counts but does not export at start-up"
    exposition = generate_latest(Metrics().registry).decode()
    for kind in ERROR_KINDS:
        assert f'hailo_sidecar_backend_errors_total{{kind="{kind}"}} 0.0' in exposition
    for endpoint in ("/infer", "/infer/batch"):
        for code in ("200", "500", "503"):
            assert (
                f'hailo_sidecar_requests_total{{code="{code}",endpoint="{endpoint}",method="POST"}} 0.0'
                in exposition
            )


def error_series(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "hailo_sidecar_backend_errors_total"
    }


@pytest.mark.parametrize("fallback", [False, True], ids=["primary", "fallback"])
def test_every_count_the_sidecar_makes_is_of_a_series_exported_at_zero(fallback: bool) -> None:
    """A failing fallback is counted as fallback_<kind> (service.py's _ensure_fallback and
    _on_device_error): for every kind the sources raise, the first count, the primary's or the
    fallback's, raises a series Prometheus already has at 0 and adds none (a series born at its
    first count hides that count from the rules), and the sidecar counts only through
    Metrics.count_error."""
    for kind in sorted(raised_kinds()):
        metrics = Metrics()
        before = error_series(metrics)
        metrics.count_error(kind, fallback=fallback)
        after = error_series(metrics)
        assert after.keys() == before.keys(), f"{kind}: a series born at its first count"
        assert [k for k in after if after[k] != before[k]] == [("fallback_" if fallback else "") + kind]
        assert before[("fallback_" if fallback else "") + kind] == 0
    for path in (ROOT / "sidecar_app").rglob("*.py"):
        if path.name != "metrics.py":
            assert "backend_errors" not in path.read_text(), f"{path.name} counts past Metrics.count_error"


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
    names |= set(re.findall(r"\b(hailo_host_[a-z_]+)\b", COLLECTOR.read_text()))
    return names | NODE_EXPORTER | PROMETHEUS


def used(expr: str) -> set[str]:
    expr = re.sub(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", "", expr)  # recording rules (level:metric:op)
    return set(re.findall(r"\b((?:hailo|node)_[a-z0-9_]+|up)\b(?=\s*[{\[)=<>*/+-]|\s*$)", expr))


def test_the_dashboard_and_the_rules_use_only_exported_metrics(rendered: Path) -> None:
    dashboard = json.loads((ROLE / "files" / "grafana" / "hailo-fleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in groups(rendered / "rules.yml") for r in g["rules"]]
    names = set().union(*map(used, exprs))
    assert names, "no metric names found in the expressions"
    assert sorted(names - exported()) == []
    # What operators were promised: p95, readiness, model and config, temperature, rollouts, drift.
    for needed in (
        "hailo_sidecar_request_duration_seconds_bucket",
        "hailo_sidecar_ready",
        "hailo_sidecar_model_info",
        "hailo_sidecar_device_temperature_celsius",
        "hailo_host_rollout_result",
        "hailo_host_desired_release_info",
    ):
        assert any(needed in e for e in exprs), needed


# -- the hailo textfile collector --------------------------------------------------------------
def collect(
    tmp_path: Path,
    rollout: Path,
    *args: str,
    desired: Path | None = None,
    release: dict[str, Any] | None = None,
    reader: Path = HAILO_STATE,
    rc: int = 0,
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Runs the collector as its timer does (with the hailort role's state reader READER: on this
    machine, which has no HailoRT); its output, checked by promtool (the node exporter's parser),
    as {metric: [(labels, value)]}."""
    release_file = tmp_path / "release.json"
    if release is not None:
        release_file.write_text(json.dumps(release))
    out = tmp_path / "textfile" / "hailo.prom"
    argv = [sys.executable, str(COLLECTOR), str(out), "--device", str(tmp_path / "hailo0"),
            "--release", str(release_file), "--rollout", str(rollout),
            "--desired", str(desired or tmp_path / "no-desired.json"),
            "--hailo-state", str(reader), *args]  # fmt: skip
    assert subprocess.run(argv, check=False).returncode == rc
    text = out.read_text()
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not [p for p in out.parent.iterdir() if p != out], "a temporary file was left beside it"
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def test_the_hailo_collector_writes_the_hosts_state(tmp_path: Path) -> None:
    release = {
        "deployed_at": "2026-12-01T10:00:00Z",
        "current": {
            "profile": "real",
            "config_version": "cfg-7",
            "model": {"name": "imu-encoder", "version": "1.4.0", "sha256": "ab" * 32},
        },
    }
    rollout = tmp_path / "rollout.json"
    rollout.write_text(json.dumps({"result": "rolled_back", "at": "2026-12-01T10:05:00Z", "changed": True}))
    m = collect(tmp_path, rollout, release=release, desired=RECORDED / "desired.json")
    assert m["hailo_host_release_info"] == [
        (
            {
                "model": "imu-encoder",
                "version": "1.4.0",
                "sha256": "ab" * 32,
                "config_version": "cfg-7",
                "profile": "real",
            },
            1.0,
        )
    ]
    assert m["hailo_host_release_deployed_timestamp_seconds"] == [({}, 1796119200.0)]
    assert m["hailo_host_rollout_result"] == [({"result": "rolled_back"}, 1.0)]
    assert m["hailo_host_rollout_changed"] == [({}, 1.0)]
    assert m["hailo_host_device_present"] == [({}, 0.0)]
    # sidecar_stack's desired.json: the release the inventory gives the host.
    assert m["hailo_host_desired_release_info"] == [
        ({"model": "imu-encoder", "version": "1.2.0", "config_version": "lab-C"}, 1.0)
    ]
    assert "hailo_host_rollout_target_info" not in m and "hailo_host_pull_agent_enabled" not in m


def test_the_collector_exports_the_hailort_state_the_reader_prints(tmp_path: Path) -> None:
    """A healthy Pi's state as the reader prints it (tests/unit/hailort_states/healthy.json): each
    part's version, one version, the node present with mode 0660; the reader is asked for no
    device control (no fw-control identify every minute) and no holders."""
    recorded = ROOT / "tests" / "unit" / "hailort_states" / "healthy.json"
    asked = tmp_path / "asked"
    reader = tmp_path / "hailo-state"
    reader.write_text(
        "import sys\n"
        f"open({str(asked)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"print(open({str(recorded)!r}).read())\n"
    )
    m = collect(tmp_path, RECORDED / "rollout-push.json", reader=reader)
    assert sorted((s["part"], s["version"]) for s, _ in m["hailo_host_hailort_version_info"]) == [
        ("binding", "4.23.0"), ("driver", "4.23.0"), ("library", "4.23.0"), ("package", "4.23.0"),
    ]  # fmt: skip
    assert m["hailo_host_hailort_versions_agree"] == [({}, 1.0)]
    assert m["hailo_host_device_present"] == [({}, 1.0)] and m["hailo_host_device_mode"] == [({}, 432.0)]
    assert asked.read_text() == f"--device {tmp_path / 'hailo0'} --skip firmware,holders,dkms"
    stale = json.loads(recorded.read_text())
    stale["module"]["loaded_version"] = "4.22.0"
    recorded = tmp_path / "stale.json"
    recorded.write_text(json.dumps(stale))
    reader.write_text(f"print(open({str(recorded)!r}).read())\n")
    m = collect(tmp_path, RECORDED / "rollout-push.json", reader=reader)
    assert m["hailo_host_hailort_versions_agree"] == [({}, 0.0)]
    assert ({"part": "driver", "version": "4.22.0"}, 1.0) in m["hailo_host_hailort_version_info"]


def test_without_the_state_reader_the_rest_is_written_and_the_run_fails(tmp_path: Path) -> None:
    """The hailort role has not installed the reader (or it breaks): no HailoRT or device series
    (nothing invented), the release and rollout still exported, exit 1 for systemd to show."""
    m = collect(tmp_path, RECORDED / "rollout-push.json", reader=tmp_path / "no-such-reader", rc=1)
    assert m["hailo_host_rollout_result"] == [({"result": "deployed"}, 1.0)]
    assert not {"hailo_host_hailort_versions_agree", "hailo_host_device_present"} & set(m)


def test_the_collector_reads_a_push_rollout_and_a_pull_agent_without_target(tmp_path: Path) -> None:
    push = collect(tmp_path, RECORDED / "rollout-push.json")
    assert push["hailo_host_rollout_result"] == [({"result": "deployed"}, 1.0)]
    assert push["hailo_host_rollout_timestamp_seconds"] == [({}, 1796634764.0)]
    assert "hailo_host_desired_release_info" not in push, "no desired.json: no desired release"
    pull = collect(tmp_path, RECORDED / "rollout-pull-current.json", "--pull-agent")
    assert pull["hailo_host_rollout_result"] == [({"result": "current"}, 1.0)]
    assert pull["hailo_host_pull_agent_enabled"] == [({}, 1.0)]
    assert "hailo_host_rollout_target_info" not in pull


@pytest.mark.parametrize("state", ["waiting", "held", "applying", "deployed", "failed", "refused"])
def test_the_collector_reads_the_pull_agents_target(tmp_path: Path, state: str) -> None:
    recorded = RECORDED / f"rollout-pull-{state}.json"
    m = collect(tmp_path, recorded, "--pull-agent")
    assert m["hailo_host_rollout_target_info"] == [
        ({"tag": "fleet-1.2.0", "version": "1.2.0", "state": state}, 1.0)
    ]
    assert m["hailo_host_rollout_target_tagged_timestamp_seconds"] == [({}, 1796637600.0)]
    assert m["hailo_host_rollout_result"] == [({"result": json.loads(recorded.read_text())["result"]}, 1.0)]
    assert m["hailo_host_rollout_timestamp_seconds"] == [({}, 1796639400.0)]


def test_a_malformed_rollout_file_leaves_a_valid_textfile(tmp_path: Path) -> None:
    """Every field of the wrong type (a crash's or a person's leftovers): the collector still
    writes a file the node exporter reads, and invents nothing."""
    m = collect(tmp_path, RECORDED / "rollout-pull-malformed.json", "--pull-agent")
    assert m["hailo_host_rollout_result"] == [({"result": 'failed {injected="1"} 1'}, 1.0)]
    assert m["hailo_host_rollout_changed"] == [({}, 0.0)]
    assert "hailo_host_rollout_timestamp_seconds" not in m
    assert "hailo_host_rollout_target_info" not in m, "a tag that is not a string is no target"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "hailo_host_rollout_result" not in collect(tmp_path, garbage)

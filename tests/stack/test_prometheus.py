"""Prometheus and Alertmanager configuration: promtool/amtool checks, a unit test per alert, a real Prometheus run."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.stack.prometheus_server import PrometheusServer, free_port
from tests.stack.stackfiles import (
    OBSERVABILITY,
    PROMETHEUS_DIR,
    REPO,
    alert_names,
    compose_services,
    require_tool,
    rule_files,
    rules,
)

ALERTMANAGER_FILE = OBSERVABILITY / "alertmanager" / "alertmanager.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml"))
DOC = REPO / "docs" / "observability-stack.md"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_promtool_check_config() -> None:
    result = run(require_tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    result = run(require_tool("promtool"), "check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = run(require_tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def rule_test_cases() -> Iterator[tuple[str, bool]]:
    """(alertname, expected to fire) for every alert_rule_test of every rule test file."""
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                yield case["alertname"], bool(case.get("exp_alerts"))


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = list(rule_test_cases())
    fired = {name for name, fires in cases if fires}
    quiet = {name for name, fires in cases if not fires}
    assert set(alert_names()) - fired == set(), "alerts never shown firing"
    assert set(alert_names()) - quiet == set(), "alerts never shown staying quiet"
    assert {name for name, _ in cases} <= set(alert_names()), "a test names an alert that does not exist"


def test_every_rule_file_is_unit_tested() -> None:
    tested = set()
    for path in RULE_TESTS:
        tested |= {(path.parent / name).resolve() for name in yaml.safe_load(path.read_text())["rule_files"]}
    assert {path.resolve() for path in rule_files()} <= tested


def doc_anchors() -> set[str]:
    """GitHub-style anchors of the headings of docs/observability-stack.md."""
    headings = re.findall(r"^#+\s+(.+)$", DOC.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_alerts_are_routable_and_documented() -> None:
    anchors = doc_anchors()
    for _, rule in rules():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        doc, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert doc == "docs/observability-stack.md", name
        assert anchor in anchors, f"{name}: runbook {anchor!r} is not a heading of the doc"


def test_amtool_check_config() -> None:
    result = run(require_tool("amtool"), "check-config", str(ALERTMANAGER_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=BackendDown"], "page"),
        (["severity=ticket", "alertname=CriticalBugsOpen"], "ticket"),
        (["alertname=SomethingUnlabelled"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    amtool = require_tool("amtool")
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_prometheus_scrapes_each_backend_replica_by_dns() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    backend = next(job for job in config["scrape_configs"] if job["job_name"] == "backend")
    # The operations port: the API port answers /metrics with 404.
    ops_port = int(compose_services()["backend"]["environment"]["OPS_PORT"])
    assert backend["dns_sd_configs"] == [
        {"names": ["backend"], "type": "A", "port": ops_port, "refresh_interval": "15s"}
    ]
    assert config["rule_files"] == ["rules/*.yml"]


@pytest.fixture
def exporter() -> Iterator[str]:
    """A prometheus_client endpoint on 127.0.0.1 shaped like the backend's /metrics (a few contract metrics)."""
    registry = CollectorRegistry()
    requests_total = Counter("http_requests", "", ["method", "path", "status"], registry=registry)
    duration = Histogram(
        "http_request_duration_seconds", "", ["method", "path"], buckets=(0.005, 0.1, 0.3, 1, 10), registry=registry
    )
    Gauge("reject_rate_percent", "", registry=registry).set(25)
    bugs = Gauge("bug_metrics", "", ["severity", "status"], registry=registry)
    bugs.labels("critical", "open").set(2)
    bugs.labels("low", "open").set(7)
    requests_total.labels("GET", "/products", "200").inc(10)
    duration.labels("GET", "/products").observe(0.2, exemplar={"trace_id": "0af7651916cd43dd8448eb211c80319c"})
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_real_prometheus_loads_the_rules_and_evaluates_alerts_on_scraped_data(exporter: str, tmp_path: Path) -> None:
    """Rules load in a real Prometheus, alerts go pending on real exposition, exemplars are stored with trace ids."""
    with PrometheusServer(require_tool("prometheus"), tmp_path, [exporter]) as prometheus:
        prometheus.wait_for('up{job="backend"} == 1')
        groups = prometheus.api("rules")["groups"]
        loaded = {group["name"] for group in groups}
        expected = {g["name"] for path in rule_files() for g in yaml.safe_load(path.read_text())["groups"]}
        assert loaded == expected
        errors = [(r["name"], r["lastError"]) for g in groups for r in g["rules"] if r.get("health") == "err"]
        assert errors == []

        # Before the first scrape every alert sees no data (BackendDown goes pending); then the scraped values rule.
        expected_pending = {"SQALRejectRateHigh", "CriticalBugsOpen"}
        deadline = time.monotonic() + 15
        pending: set[str] = set()
        while time.monotonic() < deadline and pending != expected_pending:
            pending = {alert["labels"]["alertname"] for alert in prometheus.api("alerts")["alerts"]}
            time.sleep(0.5)
        assert pending == expected_pending

        now = time.time()
        exemplars = prometheus.api(
            "query_exemplars", query="http_request_duration_seconds_bucket", start=now - 60, end=now + 60
        )
        trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
        assert trace_ids == {"0af7651916cd43dd8448eb211c80319c"}

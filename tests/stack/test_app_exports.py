"""The running app exports every metric of the contract, and a real Prometheus answers the reference PromQL.

A short workload (products, bugs, a failing request, SQAL frames over the WebSocket, a rate-limited burst) runs
against the real gunicorn with 2 workers; then `/metrics` must contain every sample name in
observability/metric-names.txt, so no dashboard panel or alert can be silently empty because of a renamed metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.sqal.helpers import make_device, sample_frame
from tests.stack import logql
from tests.stack.prometheus_server import PrometheusServer
from tests.stack.stackfiles import dashboard_logql, load_contract, readme_queries, require_tool
from tests.support.server import GunicornServer, session_server

# The reference document's PromQL examples (sqal-backend-api-integration.md, products-service-observability.md);
# `avg(sample_quality_score)` is replaced by the gauge, since sample_quality_score is a histogram.
REFERENCE_QUERIES = {
    "request rate": 'sum(rate(http_requests_total{job="backend"}[1m]))',
    "p95 latency": "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))",
    "error rate": 'sum(rate(http_requests_total{status=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))',
    "cache hit rate": "sum(rate(cache_hits_total[1m])) / (sum(rate(cache_hits_total[1m])) "
    "+ sum(rate(cache_misses_total[1m])))",
    "average quality score": "avg(average_quality_score)",
    "critical open bugs": 'sum(bug_metrics{severity="critical", status="open"})',
}


@pytest.fixture(scope="module")
def busy_server(
    app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn (2 workers) after a workload touching every domain; a tight write limit so one burst hits 429."""
    truncate_all(app)
    device_id, token = make_device(app)
    server = session_server(
        services,
        tmp_path_factory.mktemp("exports"),
        rate_limits=True,
        CHAOS_ENABLED="true",
        RATE_LIMIT_WRITE="1000/minute",
        RATE_LIMIT_READ="10000/minute",
    ).start()
    try:
        _workload(server, device_id, token)
        yield server
    finally:
        server.stop()


def _workload(server: GunicornServer, device_id: str, token: str) -> None:
    session = requests.Session()
    created = session.post(server.url("/products"), json={"name": "Lobe", "price": 30.0, "category": "Cru"}, timeout=5)
    assert created.status_code == 201
    for _ in range(6):
        assert session.get(server.url(created.headers["Location"]), timeout=5).status_code == 200
    session.put(server.url(created.headers["Location"]), json={"name": "L", "price": 1.0, "category": "C"}, timeout=5)
    bug = session.post(server.url("/api/bugs/"), json={"title": "Sensor down", "severity": "critical"}, timeout=5)
    assert bug.status_code == 201
    resolved = session.post(server.url("/api/bugs/"), json={"title": "Fixed", "severity": "low"}, timeout=5)
    session.patch(server.url(resolved.headers["Location"]), json={"status": "resolved"}, timeout=5)
    session.get(server.url("/api/bugs/metrics/summary"), timeout=5)
    assert session.get(server.url("/error?kind=exception"), timeout=5).status_code == 500
    session.get(server.url("/no/such/route"), timeout=5)

    url = server.base_url.replace("http://", "ws://") + "/ws/sensors/"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
        for seq in range(1, 4):
            ws.send(json.dumps(sample_frame(device_id, seq)))
            assert json.loads(ws.recv(timeout=10))["type"] == "ack"
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
    # One burst over the write limit produces a 429 and rate_limit_exceeded_total.
    statuses = {session.post(server.url("/products"), json={}, timeout=5).status_code for _ in range(1010)}
    assert 429 in statuses


def exported_sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_contract_metric_is_exported(busy_server: GunicornServer) -> None:
    exported: set[str] = set()
    # Every scrape aggregates all workers; scrape a few times so each worker's view is checked.
    for _ in range(4):
        response = requests.get(busy_server.url("/metrics"), timeout=10)
        assert response.status_code == 200
        exported |= exported_sample_names(response.text)
    missing = {
        f"{metric.name}: {sorted(metric.sample_names() - exported)}"
        for metric in load_contract().values()
        if not metric.sample_names() <= exported
    }
    assert not missing, f"contract metrics not exported after the workload: {sorted(missing)}"


def query_until_data(prometheus: PrometheusServer, server: GunicornServer, expr: str) -> list[dict[str, object]]:
    """The query's non-NaN result, polled while a trickle of traffic (reads and 5xx) keeps rate() windows busy."""
    result: list[dict[str, object]] = []
    for _ in range(40):
        requests.get(server.url("/products/1"), timeout=5)
        requests.get(server.url("/error?kind=exception"), timeout=5)
        result = [r for r in prometheus.query(expr) if r["value"][1] not in ("NaN",)]  # type: ignore[index]
        if result:
            break
        time.sleep(0.5)
    return result


def test_reference_and_readme_promql_return_data_from_a_real_prometheus(
    busy_server: GunicornServer, tmp_path: Path
) -> None:
    binary = require_tool("prometheus")
    readme = {query.source: query.expr for query in readme_queries("promql")}
    assert len(readme) >= 8, "the README's PromQL block was not found"
    target = f"127.0.0.1:{busy_server.port}"
    with PrometheusServer(binary, tmp_path, targets=[target]) as prometheus:
        prometheus.wait_for('up{job="backend"} == 1', timeout=20)
        for name, expr in {**REFERENCE_QUERIES, **readme}.items():
            result = query_until_data(prometheus, busy_server, expr)
            assert result, f"{name}: {expr} returned nothing\n{prometheus.log()[-2000:]}"


def test_readme_and_dashboard_logql_select_what_the_pipeline_produces(busy_server: GunicornServer) -> None:
    records = [json.loads(line) for line in busy_server.stdout().splitlines() if line.startswith("{")]
    line_pipeline = logql.pipeline(records)
    queries = readme_queries("logql") + dashboard_logql()
    assert len(queries) >= 5
    found = {query.source: logql.problems(query.expr, line_pipeline) for query in queries}
    assert {source: problem for source, problem in found.items() if problem} == {}


def test_the_logql_checker_rejects_what_it_should() -> None:
    line_pipeline = logql.pipeline([{"level": "ERROR", "event": "x", "exc_info": {"type": "E"}}])
    assert "error" in line_pipeline.values["level"]  # Alloy lower-cases the level label
    assert "ERROR" not in line_pipeline.values["level"]
    assert logql.problems('{service="backend"} | json | level="error" | exc_info_type != ""', line_pipeline) == []
    assert logql.problems('{service="backend"} | json | level="ERROR"', line_pipeline)
    assert logql.problems('{service="backend", level=~"error|WARNING"}', line_pipeline)
    assert logql.problems('{app="backend"}', line_pipeline)
    assert logql.problems('{service="backend-service"}', line_pipeline)
    assert logql.problems('{service="backend"} | exc_info_type != ""', line_pipeline), "a field before | json"
    assert logql.problems('{service="backend"} | json | no_such_field="1"', line_pipeline)

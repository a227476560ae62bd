"""/metrics in single-process mode (Flask test client): contract names, route labels, scrape collectors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from backend.observability import register_scrape_collector, sql

CONTRACT = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "http_request_size_bytes": "histogram",
    "http_response_size_bytes": "histogram",
    "database_queries_total": "counter",
    "db_query_duration_seconds": "histogram",
    "database_connection_pool": "gauge",
    "db_connection_pool_size": "gauge",
    "db_connection_pool_available": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def exported(client: FlaskClient) -> dict[str, str]:
    """Exported metric names (counters with their _total) and types."""
    text = client.get("/metrics").get_data(as_text=True)
    names = {}
    for family in text_string_to_metric_families(text):
        names[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return names


def count(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def fresh_app(settings: Settings) -> Iterator[APIFlask]:
    """An app of its own, for tests that register collectors."""
    application = create_app(settings)
    yield application
    with application.app_context():
        db.engine.dispose()


def test_contract_names_and_types_are_exported(client: FlaskClient) -> None:
    assert client.get("/products/1").status_code == 404  # at least one labelled sample of each HTTP/DB series
    names = exported(client)
    assert {name: names.get(name) for name in CONTRACT} == CONTRACT


def test_route_templates_label_requests_and_unknown_paths_share_one_label(client: FlaskClient) -> None:
    route = "/products/<int:product_id>"
    before = count(client, "http_requests_total", method="GET", path=route, status="404")
    unmatched = count(client, "http_requests_total", path="<unmatched>")
    for product_id in (101, 102, 103):
        assert client.get(f"/products/{product_id}").status_code == 404
    for path in ("/does-not-exist", "/products/abc"):
        assert client.get(path).status_code == 404
    assert count(client, "http_requests_total", method="GET", path=route, status="404") == before + 3
    assert count(client, "http_requests_total", path="<unmatched>") == unmatched + 2
    assert count(client, "http_requests_total", path="/products/101") == 0


def test_metrics_endpoint_is_neither_counted_nor_documented(app: APIFlask, client: FlaskClient) -> None:
    for _ in range(3):
        assert client.get("/metrics").status_code == 200
    assert count(client, "http_requests_total", path="/metrics") == 0
    with app.app_context():
        assert "/metrics" not in app.spec["paths"]  # type: ignore[index]


def test_exemplars_carry_the_trace_id_in_single_process_mode(client: FlaskClient) -> None:
    response = client.get("/health/live")
    trace_id = response.headers["X-Trace-Id"]
    text = client.get("/metrics", headers={"Accept": "application/openmetrics-text"}).get_data(as_text=True)
    lines = [line for line in text.splitlines() if 'path="/health/live"' in line and "_bucket" in line]
    assert any(f'trace_id="{trace_id}"' in line for line in lines)


class _Stock(Collector):
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("stock_items", "Items in stock", labels=["kind"])
        family.add_metric(["lobe"], 12)
        return [family]


class _Broken(Collector):
    def collect(self) -> Iterable[Metric]:
        raise RuntimeError("database unreachable")


@pytest.mark.fast_path("metrics_view")  # domain collectors, app_info, the whole process group
def test_scrape_collectors_are_served_and_a_failing_one_drops_only_itself(
    fresh_app: APIFlask, caplog: pytest.LogCaptureFixture
) -> None:
    register_scrape_collector(fresh_app, _Broken())
    register_scrape_collector(fresh_app, _Stock())
    client = fresh_app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'stock_items{kind="lobe"} 12.0' in response.get_data(as_text=True)
    assert "http_requests_total" in response.get_data(as_text=True)
    assert any(getattr(r, "event", "") == "metrics_collector_failed" for r in caplog.records)
    filtered = client.get("/metrics?name[]=stock_items").get_data(as_text=True)
    assert "stock_items" in filtered
    assert "http_requests_total" not in filtered


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT products.id FROM products WHERE products.id = %(pk_1)s", ("SELECT", "products")),
        ("SELECT count(*) AS n FROM (SELECT x FROM bugs) AS anon_1", ("SELECT", "bugs")),
        ('INSERT INTO "public"."sensor_samples" (a) VALUES (%(a)s)', ("INSERT", "public.sensor_samples")),
        ("UPDATE devices SET seen = now()", ("UPDATE", "devices")),
        ("/* hint */ DELETE FROM products WHERE id = %(id)s", ("DELETE", "products")),
        ("WITH t AS (SELECT 1) INSERT INTO audit SELECT * FROM t", ("INSERT", "audit")),
        ("SELECT 1", ("SELECT", "none")),
        ("SET LOCAL statement_timeout = 100", ("SET", "none")),
        ("VACUUM products", ("OTHER", "none")),
    ],
)
def test_sql_classification(statement: str, expected: tuple[str, str]) -> None:
    assert sql.classify(statement) == expected

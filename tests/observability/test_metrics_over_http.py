"""The real gunicorn with 4 workers: /metrics aggregates every worker; the trace backend is down throughout."""

from __future__ import annotations

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.observability.conftest import json_lines
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.gunicorn]

ROUTE = "/products/<int:product_id>"
WORKERS, POOL_SIZE, MAX_OVERFLOW = 4, 3, 20


def scrape(server: GunicornServer) -> list[Sample]:
    response = requests.get(server.url("/metrics"), timeout=5)
    assert response.status_code == 200
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = values(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


def wait_for_value(server: GunicornServer, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while (current := values(scrape(server), name, **labels)) != [expected]:
        assert time.monotonic() < deadline, f"{name}{labels} = {current}, expected {expected}"
        time.sleep(0.1)


def test_requests_on_all_workers_add_up_in_one_series(untraced_server: GunicornServer) -> None:
    ids = []
    for index in range(50):
        body: dict[str, Any] = {"name": f"Produit {index}", "price": 10 + index, "category": "Bulk"}
        created = requests.post(untraced_server.url("/products"), json=body, timeout=5)
        assert created.status_code == 201
        ids.append(created.json()["id"])

    def get(product_id: int) -> int:
        response = requests.get(untraced_server.url(f"/products/{product_id}"), timeout=10)  # new connection each
        assert len(response.headers["X-Trace-Id"]) == 32
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(get, ids * 4))
    assert statuses == [200] * 200  # the trace backend is unreachable: nothing fails

    access = [r for r in json_lines(untraced_server.stdout()) if r.get("route") == ROUTE and r["method"] == "GET"]
    assert len(access) == 200
    assert len({r["pid"] for r in access}) >= 2  # spread over several workers

    samples = scrape(untraced_server)
    route_series = [s for s in samples if s.name == "http_requests_total" and s.labels["path"] == ROUTE]
    assert [(s.labels["method"], s.labels["status"], s.value) for s in route_series] == [("GET", "200", 200.0)]
    assert not [s for s in samples if s.labels.get("path", "").startswith("/products/") and s.labels["path"] != ROUTE]
    assert value(samples, "http_requests_total", method="POST", path="/products", status="201") == 50
    assert value(samples, "http_request_duration_seconds_count", method="GET", path=ROUTE) == 200
    assert value(samples, "http_request_size_bytes_count", method="GET", path=ROUTE) == 200
    assert value(samples, "http_response_size_bytes_count", method="GET", path=ROUTE) == 200
    assert value(samples, "database_queries_total", operation="SELECT", table="products") >= 50  # cache misses
    assert value(samples, "database_queries_total", operation="INSERT", table="products") == 50
    assert value(samples, "db_query_duration_seconds_count", operation="INSERT") >= 50
    assert not values(samples, "http_requests_total", path="/metrics")


def test_slow_request_lands_in_a_finite_bucket(untraced_server: GunicornServer) -> None:
    assert requests.get(untraced_server.url("/slow?delay=0.4"), timeout=5).status_code == 200
    samples = scrape(untraced_server)
    buckets = {s.labels["le"]: s.value for s in samples if s.name == "http_request_duration_seconds_bucket"}
    assert {"0.005", "0.3", "10.0", "+Inf"} <= set(buckets)
    assert value(samples, "http_request_duration_seconds_bucket", path="/slow", le="0.3") == 0
    assert value(samples, "http_request_duration_seconds_bucket", path="/slow", le="0.5") == 1


def test_unknown_routes_collapse_into_one_series(untraced_server: GunicornServer) -> None:
    before = sum(values(scrape(untraced_server), "http_requests_total", path="<unmatched>", status="404"))
    for path in ("/nope", "/nope/1", "/a/b/c?x=1", "/products/not-a-number"):
        assert requests.get(untraced_server.url(path), timeout=5).status_code == 404
    samples = scrape(untraced_server)
    assert value(samples, "http_requests_total", method="GET", path="<unmatched>", status="404") == before + 4
    assert not [s for s in samples if "nope" in s.labels.get("path", "")]


@pytest.mark.fast_path("metrics_view")  # domain collectors, app_info, the whole process group
def test_pool_gauges_and_process_metrics_cover_the_whole_server(untraced_server: GunicornServer) -> None:
    wait_for_value(untraced_server, "database_connection_pool", 0, status="checked_out")
    samples = scrape(untraced_server)
    assert value(samples, "database_connection_pool", status="size") == WORKERS * POOL_SIZE
    assert value(samples, "db_connection_pool_size") == WORKERS * POOL_SIZE
    assert value(samples, "db_connection_pool_available") == WORKERS * (POOL_SIZE + MAX_OVERFLOW)
    assert value(samples, "process_resident_memory_bytes") > 50e6  # master + 4 workers
    assert value(samples, "process_cpu_seconds_total") > 0
    assert time.time() - 120 < value(samples, "process_start_time_seconds") <= time.time()
    assert value(samples, "process_open_fds") > 0


def test_dropped_spans_are_counted_and_reported_once_per_worker(untraced_server: GunicornServer) -> None:
    for _ in range(8):
        assert requests.get(untraced_server.url("/health/live"), timeout=5).status_code == 200
    deadline = time.monotonic() + 15
    while not sum(values(scrape(untraced_server), "otel_spans_dropped_total", reason="export_failed")):
        assert time.monotonic() < deadline, "no dropped span counted"
        time.sleep(0.2)
    records = json_lines(untraced_server.stdout())
    warnings = Counter(r["pid"] for r in records if r.get("event") == "otel_spans_dropped")
    assert warnings
    assert set(warnings.values()) == {1}  # at most one warning a minute per worker
    [warning, *_] = [r for r in records if r.get("event") == "otel_spans_dropped"]
    assert warning["level"] == "WARNING"
    assert warning["dropped"] >= 1
    assert warning["endpoint"].endswith("/v1/traces")
    assert "Connection refused" in warning["last_error"]
    assert not [r for r in records if r["logger"].startswith("opentelemetry")]


def test_a_dead_workers_counts_stay_and_its_gauges_go(untraced_server: GunicornServer) -> None:
    total_before = value(scrape(untraced_server), "http_requests_total", method="GET", path=ROUTE, status="200")
    assert untraced_server.process is not None
    untraced_server.signal(signal.SIGTTOU)  # the master stops one worker gracefully
    wait_for_value(untraced_server, "db_connection_pool_size", (WORKERS - 1) * POOL_SIZE)
    samples = scrape(untraced_server)
    assert value(samples, "http_requests_total", method="GET", path=ROUTE, status="200") == total_before
    assert value(samples, "database_connection_pool", status="size") == (WORKERS - 1) * POOL_SIZE

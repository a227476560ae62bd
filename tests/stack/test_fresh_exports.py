"""A just-started gunicorn, before any request: every contract metric is on /metrics, with zero-valued series for
its known label sets, so the reference's checks (`curl /metrics | grep cache_hits_total`) and the dashboards'
panels are not empty until first use.

Under prometheus_client's multiprocess mode a labelled series exists only once some process called `.labels()`;
the app creates the known ones in every worker at start. Only /metrics is requested here (it is not counted).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families

from backend.sqal import protocol
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.stack.stackfiles import load_contract
from tests.support.server import GunicornServer

# Series the app knows before any traffic, each at 0 (label sets that do not depend on requests or devices).
KNOWN_ZERO_SERIES = {
    "cache_hits_total": [{"cache": name} for name in ("products", "bugs", "dashboard")],
    "cache_misses_total": [{"cache": name} for name in ("products", "bugs", "dashboard")],
    "cache_latency_seconds_count": [{"cache": name} for name in ("products", "bugs", "dashboard")],
    "rate_limit_exceeded_total": [{"scope": scope} for scope in ("http_read", "http_write", "ws_device")],
    "websocket_errors_total": [{"code": code} for code in protocol.ErrorCode],  # every code of the protocol
    "websocket_messages_received_total": [
        {"endpoint": "/ws/sensors/", "type": kind} for kind in (*protocol.ClientFrame, *protocol.UnhandledFrame)
    ],
    "websocket_messages_sent_total": [{"endpoint": "/ws/sensors/", "type": kind} for kind in protocol.ServerFrame],
    "websocket_connections_active": [{"endpoint": "/ws/sensors/"}, {"endpoint": "/ws/dashboard/"}],
    "samples_ingested_total": [{"grade": grade} for grade in ("A", "B", "C", "REJECT")],
    "sample_quality_score_count": [{"grade": grade} for grade in ("A", "B", "C", "REJECT")],
    "otel_spans_dropped_total": [{"reason": "queue_full"}, {"reason": "export_failed"}],
    "bug_resolution_seconds": [{}],
    "bugs_resolved_today": [{}],
}


@pytest.fixture(scope="module")
def fresh_server(
    app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn with 2 workers on an empty database, waited for through /metrics only (no counted request)."""
    truncate_all(app)
    server = GunicornServer(
        {
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "RATE_LIMIT_ENABLED": "true",
            "SHUTDOWN_DRAIN_DELAY": "0",
        },
        tmp_path_factory.mktemp("fresh"),
        workers=2,
    ).start(ready_path="/metrics")
    try:
        yield server
    finally:
        server.stop()


def scrape(server: GunicornServer) -> list[object]:
    response = requests.get(server.url("/metrics"), timeout=10)
    assert response.status_code == 200
    return list(text_string_to_metric_families(response.text))


def test_every_contract_metric_is_declared_before_any_request(fresh_server: GunicornServer) -> None:
    # Whichever worker answers, the scrape aggregates all of them: every answer must be complete.
    for _ in range(4):
        families = {family.name for family in scrape(fresh_server)}  # type: ignore[attr-defined]
        # prometheus_client names a counter's family without its _total suffix.
        missing = sorted(name for name in load_contract() if name.removesuffix("_total") not in families)
        assert missing == [], f"not on /metrics of a fresh instance: {missing}"


def test_known_label_sets_are_exported_at_zero(fresh_server: GunicornServer) -> None:
    for _ in range(4):
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in scrape(fresh_server)
            for sample in family.samples  # type: ignore[attr-defined]
        }
        for name, label_sets in KNOWN_ZERO_SERIES.items():
            for labels in label_sets:
                key = (name, tuple(sorted(labels.items())))
                assert key in samples, f"{name}{labels} missing on a fresh instance"
                assert samples[key] == 0, f"{name}{labels} = {samples[key]} before any request"
    # Nothing was counted: the scrapes themselves are not requests.
    assert not any(name == "http_requests_total" and value for (name, _), value in samples.items())

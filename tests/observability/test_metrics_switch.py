"""METRICS_ENABLED=false: no /metrics route, no HTTP or SQL series recorded."""

from __future__ import annotations

import dataclasses

from apiflask import APIFlask
from prometheus_client import REGISTRY

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db


def _total(name: str) -> float:
    return sum(sample.value for family in REGISTRY.collect() for sample in family.samples if sample.name == name)


def test_metrics_disabled_serves_no_endpoint_and_records_nothing(app: APIFlask, settings: Settings) -> None:
    disabled = create_app(dataclasses.replace(settings, metrics_enabled=False))
    try:
        requests_before, queries_before = _total("http_requests_total"), _total("database_queries_total")
        with disabled.test_client() as client:
            assert client.get("/products").status_code == 200
            response = client.get("/metrics")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
        assert _total("http_requests_total") == requests_before
        assert _total("database_queries_total") == queries_before
    finally:
        with disabled.app_context():
            db.engine.dispose()


def test_metrics_enabled_by_default_counts_requests(app: APIFlask) -> None:
    before = _total("http_requests_total")
    with app.test_client() as client:
        assert client.get("/products").status_code == 200
        assert client.get("/metrics").status_code == 200
    assert _total("http_requests_total") > before

"""The scrape-time Prometheus collector: values from the database, a short cache, no series when the DB fails."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from backend.bugs import metrics
from backend.observability.collectors import StoreCollector
from backend.observability.metrics import exporter, scrape_registry
from scripts.devservices import free_port
from tests.bugs.conftest import NOW
from tests.bugs.helpers import create


@pytest.fixture(autouse=True)
def fresh_app_collectors(app: APIFlask) -> None:
    """The session's app keeps its collectors (and their cache) from test to test."""
    for collector in exporter.of(app).collectors:
        if isinstance(collector, StoreCollector):
            collector.clear()


def samples(collector: metrics.BugMetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the collector yields, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def bug_count(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], severity: str, status: str) -> float:
    return values[("bug_metrics", (("severity", severity), ("status", status)))]


def test_gauges_match_the_history(app: APIFlask, history: dict[str, int]) -> None:
    collector = metrics.BugMetricsCollector(metrics.app_engine(app))
    with time_machine.travel(NOW, tick=False):
        values = samples(collector)
    per_pair = {key: value for key, value in values.items() if key[0] == "bug_metrics"}
    assert len(per_pair) == 4 * 5, "every severity x status pair, zero-filled"
    nonzero = {(dict(labels)["severity"], dict(labels)["status"]): v for (_, labels), v in per_pair.items() if v}
    assert nonzero == {
        ("critical", "open"): 1,  # B6
        ("critical", "closed"): 1,  # B1
        ("critical", "in_progress"): 1,  # B3
        ("high", "resolved"): 1,  # B2
        ("high", "closed"): 1,  # B8
        ("medium", "open"): 1,  # B7
        ("medium", "resolved"): 1,  # B5
        ("low", "wont_fix"): 1,  # B4
    }
    assert values[("bugs_resolved_today", ())] == 2
    assert values[("bug_resolution_seconds", ())] == pytest.approx((24 + 84.5 + 24) * 3600 / 3)


def test_the_collector_exposes_the_reference_promql_series(app: APIFlask, client: FlaskClient) -> None:
    create(client, severity="critical")
    create(client, severity="critical")
    create(client, severity="low")
    registry = CollectorRegistry()
    registry.register(metrics.make_collector(app))
    assert registry.get_sample_value("bug_metrics", {"severity": "critical", "status": "open"}) == 2
    assert registry.get_sample_value("bug_metrics", {"severity": "high", "status": "open"}) == 0
    assert registry.get_sample_value("bugs_resolved_today") == 0
    exposition = generate_latest(registry).decode()
    assert 'bug_metrics{severity="critical",status="open"} 2.0' in exposition
    assert "# TYPE bug_metrics gauge" in exposition
    # No resolved bug yet: 0, so the series exists on a fresh instance (tests/stack/test_fresh_exports.py).
    assert registry.get_sample_value("bug_resolution_seconds") == 0


def test_the_app_serves_the_gauges_on_its_scrape_registry(app: APIFlask, client: FlaskClient) -> None:
    create(client, severity="critical")
    registry = scrape_registry(exporter.of(app).collectors)
    assert registry.get_sample_value("bug_metrics", {"severity": "critical", "status": "open"}) == 1


def test_collector_reads_its_app_from_a_thread_without_an_app_context(app: APIFlask, client: FlaskClient) -> None:
    create(client, severity="high")
    collector = metrics.BugMetricsCollector(metrics.app_engine(app))
    with ThreadPoolExecutor(1) as scraper:  # a registry scraped by a thread of its own
        values = scraper.submit(samples, collector).result()
    assert bug_count(values, "high", "open") == 1


def test_snapshot_is_cached_for_ttl_seconds(app: APIFlask, client: FlaskClient) -> None:
    clock = [1000.0]
    collector = metrics.BugMetricsCollector(metrics.app_engine(app), ttl=10, clock=lambda: clock[0])
    create(client, severity="high")
    assert bug_count(samples(collector), "high", "open") == 1
    create(client, severity="high")
    clock[0] += 9.9
    assert bug_count(samples(collector), "high", "open") == 1
    assert bug_count(samples(metrics.BugMetricsCollector(metrics.app_engine(app))), "high", "open") == 2  # uncached
    clock[0] += 0.2
    assert bug_count(samples(collector), "high", "open") == 2


@pytest.fixture
def unreachable_engine() -> Iterator[Engine]:
    engine = create_engine(
        f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing", connect_args={"connect_timeout": 2}
    )
    yield engine
    engine.dispose()


def test_database_failure_yields_no_series_and_no_exception(unreachable_engine: Engine) -> None:
    collector = metrics.BugMetricsCollector(lambda: unreachable_engine)
    assert list(collector.collect()) == []
    registry = CollectorRegistry()
    registry.register(collector)  # describe() only: registering never touches the database
    assert generate_latest(registry) == b""


def test_missing_engine_yields_no_series() -> None:
    def no_engine() -> Engine:
        raise RuntimeError("Working outside of application context.")

    assert list(metrics.BugMetricsCollector(no_engine).collect()) == []

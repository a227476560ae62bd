"""Prometheus gauges of the bug tracker, read from the database at scrape time.

    bug_metrics{severity, status}   bugs per severity x status (every pair, zero-filled)
    bugs_resolved_today             bugs whose resolved_at falls on the current UTC day
    bug_resolution_seconds          average resolved_at - created_at of resolved bugs (0 while none is resolved)

A custom collector rather than per-worker counters: every gunicorn worker answers a scrape with the same values
because they come from PostgreSQL (cached `ttl` seconds, nothing while the database cannot be read: see
`backend.observability.collectors`).

`backend.bugs.init_app` serves it on the app's /metrics (`observability.metrics.register_scrape_collector`);
`make_collector(app)` builds one for any other registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flask import Flask
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.engine import Engine

from backend.bugs.stats import metric_snapshot
from backend.extensions import db
from backend.observability.collectors import StoreCollector

DEFAULT_TTL = 10.0
SCRAPE_STATEMENT_TIMEOUT_MS = 2000


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("bug_metrics", "Bug reports per severity and status", labels=["severity", "status"]),
        GaugeMetricFamily("bugs_resolved_today", "Bugs resolved during the current UTC day"),
        GaugeMetricFamily("bug_resolution_seconds", "Average time from report to resolution of resolved bugs"),
    )


class BugMetricsCollector(StoreCollector):
    """Yields the bug gauges from a (cached) database snapshot."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl, clock)
        self._engine = engine

    def families(self) -> Iterable[Metric]:
        return _families()

    def compute(self) -> Iterable[Metric]:
        with self._engine().connect() as connection:
            connection.execute(text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}"))
            snapshot = metric_snapshot(connection)
        per_status, resolved_today, resolution = _families()
        for (severity, status), count in sorted(snapshot.by_severity_status.items()):
            per_status.add_metric([severity, status], count)
        resolved_today.add_metric([], snapshot.resolved_today)
        # 0 rather than no series while nothing is resolved: a fresh instance shows every panel and reference check.
        resolution.add_metric([], snapshot.avg_resolution_seconds or 0.0)
        return [per_status, resolved_today, resolution]


def app_engine(app: Flask) -> Callable[[], Engine]:
    """An engine getter: `app`'s engine, wherever the scrape runs (inside a request or in a thread of its own)."""

    def engine() -> Engine:
        with app.app_context():
            return db.engine

    return engine


def make_collector(app: Flask, ttl: float = DEFAULT_TTL) -> BugMetricsCollector:
    """A collector reading `app`'s database."""
    return BugMetricsCollector(app_engine(app), ttl=ttl)

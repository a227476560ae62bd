"""Observability inside the app: JSON logs, Prometheus metrics, OpenTelemetry traces.

The factory calls `configure_logging(settings)` first, then `init_app(app, settings)` once the extensions are
bound and before any other request hook is registered. Domains call `register_scrape_collector(app, collector)`.
"""

from __future__ import annotations

from apiflask import APIFlask

from backend.base.config import Settings
from backend.base.orm import db
from backend.observability import http, metrics, tracing
from backend.observability.logging import configure_logging
from backend.observability.metrics import register_scrape_collector

__all__ = ["configure_logging", "init_app", "register_scrape_collector"]


def init_app(app: APIFlask, settings: Settings) -> None:
    """Metrics, then tracing of the app, its engine and Redis, then the per-request hooks (header, access log)."""
    with app.app_context():
        engine = db.engine
    metrics.exporter.init_app(app, settings.db_max_overflow, engine)
    span_opener = tracing.init_app(app, settings, engine)
    http.install(app, span_opener)

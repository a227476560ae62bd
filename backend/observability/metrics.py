"""Prometheus metrics: HTTP and database series, connection-pool gauges and the /metrics endpoint.

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` is set (gunicorn.conf.py) before prometheus_client is imported: every
worker writes its samples to memory-mapped files there and /metrics aggregates all of them, whichever worker
answers. Without it (Flask test client, `flask shell`) the process-local default registry is served.

Domains add series computed at scrape time with `register_scrape_collector(app, collector)`, and export their
known label sets at 0 from the start with `zero_series(metric, label_sets)`. A labelled metric used by no process
yet is still declared (HELP/TYPE without samples), as single-process mode does.

`METRICS_ENABLED=false` (the baseline of the instrumentation-overhead benchmark): no /metrics route (a 404 like
any unknown path), no per-request HTTP series, no statement counting. Domain counters that other modules update
directly (cache hits, WebSocket frames) still count in memory, but nothing serves them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apiflask import APIFlask
from flask import Flask
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import event
from sqlalchemy.engine import Engine

from backend.base.extension import AppExtension
from backend.observability import sql
from backend.observability.process import ProcessGroupCollector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
UNMATCHED_PATH = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

# 5 ms .. 10 s, with 0.3 s for the latency SLO and 7.5 s so /slow (5 s by default) lands in a finite bucket.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

if os.environ.get(MULTIPROC_ENV):
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

http_requests = Counter("http_requests_total", "HTTP requests by route template", ["method", "path", "status"])
http_request_duration = Histogram(
    "http_request_duration_seconds", "HTTP request latency (s)", ["method", "path"], buckets=DURATION_BUCKETS
)
http_request_size = Histogram(
    "http_request_size_bytes", "HTTP request body size (bytes)", ["method", "path"], buckets=SIZE_BUCKETS
)
http_response_size = Histogram(
    "http_response_size_bytes", "HTTP response body size (bytes)", ["method", "path"], buckets=SIZE_BUCKETS
)
database_queries = Counter("database_queries_total", "SQL statements executed", ["operation", "table"])
db_query_duration = Histogram(
    "db_query_duration_seconds", "SQL statement latency (s)", ["operation"], buckets=DB_BUCKETS
)
# Pool gauges are per worker and summed over live workers (dead workers' files are dropped in child_exit).
database_connection_pool = Gauge(
    "database_connection_pool", "Connection pool: size and checked_out", ["status"], multiprocess_mode="livesum"
)
db_connection_pool_size = Gauge(
    "db_connection_pool_size", "Configured pool size (sum over workers)", multiprocess_mode="livesum"
)
db_connection_pool_available = Gauge(
    "db_connection_pool_available",
    "Connections obtainable without waiting: size + max overflow - checked out (sum over workers)",
    multiprocess_mode="livesum",
)
spans_dropped = Counter("otel_spans_dropped_total", "Spans lost before reaching the trace backend", ["reason"])


def zero_series(metric: MetricWrapperBase, label_sets: Iterable[str | Sequence[str]]) -> None:
    """Export `metric` at 0 for each known label set (a value, or a tuple of values) before its first use.

    Under gunicorn a labelled series exists only once some process called `.labels(...)`: call this from an
    `init_app`, which runs in every worker at start, so a fresh instance already shows the series.
    """
    for values in label_sets:
        metric.labels(*((values,) if isinstance(values, str) else values))


# Known reasons exported at 0 from the start, so "no spans lost" is a series, not an absence.
zero_series(spans_dropped, ("queue_full", "export_failed"))


_gunicorn_master: int | None = None


def set_gunicorn_master(pid: int) -> None:
    """Called in each worker (post_fork): process metrics then describe the master and all its workers."""
    global _gunicorn_master
    _gunicorn_master = pid


def is_multiprocess() -> bool:
    """True when samples go to PROMETHEUS_MULTIPROC_DIR (gunicorn)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def method_label(method: str) -> str:
    """The request method, or OTHER for non-standard ones (bounded label values)."""
    return method if method in HTTP_METHODS else "OTHER"


# Labelled children per (method, route, status) and per (operation, table): `labels()` validates and locks on
# every call. Bounded (a raw method is part of the key); past the bound, `labels()` is called as before.
MAX_CACHED_SERIES = 2048
_request_series: dict[tuple[str, str, int], list[Any]] = {}
_query_series: dict[tuple[str, str], tuple[Any, Any]] = {}


def _remember(cache: dict[Any, Any], key: Any, series: Any) -> Any:
    if len(cache) < MAX_CACHED_SERIES:
        cache[key] = series
    return series


def _http_series(method: str, path: str, status: int) -> list[Any]:
    """[requests, durations, request sizes, response sizes]; the last one made on first use (a response without a
    length adds no series)."""
    series = _request_series.get((method, path, status))
    if series is not None:
        return series
    label = method_label(method)
    made = [
        http_requests.labels(label, path, str(status)),
        http_request_duration.labels(label, path),
        http_request_size.labels(label, path),
        None,
    ]
    return _remember(_request_series, (method, path, status), made)


def observe_request(
    method: str,
    path: str,
    status: int,
    duration: float,
    request_bytes: int,
    response_bytes: int | None,
    trace_id: str | None = None,
    websocket: bool = False,
) -> None:
    """Record one HTTP request; `trace_id` becomes an exemplar where the client library supports it.

    A WebSocket session is counted but not timed: its duration is the session's, not a response time.
    """
    if not exporter.current.enabled:
        return
    if websocket:
        http_requests.labels(method_label(method), path, str(status)).inc()
        return
    series = _http_series(method, path, status)
    requests, durations, request_sizes, response_sizes = series
    requests.inc()
    # Multiprocess values drop exemplars (prometheus_client has no storage for them in mmap files).
    exemplar = {"trace_id": trace_id} if trace_id and not is_multiprocess() else None
    durations.observe(duration, exemplar)
    request_sizes.observe(request_bytes)
    if response_bytes is not None:
        if response_sizes is None:
            response_sizes = series[3] = http_response_size.labels(method_label(method), path)
        response_sizes.observe(response_bytes)


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if context is not None:
        context._observability_started = time.perf_counter()


def _record_query(context: Any, statement: str | None) -> None:
    started = getattr(context, "_observability_started", None)
    if started is None or statement is None:
        return
    context._observability_started = None
    duration = time.perf_counter() - started
    key = sql.classify(statement)
    series = _query_series.get(key)
    if series is None:
        operation, table = key
        series = _remember(
            _query_series, key, (database_queries.labels(operation, table), db_query_duration.labels(operation))
        )
    series[0].inc()
    series[1].observe(duration)


def _after_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _record_query(context, statement)


def _handle_error(exception_context: Any) -> None:
    _record_query(exception_context.execution_context, exception_context.statement)


def instrument_engine(engine: Engine, max_overflow: int) -> None:
    """Count and time every statement; keep the pool gauges up to date from pool events."""
    event.listen(engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(engine, "after_cursor_execute", _after_cursor_execute)
    event.listen(engine, "handle_error", _handle_error)
    size_of = getattr(engine.pool, "size", None)
    if not callable(size_of):
        return  # NullPool / StaticPool: no pool to describe
    size = int(size_of())
    database_connection_pool.labels("size").inc(size)
    database_connection_pool.labels("checked_out").inc(0)
    db_connection_pool_size.inc(size)
    db_connection_pool_available.inc(size + max_overflow)

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        database_connection_pool.labels("checked_out").inc()
        db_connection_pool_available.dec()

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        database_connection_pool.labels("checked_out").dec()
        db_connection_pool_available.inc()

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)


class _Forward(Collector):
    """Serves another registry's metrics from a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


class _AllWorkers(Collector):
    """Every worker's samples (multiprocess files), plus an empty family for each labelled metric of this process
    that no process has used yet: the HELP/TYPE lines single-process mode shows, so the name is always there."""

    def __init__(self) -> None:
        self._files = MultiProcessCollector(None)

    def collect(self) -> Iterable[Metric]:
        families = list(self._files.collect())
        written = {family.name for family in families}
        # The process's own families: labelled ones without children have no samples (process_* etc. always do).
        declared = [f for f in REGISTRY.collect() if not f.samples and f.name not in written]
        return families + declared


class _Guarded(Collector):
    """A domain collector whose failure drops its own series instead of failing the whole scrape."""

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self._inner.collect())
        except Exception:
            logger.warning(
                "metrics collector failed",
                exc_info=True,
                extra={"event": "metrics_collector_failed", "collector": type(self._inner).__name__},
            )
            return []


class AppInfo(Collector):
    """`app_info{service_name, version, environment} 1`: the service name logs and traces carry, and the release."""

    def __init__(self, service_name: str, version: str, environment: str) -> None:
        self.labels = [service_name, version, environment]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "app_info",
            "Service name (the `service` of logs, `service.name` of traces), version and APP_ENV; always 1",
            labels=["service_name", "version", "environment"],
        )
        family.add_metric(self.labels, 1)
        return [family]


def register_scrape_collector(app: Flask, collector: Collector) -> None:
    """Serve `collector` on this app's /metrics, in multiprocess and single-process mode alike.

    `collect()` runs at scrape time in the worker that answers, inside the /metrics request (an app context is
    active). Use it for values read from the database; per-worker counters belong in module-level
    prometheus_client metrics instead (gauges need a `multiprocess_mode`).
    """
    exporter.of(app).collectors.append(collector)


def scrape_registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    """The registry one scrape is served from: all workers (or this process), then the domain collectors."""
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    if is_multiprocess():
        registry.register(_AllWorkers())
        master = _gunicorn_master
        registry.register(ProcessGroupCollector(lambda: master) if master else ProcessCollector(registry=None))
    else:
        registry.register(_Forward(REGISTRY))
    for collector in collectors:
        registry.register(_Guarded(collector))
    return registry


class _AppMetrics(PrometheusMetrics):
    """prometheus-flask-exporter's /metrics view (content negotiation, `name[]` filter, do_not_track), served
    from `scrape_registry` so the app's scrape collectors are included in multiprocess mode too."""

    def __init__(self, app: APIFlask) -> None:
        super().__init__(app=None, path=None, export_defaults=False, metrics_decorator=app.doc(hide=True))
        self._app = app

    def generate_metrics(self, accept_header: str | None = None, names: list[str] | None = None) -> tuple[str, str]:
        registry: Any = scrape_registry(exporter.of(self._app).collectors)
        if names:
            registry = registry.restricted_registry(names)
        encoder, content_type = choose_encoder(accept_header or "")
        # /metrics is not traced: the collectors' SQL would otherwise start a root trace every scrape.
        with suppress_instrumentation():
            return encoder(registry).decode("utf-8"), content_type


@dataclass
class Exported:
    """One app's metrics switch (METRICS_ENABLED) and the collectors its /metrics adds."""

    enabled: bool
    collectors: list[Collector] = field(default_factory=list)


class Exporter(AppExtension[Exported]):
    """What the app's /metrics serves: `exporter.current.enabled`, `register_scrape_collector(app, collector)`."""

    name = "observability.metrics"

    def init_app(self, app: APIFlask, max_overflow: int, engine: Engine) -> None:
        """Serve /metrics and instrument the app's engine (neither when METRICS_ENABLED is false)."""
        settings = app.config["SETTINGS"]
        enabled = self.bind(app, Exported(bool(settings.metrics_enabled))).enabled
        if not enabled:
            return
        if "metrics_view" in settings.fast_paths:
            _AppMetrics(app).register_endpoint(METRICS_PATH, app)
        else:  # the library's view: this process's registry, or all workers' files; no domain collectors, app_info
            view = PrometheusMetrics(app=None, path=None, export_defaults=False, metrics_decorator=app.doc(hide=True))
            view.register_endpoint(METRICS_PATH, app)
        register_scrape_collector(app, AppInfo(settings.service_name, str(app.version), settings.app_env))
        instrument_engine(engine, max_overflow)


exporter = Exporter()  # the package's own: other modules register collectors with `register_scrape_collector`

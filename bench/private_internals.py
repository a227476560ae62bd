"""Scenario 9: each of our replacements of a library path against the stock one, in the same run
(docs/private-internals.md, docs/decisions/0009-fast-paths.md). `python -m bench.private_internals` runs it alone
(DATABASE_URL / REDIS_URL, else embedded services; ~1 minute).

In-process, no sockets: the app's WSGI callable is called in a loop (`time.process_time`, every thread of the
process) for a cached `GET /products/<id>`, in apps that differ only by FAST_PATHS, alternated round by round. What
does not run in the request thread is measured per unit and multiplied by the units of one request: the OTLP
encoding and the processor's `on_end` per span (spans per request counted), SQL spans per statement (statements
per uncached request counted), the breaker per guarded call. A request's CPU is the all-fast app's median.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pybreaker
from apiflask import APIFlask
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import create_engine, event, text
from werkzeug.test import EnvironBuilder

from backend import create_app
from backend.base.config import FAST_PATHS, Settings
from backend.core.resilience import Breaker
from backend.extensions import db
from backend.observability import otlp_encoding, sql_spans, tracing
from bench.harness import bench_services, migrate, spread
from scripts.services import TestServices

PATHS = [f"/products/{n}" for n in range(1, 11)]  # the 10 seeded products


def request_spans() -> list[ReadableSpan]:
    """The spans of one traced GET /products/<id>: the server span, two SQL statements and a Redis command."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    flask, sql, redis = (provider.get_tracer(name) for name in ("flask", "sqlalchemy", "redis"))
    with flask.start_as_current_span("GET /products/<int:product_id>", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "http.request.method": "GET",
                "url.scheme": "http",
                "server.address": "127.0.0.1",
                "server.port": 8000,
                "url.path": "/products/42",
                "user_agent.original": "wrk/4.2",
                "client.address": "127.0.0.1",
                "network.protocol.version": "1.1",
                "http.route": "/products/<int:product_id>",
                "http.response.status_code": 200,
            }
        )
        for statement in ("SELECT products", "SELECT sensor_samples"):
            with sql.start_as_current_span(statement, kind=SpanKind.CLIENT) as span:
                span.set_attributes(
                    {
                        "db.system": "postgresql",
                        "db.name": "sqal",
                        "db.statement": "SELECT products.id FROM products WHERE products.id = %(pk)s",
                        "db.operation": "SELECT",
                        "db.sql.table": statement.split()[1],
                        "net.peer.name": "127.0.0.1",
                        "net.peer.port": 5432,
                    }
                )
        with redis.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            span.set_attributes({"db.system": "redis", "db.statement": "GET ?", "db.redis.database_index": 0})
    return list(exporter.get_finished_spans())


def per_call_us(fn: Callable[[], object], repeat: int = 7, number: int = 2000) -> float:
    """Median over `repeat` runs of the CPU time of one call, in µs."""
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(number):
            fn()
        runs.append((time.process_time() - started) / number * 1e6)
    return statistics.median(runs)


def concurrent_seconds(breaker: pybreaker.CircuitBreaker, threads: int, call_seconds: float) -> float:
    """Wall time of `threads` simultaneous calls that each take `call_seconds` (a slow connect)."""
    workers = [threading.Thread(target=breaker.call, args=(time.sleep, call_seconds)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Counter(SpanProcessor):
    """Counts the spans ended while `on` (the same tiny cost in every arm)."""

    def __init__(self) -> None:
        self.on = False
        self.count = 0

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.count += 1


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
    return lambda data: None


def _wsgi_get(app: APIFlask, path: str) -> None:
    environ = EnvironBuilder(path=path, headers=[("User-Agent", "bench")]).get_environ()
    body = app.wsgi_app(environ, _start_response)
    try:
        for _ in body:
            pass
    finally:
        getattr(body, "close", lambda: None)()


def request_cpu_us(app: APIFlask, number: int) -> float:
    started = time.process_time()
    for n in range(number):
        _wsgi_get(app, PATHS[n % len(PATHS)])
    return (time.process_time() - started) / number * 1e6


def _alternated(arms: dict[str, APIFlask], rounds: int, number: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    for round_number in range(rounds):
        for name in order if round_number % 2 == 0 else reversed(order):
            runs[name].append(request_cpu_us(arms[name], number))
    return runs


def _count(counter: _Counter, action: Callable[[], object]) -> int:
    counter.count, counter.on = 0, True
    try:
        action()
    finally:
        counter.on = False
    return counter.count


def _sql_span_costs(database_url: str, statements: int) -> dict[str, float]:
    """µs per statement: no spans, our SqlSpans, and EngineTracer (what SQLAlchemyInstrumentor attaches; its
    instrument() refuses SQLAlchemy 2.1, so the stock path cannot run in the app: this is bench/peer's way)."""
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    engines = {name: create_engine(database_url, pool_size=1) for name in ("plain", "ours", "stock")}
    sql_spans.instrument_engine(engines["ours"])
    EngineTracer(
        trace.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        engines["stock"],
        metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
            "db.client.connections.usage"
        ),
    )
    connections = {name: engine.connect() for name, engine in engines.items()}
    select = text("SELECT 1")
    try:
        return {
            name: per_call_us(lambda c=connection: c.execute(select), repeat=5, number=statements)  # type: ignore[misc]
            for name, connection in connections.items()
        }
    finally:
        for connection in connections.values():
            connection.close()
        for engine in engines.values():
            engine.dispose()


def _without(name: str) -> tuple[str, ...]:
    return tuple(path for path in FAST_PATHS if path != name)


def scenario(services: TestServices, rounds: int = 6, number: int = 500) -> dict[str, Any]:
    migrate(services.database_url)
    base = Settings.from_env(
        {},
        database_url=services.database_url,
        redis_url=services.redis_url,
        app_env="test",
        otel_sdk_disabled=False,
        rate_limit_enabled=False,
        log_level="WARNING",  # the access line costs the same in every arm; here it would only fill the terminal
    )
    arms = {
        "ours": create_app(base),
        "stock_server_spans": create_app(dataclasses.replace(base, fast_paths=_without("server_spans"))),
        "stock_breaker": create_app(dataclasses.replace(base, fast_paths=_without("breaker"))),
    }
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "tracing is off (OTEL_SDK_DISABLED?)"
    counter = _Counter()
    provider.add_span_processor(counter)
    for app in arms.values():
        request_cpu_us(app, 50)  # warm-up: caches filled, pools connected
    spans = _count(counter, lambda: request_cpu_us(arms["ours"], 100)) / 100
    runs = _alternated(arms, rounds, number)
    request = statistics.median(runs["ours"])

    # Per unit, outside the request thread (the batch processor's thread) or per guarded call.
    batch = request_spans() * 128  # the batch processor's default export batch is 512 spans
    fast_encode = per_call_us(lambda: otlp_encoding.encode_spans(batch), repeat=5, number=10) / len(batch)
    sdk_encode = per_call_us(
        lambda: trace_encoder.encode_spans(batch).SerializePartialToString(), repeat=5, number=10
    ) / len(batch)
    counting = tracing.CountingBatchSpanProcessor(_Discard(), tracing.DropReporter("bench"), max_queue_size=1 << 20)
    plain = BatchSpanProcessor(_Discard(), max_queue_size=1 << 20)
    span = batch[0]
    on_end = {"ours": per_call_us(lambda: counting.on_end(span)), "stock": per_call_us(lambda: plain.on_end(span))}
    counting.shutdown()
    plain.shutdown()
    breaker = Breaker("bench", fail_max=5, reset_timeout=10, is_failure=lambda exc: True)
    public = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10)
    call = {"ours": per_call_us(lambda: breaker.call(int)), "stock": per_call_us(lambda: public.call(int))}
    slow = {"ours": concurrent_seconds(breaker, 8, 0.05), "stock": concurrent_seconds(public, 8, 0.05)}
    with arms["ours"].app_context():
        engine_url = db.engine.url.render_as_string(hide_password=False)
    statements_per_request = _statements_per_uncached_request(arms["ours"])
    sql = _sql_span_costs(engine_url, 1000)
    scrape = {
        "ours": per_call_us(lambda: _wsgi_get(arms["ours"], "/metrics"), repeat=3, number=20),
        "stock": per_call_us(lambda: _wsgi_get(_stock_metrics_app(base), "/metrics"), repeat=3, number=20),
    }
    return {
        "request_cpu_us": spread(runs["ours"]),
        "spans_per_request": spans,
        "statements_per_uncached_request": statements_per_request,
        "rounds": rounds,
        "requests_per_round": number,
        "server_spans": _compared(runs["ours"], runs["stock_server_spans"]),
        "breaker_request": _compared(runs["ours"], runs["stock_breaker"]),
        "otlp_encoder_us_per_span": {"ours": fast_encode, "stock": sdk_encode},
        "span_drops_on_end_us": on_end,
        "breaker_call_us": call,
        "breaker_8_slow_connects_ms": {name: seconds * 1000 for name, seconds in slow.items()},
        "sql_span_us_per_statement": sql,
        "metrics_scrape_us": scrape,
        "request_us": request,
    }


def _compared(ours: list[float], stock: list[float]) -> dict[str, Any]:
    """Both arms' spreads and the per-round stock/ours ratio (rounds alternate, so a ratio shares its load)."""
    ratios = [b / a for a, b in zip(ours, stock, strict=True)]
    return {"ours": spread(ours), "stock": spread(stock), "ratio": spread(ratios)}


_stock_metrics: dict[str, APIFlask] = {}


def _stock_metrics_app(base: Settings) -> APIFlask:
    if "app" not in _stock_metrics:
        _stock_metrics["app"] = create_app(dataclasses.replace(base, fast_paths=_without("metrics_view")))
    return _stock_metrics["app"]


def _statements_per_uncached_request(app: APIFlask) -> float:
    """SQL statements of a `GET /products/<id>` with the cache off (a cached one has none)."""
    seen = [0]

    def count(*args: Any) -> None:
        seen[0] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        uncached = create_app(dataclasses.replace(app.config["SETTINGS"], cache_enabled=False))
        with uncached.app_context():
            uncached_engine = db.engine
        event.listen(uncached_engine, "before_cursor_execute", count)
        _wsgi_get(uncached, PATHS[0])  # warm-up (connects)
        seen[0] = 0
        for path in PATHS:
            _wsgi_get(uncached, path)
        return seen[0] / len(PATHS)
    finally:
        event.remove(engine, "before_cursor_execute", count)


def gains(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per replacement: stock and ours per unit, the gain per request in µs and in % of a request's CPU."""
    request = result["request_us"]
    spans = result["spans_per_request"]

    def row(name: str, unit: str, stock: float, ours: float, per_request: float, note: str) -> dict[str, Any]:
        gain = (stock - ours) * per_request + 0.0  # no -0.0 for a path off the request
        return {
            "replacement": name,
            "unit": unit,
            "stock": stock,
            "ours": ours,
            "gain_us": gain,
            "gain_pct": 100 * gain / request,
            "note": note,
        }

    server = result["server_spans"]
    breaker = result["breaker_request"]
    encode = result["otlp_encoder_us_per_span"]
    on_end = result["span_drops_on_end_us"]
    sql = result["sql_span_us_per_statement"]
    slow = result["breaker_8_slow_connects_ms"]
    scrape = result["metrics_scrape_us"]
    return [
        row("otlp_encoder", "µs/span", encode["stock"], encode["ours"], spans, "exporter thread"),
        row("server_spans", "µs/request", request * server["ratio"]["median"], request, 1, "whole request"),
        row(
            "sql_spans",
            "µs/statement",
            sql["stock"] - sql["plain"],
            sql["ours"] - sql["plain"],
            result["statements_per_uncached_request"],
            "no stock path in the app (SQLAlchemyInstrumentor refuses SQLAlchemy 2.1); uncached request",
        ),
        row(
            "breaker",
            "µs/request",
            request * breaker["ratio"]["median"],
            request,
            1,
            f"8 concurrent 50 ms connects: {slow['ours']:.0f} ms ours, {slow['stock']:.0f} ms stock",
        ),
        row("metrics_view", "µs/scrape", scrape["stock"], scrape["ours"], 0, "not on the request path"),
        row("span_drops", "µs/span", on_end["stock"], on_end["ours"], spans, "counts queue-full drops"),
    ]


def _print(rows: Iterable[dict[str, Any]], result: dict[str, Any]) -> None:
    print(f"request CPU {result['request_us']:.0f} µs, {result['spans_per_request']:.1f} spans/request")
    for r in rows:
        print(
            f"{r['replacement']:14} {r['unit']:13} stock {r['stock']:8.1f}  ours {r['ours']:8.1f}  "
            f"gain {r['gain_us']:7.1f} µs = {r['gain_pct']:5.1f} % of a request  ({r['note']})"
        )


def main() -> None:
    with bench_services() as services:
        result = scenario(services)
    _print(gains(result), result)
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

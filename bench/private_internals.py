"""Micro-benchmark of each fast path that uses another library's internals against its public fallback
(docs/private-internals.md): `python -m bench.private_internals` (a few seconds, no services needed)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import pybreaker
from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from backend.core.resilience import Breaker
from backend.observability import otlp_encoding


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
    """Median over `repeat` runs of the time of one call, in µs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number * 1e6)
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


def main() -> None:
    spans = request_spans()
    batch = spans * 128  # the batch processor's default export batch is 512 spans
    fast = per_call_us(lambda: otlp_encoding.encode_spans(batch), number=20) / len(batch)
    sdk = per_call_us(lambda: trace_encoder.encode_spans(batch).SerializePartialToString(), number=20) / len(batch)
    print(f"OTLP encoding: {fast:.1f} µs/span fast, {sdk:.1f} µs/span SDK encoder ({sdk / fast:.1f}x)")

    breaker = Breaker("bench", fail_max=5, reset_timeout=10, is_failure=lambda exc: True)
    public = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10)
    lock_free = per_call_us(lambda: breaker.call(int))
    locked = per_call_us(lambda: public.call(int))
    print(f"Breaker call overhead: {lock_free:.2f} µs lock-free, {locked:.2f} µs pybreaker.call")
    parallel = concurrent_seconds(breaker, 8, 0.05)
    serial = concurrent_seconds(public, 8, 0.05)
    print(f"8 concurrent 50 ms connects: {parallel * 1000:.0f} ms lock-free, {serial * 1000:.0f} ms pybreaker.call")


if __name__ == "__main__":
    main()

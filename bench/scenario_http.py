"""Scenarios 1, 2 and 5: instrumentation overhead, cache on vs off, cold start — HTTP against the real gunicorn.

Scenarios 1 and 2 start both arms side by side (same database, same Redis) and alternate wrk runs between them
(A B, B A, ...), so each pair of runs gives one ratio measured under the same machine load.
"""

from __future__ import annotations

from typing import Any

import requests

from bench.harness import Comparison, OtlpSink, Server, alternate, rotating_paths_script, spread, wrk
from scripts.services import TestServices

PRODUCT_PATHS = [f"/products/{n}" for n in range(1, 11)]  # the 10 seeded products
WARM_UP_SECONDS = 3


def traced_env(sink: OtlpSink) -> dict[str, str]:
    """Production observability: every request traced and exported, JSON access logs, metrics."""
    return {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "LOG_LEVEL": "INFO",
        "METRICS_ENABLED": "true",
    }


# Access lines are written at INFO (backend.observability.http): WARNING removes them, errors would still log.
UNINSTRUMENTED_ENV = {"OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING", "METRICS_ENABLED": "false"}


def _summaries(comparison: Comparison, metrics: tuple[str, ...]) -> dict[str, Any]:
    return {metric: comparison.summary(metric) for metric in metrics}


def _log_size(server: Server) -> int:
    return server.log.stat().st_size if server.log.exists() else 0


def instrumentation_overhead(
    services: TestServices, sink: OtlpSink, rounds: int, seconds: float, connections: int = 16
) -> dict[str, Any]:
    """Scenario 1: GET /products/<id>, everything off (A) vs full tracing + JSON logs + metrics (B)."""
    script = rotating_paths_script(PRODUCT_PATHS)
    database, redis = services.database_url, services.redis_url
    with Server(database, redis, UNINSTRUMENTED_ENV) as off, Server(database, redis, traced_env(sink)) as on:
        checks: dict[str, float] = {
            "metrics_status_off": requests.get(off.url("/metrics"), timeout=5).status_code,
            "metrics_status_on": requests.get(on.url("/metrics"), timeout=5).status_code,
        }
        for server in (off, on):
            wrk(server.url("/"), WARM_UP_SECONDS, connections, 1, script)
        logs_before = {"off": _log_size(off), "on": _log_size(on)}
        exports_before, bytes_before = sink.requests, sink.bytes
        comparison = alternate(
            "instrumentation",
            rounds,
            lambda: wrk(off.url("/"), seconds, connections, 1, script).as_run(),
            lambda: wrk(on.url("/"), seconds, connections, 1, script).as_run(),
        )
        checks["spans_dropped_on"] = on.metric("otel_spans_dropped_total")
    requests_on = sum(run["requests"] for run in comparison.b)
    requests_off = sum(run["requests"] for run in comparison.a)
    return {
        "arms": {"a": "off: " + _describe(UNINSTRUMENTED_ENV), "b": "on: " + _describe(traced_env(sink))},
        "load": {"path": "GET /products/<1..10>", "connections": connections, "seconds": seconds, "rounds": rounds},
        "a": comparison.a,
        "b": comparison.b,
        "ratios": _summaries(comparison, ("rps", "p50", "p99")),
        "checks": {
            **checks,
            "otlp_exports": sink.requests - exports_before,
            "otlp_megabytes": round((sink.bytes - bytes_before) / 2**20, 2),
            "log_bytes_per_request_off": round((_log_size(off) - logs_before["off"]) / max(requests_off, 1), 1),
            "log_bytes_per_request_on": round((_log_size(on) - logs_before["on"]) / max(requests_on, 1), 1),
        },
    }


def _describe(env: dict[str, str]) -> str:
    shown = {key: value for key, value in env.items() if key != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    text = ", ".join(f"{key}={value}" for key, value in shown.items())
    return text + (", OTLP export to a local sink" if "OTEL_EXPORTER_OTLP_ENDPOINT" in env else "")


def _run_counting_queries(server: Server, seconds: float, connections: int, script: Any) -> dict[str, float]:
    """One wrk run plus the SQL statements it caused (/metrics' own scrape-time statements subtracted)."""
    first = server.metric("database_queries_total")
    before = server.metric("database_queries_total")
    per_scrape = before - first
    result = wrk(server.url("/"), seconds, connections, 1, script)
    after = server.metric("database_queries_total")
    queries = max(after - before - per_scrape, 0.0)
    return {**result.as_run(), "db_queries_per_request": queries / max(result.requests, 1)}


def cache(services: TestServices, sink: OtlpSink, rounds: int, seconds: float, connections: int = 8) -> dict[str, Any]:
    """Scenario 2: hot product reads with the Redis cache off (A) and on (B), production observability."""
    script = rotating_paths_script(PRODUCT_PATHS)
    database, redis = services.database_url, services.redis_url
    base = traced_env(sink)
    with (
        Server(database, redis, {**base, "CACHE_ENABLED": "false"}) as off,
        Server(database, redis, {**base, "CACHE_ENABLED": "true"}) as on,
    ):
        for server in (off, on):
            wrk(server.url("/"), WARM_UP_SECONDS, connections, 1, script)
        comparison = alternate(
            "cache",
            rounds,
            lambda: _run_counting_queries(off, seconds, connections, script),
            lambda: _run_counting_queries(on, seconds, connections, script),
        )
    return {
        "arms": {"a": "CACHE_ENABLED=false", "b": "CACHE_ENABLED=true"},
        "load": {"path": "GET /products/<1..10>", "connections": connections, "seconds": seconds, "rounds": rounds},
        "a": comparison.a,
        "b": comparison.b,
        "ratios": _summaries(comparison, ("db_queries_per_request", "p50", "p99", "rps")),
    }


def cold_start(services: TestServices, sink: OtlpSink, runs: int, workers: int = 2) -> dict[str, Any]:
    """Scenario 5: spawn of the gunicorn master to the first /health/ready 200 (PostgreSQL already running)."""
    env = traced_env(sink)

    def once() -> float:
        server = Server(services.database_url, services.redis_url, env, workers=workers)
        try:
            return server.start()
        finally:
            server.stop()

    once()  # warm-up: the OS page cache holds the interpreter and the libraries afterwards, as on a redeploy
    seconds = [round(once(), 3) for _ in range(runs)]
    return {"workers": workers, "seconds": seconds, **{k: round(v, 3) for k, v in spread(seconds).items()}}

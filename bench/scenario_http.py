"""Scenarios 1, 2 and 5: instrumentation overhead, cache on vs off, cold start — HTTP against the real gunicorn.

Scenarios 1 and 2 start their arms side by side (same database, same Redis) and alternate wrk runs between them
(A B, B A, ...), so each round gives one ratio per pair of arms measured under the same machine load. Scenario 1
also runs the peer (bench/peer: Flask + Flask-SQLAlchemy with the usual instrumentation libraries).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.harness import (
    BENCH_ROOT,
    METRICS_HEADERS,
    PEER_CONFIG,
    Comparison,
    OtlpSink,
    Server,
    alternate,
    alternate_arms,
    rotating_paths_script,
    spread,
    wrk,
)
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


def peer_env(otlp_endpoint: str | None) -> dict[str, str]:
    """The peer (bench/peer) uninstrumented, or instrumented with every request traced and exported."""
    if otlp_endpoint is None:
        return {"PEER_INSTRUMENTED": "false"}
    return {
        "PEER_INSTRUMENTED": "true",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
    }


def peer_server(services: TestServices, env: dict[str, str], workers: int = 2, log_dir: Path = BENCH_ROOT) -> Server:
    """The peer under the same gunicorn worker class, workers, threads and pool as the app."""
    database, redis = services.database_url, services.redis_url
    return Server(database, redis, env, workers, PEER_CONFIG, log_dir, ready_path="/health")


# Scenario 1's arms, in the order of a round (reversed every other round). Instrumented arms export to a sink each.
ARMS = {
    "app_off": "this project, uninstrumented",
    "app_on": "this project, full instrumentation, 100 % sampled, cached read",
    "app_sampled": "this project, full instrumentation, 10 % sampled (production), cached read",
    "app_uncached": "this project, full instrumentation, 100 % sampled, cache off",
    "peer_off": "peer, uninstrumented",
    "peer_on": "peer, instrumented, 100 % sampled",
}
# (numerator, denominator): every pair of the four main arms, then the sampled and uncached arms against the others.
RATIOS = (
    ("app_on", "app_off"),
    ("app_on", "peer_on"),
    ("app_uncached", "peer_on"),
    ("app_sampled", "app_off"),
    ("app_sampled", "peer_on"),
    ("peer_on", "peer_off"),
    ("app_off", "peer_off"),
    ("app_on", "peer_off"),
    ("app_off", "peer_on"),
    ("app_uncached", "app_on"),
)
PRODUCTION_SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def _arm_servers(services: TestServices, sinks: dict[str, OtlpSink]) -> dict[str, Server]:
    database, redis = services.database_url, services.redis_url
    return {
        "app_off": Server(database, redis, UNINSTRUMENTED_ENV),
        "app_on": Server(database, redis, traced_env(sinks["app_on"])),
        "app_sampled": Server(database, redis, {**traced_env(sinks["app_sampled"]), **PRODUCTION_SAMPLER}),
        "app_uncached": Server(database, redis, {**traced_env(sinks["app_uncached"]), "CACHE_ENABLED": "false"}),
        "peer_off": peer_server(services, peer_env(None)),
        "peer_on": peer_server(services, peer_env(sinks["peer_on"].endpoint)),
    }


def instrumentation_overhead(
    services: TestServices, rounds: int, seconds: float, connections: int = 16
) -> dict[str, Any]:
    """Scenario 1: GET /products/<id> on the six arms of ARMS, started side by side and alternated round by round."""
    script = rotating_paths_script(PRODUCT_PATHS)
    with ExitStack() as stack:
        # Sinks are entered first so they outlive the servers, whose workers flush their spans on exit.
        sinks = {name: stack.enter_context(OtlpSink(keep=True)) for name in ARMS if not name.endswith("_off")}
        servers = _arm_servers(services, sinks)
        for server in servers.values():
            stack.enter_context(server)
        metrics_status = {
            name: requests.get(server.url("/metrics"), headers=METRICS_HEADERS, timeout=5).status_code
            for name, server in servers.items()
        }
        served = {
            name: wrk(server.url("/"), WARM_UP_SECONDS, connections, 1, script).requests
            for name, server in servers.items()
        }
        logs_before = {name: _log_size(server) for name, server in servers.items()}
        runs = alternate_arms(
            rounds,
            {name: _wrk_run(server, seconds, connections, script) for name, server in servers.items()},
        )
        dropped = {name: servers[name].metric("otel_spans_dropped_total") for name in sinks if name.startswith("app")}
        logs_after = {name: _log_size(server) for name, server in servers.items()}
    checks: dict[str, dict[str, float]] = {}
    for name, arm_runs in runs.items():
        measured = sum(run["requests"] for run in arm_runs)
        sink = sinks.get(name)
        checks[name] = {
            "metrics_status": metrics_status[name],
            "log_bytes_per_request": round((logs_after[name] - logs_before[name]) / max(measured, 1), 1),
            # Every request the server saw (warm-up and runs; the readiness polls are a handful) against every span
            # it exported, the last ones flushed as its workers exited.
            "spans_per_request": round(sink.spans() / (served[name] + measured), 3) if sink else 0.0,
            "otlp_exports": sink.requests if sink else 0,
            "otlp_megabytes": round(sink.bytes / 2**20, 2) if sink else 0.0,
            **({"spans_dropped": dropped[name]} if name in dropped else {}),
        }
    return {
        "arms": {name: f"{ARMS[name]}: {_describe(servers[name].overrides)}" for name in ARMS},
        "load": {"path": "GET /products/<1..10>", "connections": connections, "seconds": seconds, "rounds": rounds},
        "runs": runs,
        "ratios": arm_ratios(runs),
        "checks": checks,
    }


def arm_ratios(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Every ratio of RATIOS ("numerator/denominator"): throughput, p50 and p99, median and spread over the rounds."""
    return {
        f"{num}/{den}": _summaries(Comparison(f"{num}/{den}", runs[den], runs[num]), ("rps", "p50", "p99"))
        for num, den in RATIOS
    }


def _wrk_run(server: Server, seconds: float, connections: int, script: Path) -> Callable[[], dict[str, float]]:
    return lambda: wrk(server.url("/"), seconds, connections, 1, script).as_run()


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

"""Benchmark (issue 20): 1M samples on plain PostgreSQL and on TimescaleDB — dashboard figures and time series
(raw SQL vs continuous aggregates), and the memory of a gunicorn worker streaming a 1M-row export.

    .venv/bin/python -m bench.lifecycle [--rows 1000000] [--rounds 3] [--repeat 5] [--skip-export] [--skip-timescale]

Scenario 7 of `make bench` (`scenario`); run alone here. Plain PostgreSQL: the cached `sqal_bench_dashboard`
database of `bench.dashboard` (same data). TimescaleDB: a cluster of the newest built version
(`scripts/timescale.py`) kept in .local/bench/timescaledb-<version> between runs, its `sqal_bench_dashboard` loaded
by the same generator and reused / topped up the same way; its aggregates are refreshed up to an hour ago as their
policies keep them (the last hour is computed in real time). Queries run in-process through the app's own
functions (uncached), `--repeat` times after a warm-up, in `--rounds` rounds alternating the two databases (plain
first, then TimescaleDB first, …): each round gives a median per query and a TimescaleDB/plain ratio. The export is
`GET /api/sqal/samples/export?format=csv` of every row from a real gunicorn (1 worker) on plain PostgreSQL,
streamed to nowhere, while the worker's RSS is sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import psycopg2
import requests

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from backend.sqal.reads import figures, service
from bench.dashboard import prepare
from bench.harness import BENCH_ROOT, Server, bench_services, dsn, spread
from scripts import timescale
from scripts.services import TestServices

ROWS, DEVICES, DAYS = 1_000_000, 20, 7.0

QUERIES: dict[str, Callable[[datetime], Any]] = {
    "dashboard figures": lambda now: figures.select_figures(now, 10.0),
    "timeseries 1h × 24 h": lambda now: service.timeseries(timedelta(hours=1), now - timedelta(hours=24), now),
    "timeseries 1d × 7 d": lambda now: service.timeseries(timedelta(days=1), now - timedelta(days=7), now),
    "timeseries 5m × 7 d": lambda now: service.timeseries(timedelta(minutes=5), now - timedelta(days=7), now),
    "timeseries 1h × 7 d, one device": lambda now: service.timeseries(
        timedelta(hours=1), now - timedelta(days=7), now, "BENCH_007"
    ),
}


def time_queries(database_url: str, redis_url: str, repeat: int) -> dict[str, dict[str, float]]:
    """Median / max milliseconds of each query, in-process, after one warm-up call."""
    app = create_app(Settings.from_env({}, database_url=database_url, redis_url=redis_url, app_env="test"))
    results: dict[str, dict[str, float]] = {}
    with app.app_context():
        for name, query in QUERIES.items():
            query(datetime.now(UTC))
            db.session.rollback()
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                query(datetime.now(UTC))
                times.append((time.perf_counter() - started) * 1000)
                db.session.rollback()
            results[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
        db.engine.dispose()
    return results


def refresh_aggregates(database_url: str) -> float:
    """Materialize both aggregates up to an hour ago (what their refresh policies keep up); seconds taken."""
    started = time.perf_counter()
    connection = psycopg2.connect(dsn(database_url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        for view in ("sensor_samples_1m", "sensor_samples_1h"):
            cursor.execute("CALL refresh_continuous_aggregate(%s, NULL, now() - interval '1 hour')", (view,))
    connection.close()
    return round(time.perf_counter() - started, 1)


def export_memory(database_url: str, redis_url: str) -> dict[str, Any]:
    """Stream the whole CSV export from gunicorn (1 worker); the worker's RSS before and during it."""
    with Server(database_url, redis_url, {"LOG_LEVEL": "WARNING"}, workers=1) as server:
        assert server.process is not None
        worker = psutil.Process(server.process.pid).children()[0]
        requests.get(server.url("/api/sqal/samples?limit=1"), timeout=10)  # warm: imports, pool, first query
        before = worker.memory_info().rss
        peak, samples, done = before, [], threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                rss = worker.memory_info().rss
                samples.append(rss)
                peak = max(peak, rss)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        size = lines = 0
        with requests.get(server.url("/api/sqal/samples/export?format=csv"), stream=True, timeout=60) as response:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    return {
        "rows": lines - 1,
        "bytes": size,
        "seconds": round(elapsed, 1),
        "rows_per_second": round((lines - 1) / elapsed),
        "worker_rss_mb_before": round(before / 2**20, 1),
        "worker_rss_mb_peak": round(peak / 2**20, 1),
        "worker_rss_mb_median_during": round(statistics.median(samples) / 2**20, 1),
        # Flat memory: the RSS in the first and the last quarter of the export (medians) should match.
        "worker_rss_mb_first_quarter": round(statistics.median(samples[: max(1, len(samples) // 4)]) / 2**20, 1),
        "worker_rss_mb_last_quarter": round(statistics.median(samples[-max(1, len(samples) // 4) :]) / 2**20, 1),
    }


@contextmanager
def bench_cluster(version: str = timescale.NEWEST_VERSION) -> Iterator[timescale.TimescalePostgres]:
    """A TimescaleDB `version` cluster kept in .local/bench/timescaledb-<version> between runs (its 1M-sample
    database is a cache, like the plain one); started if needed, stopped afterwards, its data kept."""
    cluster = timescale.TimescalePostgres(version, BENCH_ROOT / f"timescaledb-{version}", timescale.free_port())
    cluster.port = cluster.running_port() or cluster.port
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _compare(plain: list[dict[str, Any]], ts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per query: the medians of each database over the rounds and the TimescaleDB/plain ratio of each round."""
    return {
        name: {
            "plain_ms": spread([run[name]["median_ms"] for run in plain]),
            "timescaledb_ms": spread([run[name]["median_ms"] for run in ts]),
            "ratio": spread([t[name]["median_ms"] / p[name]["median_ms"] for p, t in zip(plain, ts, strict=True)]),
        }
        for name in QUERIES
    }


def scenario(
    services: TestServices, rounds: int, repeat: int, export: bool, timescaledb: bool = True, rows: int = ROWS
) -> dict[str, Any]:
    """Scenario 7: the queries on both databases in alternated rounds, then the export's memory (plain)."""
    plain_url, plain_data = prepare(services.server_url, rows, DEVICES, DAYS)
    result: dict[str, Any] = {
        "load": {"rows": rows, "devices": DEVICES, "days": DAYS, "rounds": rounds, "repeat": repeat},
        "plain": {"data": plain_data, "rounds": []},
    }
    reason = None if timescaledb else "not selected"
    reason = reason or timescale.missing_reason(timescale.NEWEST_VERSION)
    if reason:
        result["timescaledb"] = {"skipped": reason}
        result["plain"]["rounds"] = [time_queries(plain_url, services.redis_url, repeat) for _ in range(rounds)]
    else:
        with bench_cluster() as cluster:
            ts_url, ts_data = prepare(cluster.url("postgres"), rows, DEVICES, DAYS)
            ts: dict[str, Any] = {"version": timescale.NEWEST_VERSION, "data": ts_data, "rounds": []}
            ts["refresh_seconds"] = refresh_aggregates(ts_url)
            arms = [(plain_url, result["plain"]["rounds"]), (ts_url, ts["rounds"])]
            for number in range(rounds):
                for url, runs in arms if number % 2 == 0 else arms[::-1]:
                    runs.append(time_queries(url, services.redis_url, repeat))
            result["timescaledb"] = ts
            result["queries"] = _compare(result["plain"]["rounds"], ts["rounds"])
    result["export"] = export_memory(plain_url, services.redis_url) if export else {"skipped": "quick mode"}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-timescale", action="store_true")
    args = parser.parse_args()
    with bench_services() as services:
        result = scenario(
            services, args.rounds, args.repeat, not args.skip_export, not args.skip_timescale, rows=args.rows
        )
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (issue 20): 1M samples on plain PostgreSQL and on TimescaleDB — dashboard figures and time series
(raw SQL vs continuous aggregates), and the memory of a gunicorn worker streaming a 1M-row export.

    .venv/bin/python -m bench.lifecycle [--rows 1000000] [--repeat 15] [--skip-export] [--skip-timescale]

Plain PostgreSQL: the cached `sqal_bench_dashboard` database of `bench.dashboard` (same data). TimescaleDB: a
throwaway cluster of the newest built version (`scripts/timescale.py`), loaded with the same generator, its
aggregates refreshed up to an hour ago as their policies keep them (the last hour is computed in real time).
Queries run in-process through the app's own functions (uncached), `--repeat` times after a warm-up: median and
max in ms. The export is `GET /api/sqal/samples/export?format=csv` of every row from a real gunicorn (1 worker),
streamed to nowhere, while the worker's RSS is sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import psycopg2
import requests

from backend import create_app
from backend.core.config import Settings
from backend.extensions import db
from backend.sqal.reads import figures, service
from bench.dashboard import prepare
from bench.harness import Server, bench_services, dsn
from scripts import timescale

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
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-timescale", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"rows": args.rows}
    with bench_services() as services:
        plain_url, data = prepare(services.server_url, args.rows, 20, 7.0)
        report["plain"] = {"data": data, "queries": time_queries(plain_url, services.redis_url, args.repeat)}
        print(json.dumps(report["plain"], indent=1, default=str), file=sys.stderr)
        if not args.skip_export:
            report["plain"]["export"] = export_memory(plain_url, services.redis_url)
            print(json.dumps(report["plain"]["export"]), file=sys.stderr)
        reason = timescale.missing_reason(timescale.NEWEST_VERSION)
        if args.skip_timescale or reason:
            report["timescaledb"] = {"skipped": reason or "--skip-timescale"}
        else:
            with timescale.running_cluster(timescale.NEWEST_VERSION) as cluster:
                ts_url, ts_data = prepare(cluster.url("postgres"), args.rows, 20, 7.0, fresh=True)
                ts: dict[str, Any] = {"version": timescale.NEWEST_VERSION, "data": ts_data}
                ts["refresh_seconds"] = refresh_aggregates(ts_url)
                ts["queries"] = time_queries(ts_url, services.redis_url, args.repeat)
                if not args.skip_export:
                    ts["export"] = export_memory(ts_url, services.redis_url)
                report["timescaledb"] = ts
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the costliest public reads on 1,000,000 stored samples, against a real gunicorn, uncached.

    .venv/bin/python -m bench.costly_reads [--rows 1000000] [--runs 5] [--without-index] [--fresh] [--drop]

The widest `/api/sqal/stats/timeseries` range of every bucket (with and without `device_id`) and the `min_score`
filters of `/api/sqal/samples` that no index used to serve (a threshold few or no samples reach, alone or combined
with a grade or device that never reaches it), each `--runs` times after one warm-up. Every request must answer
200 well under the statement timeout (DB_STATEMENT_TIMEOUT_MS, 10 s by default): a cancelled query answers 503.
Data: the dashboard benchmark's generator (`bench.dashboard.prepare`: 20 devices, the rows spread over the last
7 days, loaded server-side with generate_series) in a database of its own, `sqal_bench_costly_reads`, kept
between runs. `--without-index` drops the `(fusion_final_score, "timestamp")` index of migration 0009 for the run
(and makes it again after) to show what it buys.

Scenario 8 of `make bench` (`scenario`) measures both in one run: `--rounds` rounds alternating the index on and
off (on first, then off first, …), the `min_score` reads in both arms, the timeseries (which do not use that index)
with it only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from backend.base.config import Settings
from bench import dashboard
from bench.harness import Server, bench_services, dsn, spread
from scripts.services import TestServices, drop_database, execute_autocommit

DATABASE = "sqal_bench_costly_reads"
SCORE_INDEX = "ix_sensor_samples_score_time"
SERVER_ENV = {"CACHE_ENABLED": "false", "LOG_LEVEL": "WARNING"}
WIDEST = {"1m": 1, "5m": 7, "15m": 14, "1h": 31, "1d": 366}  # days: TimeseriesQuery's bounds (BUCKETS)
DEVICE = "BENCH_007"
TIMESERIES = "/api/sqal/stats/timeseries?"
CREATE_SCORE_INDEX = f'CREATE INDEX {SCORE_INDEX} ON sensor_samples (fusion_final_score, "timestamp")'
DROP_SCORE_INDEX = f"DROP INDEX IF EXISTS {SCORE_INDEX}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def cases(now: datetime) -> list[tuple[str, str]]:
    """(label, path) of every read measured."""
    found = []
    for bucket, days in WIDEST.items():
        query = {"bucket": bucket, "from": _iso(now - timedelta(days=days)), "to": _iso(now)}
        found.append((f"timeseries {bucket} over {days} d", TIMESERIES + urlencode(query)))
        query["device_id"] = DEVICE
        found.append((f"timeseries {bucket} over {days} d, one device", TIMESERIES + urlencode(query)))
    samples: list[tuple[str, dict[str, Any]]] = [
        ("min_score=0.5", {"min_score": 0.5}),
        ("min_score=0.999", {"min_score": 0.999}),
        ("min_score=1 (no sample)", {"min_score": 1}),
        ("min_score=0.99, grade=REJECT (none)", {"min_score": 0.99, "grade": "REJECT"}),
        ("min_score=0.9, grade=C, one device (none)", {"min_score": 0.9, "grade": "C", "device_id": DEVICE}),
        ("min_score=0.999, limit=500", {"min_score": 0.999, "limit": 500}),
        ("min_score=0.6, last day, grade=C", {"min_score": 0.6, "grade": "C", "from": _iso(now - timedelta(days=1))}),
    ]
    found += [(f"samples {label}", "/api/sqal/samples?" + urlencode(query)) for label, query in samples]
    return found


def measure(server: Server, path: str, runs: int) -> dict[str, Any]:
    """Latency and statuses of `runs` sequential GETs of `path` after one warm-up (200 expected; 503 is a query
    cancelled at the statement timeout)."""
    latencies, statuses = [], set()
    with requests.Session() as session:
        for attempt in range(runs + 1):
            started = time.perf_counter()
            response = session.get(server.url(path), timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            if attempt:
                latencies.append(elapsed)
                statuses.add(response.status_code)
    return {
        "median_ms": round(statistics.median(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "runs": runs,
        "statuses": sorted(statuses),
    }


def _execute(database_url: str, statement: str) -> None:
    execute_autocommit(dsn(database_url), statement)


def run(rows: int, runs: int, without_index: bool, fresh: bool, drop: bool) -> dict[str, Any]:
    with bench_services() as services:
        database_url, data = dashboard.prepare(services.server_url, rows, 20, 7.0, fresh, database=DATABASE)
        if without_index:
            _execute(database_url, DROP_SCORE_INDEX)
        report: dict[str, Any] = {"data": data, "score_index": not without_index, "results": {}}
        try:
            with Server(database_url, services.redis_url, SERVER_ENV) as server:
                for label, path in cases(datetime.now(UTC)):
                    report["results"][label] = measure(server, path, runs)
                    print(f"  {label}: {report['results'][label]}", file=sys.stderr)
        finally:
            if without_index:  # as the migration makes it: the cached data stays valid for the next run
                _execute(database_url, CREATE_SCORE_INDEX)
            if drop:
                drop_database(services.server_url, DATABASE)
    return report


def _arm(server: Server, database_url: str, index: bool, runs: int) -> dict[str, Any]:
    """One arm of a round: the index made (`IF NOT EXISTS`: a run killed without it left must not count as with
    it) or dropped, then every read that arm measures."""
    _execute(database_url, CREATE_SCORE_INDEX.replace("INDEX", "INDEX IF NOT EXISTS", 1) if index else DROP_SCORE_INDEX)
    _execute(database_url, "ANALYZE sensor_samples")
    return {
        label: measure(server, path, runs)
        for label, path in cases(datetime.now(UTC))
        if index or label.startswith("samples ")
    }


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per read: median latency of each arm over the rounds, the slowest request, every status, and the
    without/with ratio of each round (reads measured with the index only have no ratio)."""
    reads: dict[str, Any] = {}
    for label in rounds[0]["with"]:
        arms = {arm: [run[arm][label] for run in rounds if label in run[arm]] for arm in ("with", "without")}
        read: dict[str, Any] = {}
        for arm, measured in arms.items():
            if measured:
                read[f"{arm}_ms"] = spread([m["median_ms"] for m in measured])
                read[f"{arm}_max_ms"] = max(m["max_ms"] for m in measured)
                read[f"{arm}_statuses"] = sorted({status for m in measured for status in m["statuses"]})
        if arms["without"]:
            read["ratio"] = spread([b["median_ms"] / a["median_ms"] for a, b in zip(*arms.values(), strict=True)])
        reads[label] = read
    return reads


def _statement_timeout_ms(database_url: str) -> int:
    """DB_STATEMENT_TIMEOUT_MS as the benchmark's gunicorn reads it (this environment, else the default)."""
    environ = {**os.environ, **SERVER_ENV}
    return Settings.from_env(environ, database_url=database_url, app_env="test").db_statement_timeout_ms


def scenario(services: TestServices, runs: int, rounds: int, rows: int = 1_000_000) -> dict[str, Any]:
    """Scenario 8: every read with and without the score index, alternated over `rounds`; the index is left made."""
    database_url, data = dashboard.prepare(services.server_url, rows, 20, 7.0, database=DATABASE)
    measured: list[dict[str, Any]] = []
    try:
        with Server(database_url, services.redis_url, SERVER_ENV) as server:
            for number in range(rounds):
                order = [True, False] if number % 2 == 0 else [False, True]
                arms = {("with" if index else "without"): _arm(server, database_url, index, runs) for index in order}
                measured.append({"order": list(arms), **arms})
    finally:
        _execute(database_url, CREATE_SCORE_INDEX.replace("INDEX", "INDEX IF NOT EXISTS", 1))
    return {
        "data": data,
        "load": {"rows": rows, "runs": runs, "rounds": rounds, "server": SERVER_ENV},
        "statement_timeout_ms": _statement_timeout_ms(database_url),
        "rounds": measured,
        "reads": _summary(measured),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--without-index", action="store_true", help=f"drop {SCORE_INDEX} first")
    parser.add_argument("--fresh", action="store_true", help="reload even if the cached database is still valid")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end (no cache)")
    args = parser.parse_args()
    report = run(args.rows, args.runs, args.without_index, args.fresh, args.drop)
    print(json.dumps(report, indent=2, default=str))
    print("\n| read (1M samples) | median ms | max ms | statuses |\n|---|---|---|---|", file=sys.stderr)
    for label, result in report["results"].items():
        print(f"| {label} | {result['median_ms']} | {result['max_ms']} | {result['statuses']} |", file=sys.stderr)
    return 0 if all(result["statuses"] == [200] for result in report["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

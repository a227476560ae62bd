"""Benchmark: `GET /api/dashboard/metrics/` on 1,000,000 stored samples, uncached, against a real gunicorn.

    .venv/bin/python -m bench.dashboard [--rows 1000000] [--fresh] [--drop]

Uses DATABASE_URL's server (or the bench's embedded one, kept in .local/bench/postgres) and keeps the database
`sqal_bench_dashboard` there between runs: a marker table records what was loaded, and a later run only tops the
data up to now (new samples in, samples older than `--days` out) when the marker still matches, else reloads.
A load migrates, bulk-loads `--rows` samples server-side (`INSERT … SELECT FROM generate_series`, no row crosses
the network) spread evenly over the last `--days` days across `--devices` devices with a believable grade/defect
mix, vacuums, then loads the last 10 minutes after the vacuum (the freshest pages are not all-visible, as in
production between two autovacuums). Then gunicorn (2 workers, CACHE_ENABLED=false) is measured by keep-alive
clients: `--requests` sequential requests, then the same spread over `--concurrency` clients, `--runs` times.
`--without-index` drops the indexes of migration 0005 (forces a reload next time). Target: p99 < 100 ms uncached.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import requests

from bench.harness import Server, bench_services, dsn, migrate
from scripts.services import admin_dsn, create_database, drop_database, with_database

DATABASE = "sqal_bench_dashboard"
DATASET_VERSION = 2  # bump when the generated data changes: the cached database is then reloaded
TAIL_SECONDS = 600
CHUNK = 250_000
ENDPOINT = "/api/dashboard/metrics/"
SERVER_ENV = {"CACHE_ENABLED": "false", "LOG_LEVEL": "WARNING"}
GRADE_MIX = "CASE WHEN r < 0.55 THEN 'A' WHEN r < 0.80 THEN 'B' WHEN r < 0.92 THEN 'C' ELSE 'REJECT' END"
SCORE = (
    "CASE WHEN r < 0.55 THEN 0.85 + 0.15 * r2 WHEN r < 0.80 THEN 0.72 + 0.129 * r2 "
    "WHEN r < 0.92 THEN 0.55 + 0.169 * r2 ELSE 0.549 * r2 END"
)
DEFECTS = """CASE
    WHEN grade = 'A' THEN '[]'::jsonb
    WHEN grade = 'B' THEN CASE WHEN r3 < 0.3 THEN '["surface_irregular"]'::jsonb ELSE '[]'::jsonb END
    WHEN grade = 'C' THEN (ARRAY['["low_volume"]', '["oxidation", "yellowing"]', '["dark_spots"]',
                                 '["saturated_channel"]'])[1 + floor(r3 * 4)::int]::jsonb
    ELSE (ARRAY['["blood_spot"]', '["blood_spot", "dark_spots"]', '["foreign_object"]',
                '["excess_volume", "surface_irregular"]', '["missing_zones", "no_product"]'])
         [1 + floor(r3 * 5)::int]::jsonb
END"""
MATRIX = "(SELECT jsonb_agg(row) FROM (SELECT jsonb_agg({value}) AS row FROM generate_series(0, 7) x, generate_series(0, 7) y GROUP BY x ORDER BY x) q)"  # noqa: E501
CHANNELS = (
    '{"F1_415nm": 1205, "F2_445nm": 2551, "F3_480nm": 3987, "F4_515nm": 5032, "F5_555nm": 5102, '
    '"F6_590nm": 5806, "F7_630nm": 6115, "F8_680nm": 5320, "Clear": 11984, "NIR": 2977}'
)
DEVICE_OF = "'BENCH_' || lpad((1 + i %% %(devices)s)::text, 3, '0')"
# Sample i is taken at origin + i × step: a top-up continues the same series where the previous load stopped.
LOAD_SQL = f"""
INSERT INTO sensor_samples (
    "timestamp", device_id, sample_id, seq,
    vl53l8ch_distance_matrix, vl53l8ch_reflectance_matrix, vl53l8ch_amplitude_matrix,
    vl53l8ch_volume_mm3, vl53l8ch_avg_height_mm, vl53l8ch_surface_uniformity, vl53l8ch_quality_score, vl53l8ch_grade,
    as7341_channels, as7341_integration_time, as7341_gain, as7341_color_score, as7341_freshness_score,
    as7341_quality_score, as7341_grade,
    fusion_final_score, fusion_final_grade, fusion_confidence, fusion_defects, processing_time_ms, received_at)
SELECT ts, device_id, 'B-' || i, i,
       m.distance, m.reflectance, m.amplitude,
       412350 * (0.8 + 0.4 * r2), 29.4, 0.91, score, grade,
       m.channels, 50, 64, 0.95, 0.92, score, grade,
       score, grade, 0.94, {DEFECTS}, 3.8, ts
FROM (
    SELECT i, r, r2, r3, {GRADE_MIX} AS grade, {SCORE} AS score,
           %(origin)s::timestamptz + make_interval(secs => i * %(step)s) AS ts, {DEVICE_OF} AS device_id
    FROM (SELECT i, random() AS r, random() AS r2, random() AS r3 FROM generate_series(%(first)s, %(last)s) i) g
) s,
(SELECT {MATRIX.format(value="200 + ((x * 7 + y * 3) %% 50)")} AS distance,
        {MATRIX.format(value="42.5 + ((x + y) %% 10) * 2.7")} AS reflectance,
        {MATRIX.format(value="1100 + ((x * 5 + y) %% 30) * 8.5")} AS amplitude,
        %(channels)s::jsonb AS channels) m;
INSERT INTO sensor_sample_keys (device_id, sample_id)
SELECT {DEVICE_OF}, 'B-' || i FROM generate_series(%(first)s, %(last)s) i;
"""
DELETE_KEYS_SQL = f"""
DELETE FROM sensor_sample_keys k USING generate_series(%(first)s, %(last)s) i
WHERE k.device_id = {DEVICE_OF} AND k.sample_id = 'B-' || i
"""
MARKER_SQL = """
CREATE TABLE IF NOT EXISTS bench_dataset (
    version int NOT NULL, rows bigint NOT NULL, devices int NOT NULL, days double precision NOT NULL,
    origin timestamptz NOT NULL, first_index bigint NOT NULL, last_index bigint NOT NULL,
    revision text NOT NULL, loaded_at timestamptz NOT NULL)
"""


def _exists(server_url: str, database: str = DATABASE) -> bool:
    connection = psycopg2.connect(admin_dsn(server_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            return cursor.fetchone() is not None
    finally:
        connection.close()


def _recreate(server_url: str, database: str = DATABASE) -> None:
    drop_database(server_url, database)
    create_database(server_url, database)


def drop(server_url: str) -> None:
    """Remove the benchmark database (and with it the cached data)."""
    drop_database(server_url, DATABASE)


def _marker(cursor: Any) -> dict[str, Any] | None:
    cursor.execute("SELECT to_regclass('bench_dataset') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT version, rows, devices, days, origin, first_index, last_index, revision FROM bench_dataset")
    row = cursor.fetchone()
    names = ("version", "rows", "devices", "days", "origin", "first_index", "last_index", "revision")
    return dict(zip(names, row, strict=True)) if row else None


def _revision(cursor: Any) -> str:
    cursor.execute("SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version")
    return str(cursor.fetchone()[0])


def _insert(cursor: Any, marker: dict[str, Any], first: int, last: int) -> None:
    step = marker["days"] * 86400 / marker["rows"]
    params = {"origin": marker["origin"], "step": step, "devices": marker["devices"], "channels": CHANNELS}
    for start in range(first, last + 1, CHUNK):
        cursor.execute(LOAD_SQL, {**params, "first": start, "last": min(start + CHUNK - 1, last)})


def _fill_to_now(cursor: Any, marker: dict[str, Any]) -> int:
    """Delete samples older than the window, add the missing ones up to now (vacuumed except the last 10 min)."""
    step = marker["days"] * 86400 / marker["rows"]
    now_index = math.floor((datetime.now(UTC) - marker["origin"]).total_seconds() / step)
    first_kept = max(marker["first_index"], now_index - marker["rows"] + 1)
    if first_kept > marker["first_index"]:
        # Through the timestamp index: sample i is at origin + i × step (half a step of margin for rounding).
        cutoff = marker["origin"] + timedelta(seconds=(first_kept - 0.5) * step)
        cursor.execute('DELETE FROM sensor_samples WHERE "timestamp" < %s', (cutoff,))
        cursor.execute(
            DELETE_KEYS_SQL, {"first": marker["first_index"], "last": first_kept - 1, "devices": marker["devices"]}
        )
    tail_start = max(marker["last_index"] + 1, now_index - int(TAIL_SECONDS / step) + 1)
    added = now_index - marker["last_index"]
    if tail_start > marker["last_index"] + 1:
        _insert(cursor, marker, marker["last_index"] + 1, tail_start - 1)
        cursor.execute("VACUUM ANALYZE sensor_samples")
    _insert(cursor, marker, tail_start, now_index)
    cursor.execute("ANALYZE sensor_samples")
    cursor.execute(
        "UPDATE bench_dataset SET first_index = %s, last_index = %s, loaded_at = now()", (first_kept, now_index)
    )
    return max(added, 0)


def prepare(
    server_url: str, rows: int, devices: int, days: float, fresh: bool = False, database: str = DATABASE
) -> tuple[str, dict[str, Any]]:
    """The benchmark database (`database` on the server) holding `rows` samples up to now: reused and topped up
    when its marker matches, else (re)loaded. Returns its URL and what was done (timings, window sizes)."""
    database_url = with_database(server_url, database)
    wanted = {"version": DATASET_VERSION, "rows": rows, "devices": devices, "days": days}
    started = time.perf_counter()
    marker = None
    if not fresh and _exists(server_url, database):
        migrate(database_url)  # a new migration changes the revision, which invalidates the data
        connection = psycopg2.connect(dsn(database_url))
        try:
            with connection.cursor() as cursor:
                marker = _marker(cursor)
                if marker is not None and (
                    {k: marker[k] for k in wanted} != wanted or marker["revision"] != _revision(cursor)
                ):
                    marker = None
        finally:
            connection.close()
    step = days * 86400 / rows
    # A top-up replaces as many rows as the time elapsed: past half the window a reload is as cheap.
    if marker is not None:
        age = (datetime.now(UTC) - (marker["origin"] + timedelta(seconds=marker["last_index"] * step))).total_seconds()
        if age > days * 86400 / 2:
            marker = None
    action = "reused"
    if marker is None:
        action = "loaded"
        _recreate(server_url, database)
        migrate(database_url)
    connection = psycopg2.connect(dsn(database_url))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            if marker is None:
                print(f"  loading {rows:,} samples (cached for later runs)…", file=sys.stderr)
                cursor.execute("SELECT setseed(0.42)")
                cursor.execute(
                    "INSERT INTO devices (device_id, token_hash, profile, firmware_version, last_seen_at) "
                    "SELECT 'BENCH_' || lpad(d::text, 3, '0'), md5('a' || d) || md5('b' || d), 'bench', '1.4.2', "
                    "now() FROM generate_series(1, %s) d",
                    (devices,),
                )
                cursor.execute(MARKER_SQL)
                origin = datetime.now(UTC) - timedelta(seconds=rows * step)
                marker = {**wanted, "origin": origin, "first_index": 1, "last_index": 0, "revision": _revision(cursor)}
                cursor.execute(
                    "INSERT INTO bench_dataset VALUES (%(version)s, %(rows)s, %(devices)s, %(days)s, %(origin)s, "
                    "%(first_index)s, %(last_index)s, %(revision)s, now())",
                    marker,
                )
            added = _fill_to_now(cursor, marker)
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE \"timestamp\" >= date_trunc('day', now() AT TIME ZONE 'UTC') "
                "AT TIME ZONE 'UTC'), count(*) FILTER (WHERE \"timestamp\" >= now() - interval '1 hour'), "
                "pg_size_pretty(pg_total_relation_size('sensor_samples')) FROM sensor_samples"
            )
            total, today, last_hour, size = cursor.fetchone()
    finally:
        connection.close()
    report = {
        "action": action,
        "rows_added": added,
        "prepare_seconds": round(time.perf_counter() - started, 1),
        "rows": total,
        "rows_today": today,
        "rows_last_hour": last_hour,
        "table_size": size,
    }
    return database_url, report


def drop_indexes(database_url: str) -> None:
    """Drop the indexes of 0005_sqal_reads and the marker (the next run reloads with them)."""
    connection = psycopg2.connect(dsn(database_url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS ix_sensor_samples_grade_time, ix_sensor_samples_defects")
        cursor.execute("DROP TABLE IF EXISTS bench_dataset")
    connection.close()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(ordered[-1], 1),
        "n": len(ordered),
    }


def measure(server: Server, requests_count: int, concurrency: int) -> dict[str, Any]:
    """Latency of `requests_count` GETs spread over `concurrency` keep-alive clients (bounded, then stops)."""
    per_client = max(1, requests_count // concurrency)

    def client() -> list[float]:
        latencies = []
        with requests.Session() as session:
            for _ in range(per_client):
                started = time.perf_counter()
                response = session.get(server.url(ENDPOINT), timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{ENDPOINT} answered {response.status_code}: {response.text[:300]}")
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [latency for batch in pool.map(lambda _: client(), range(concurrency)) for latency in batch]
    elapsed = time.perf_counter() - started
    return {**percentiles(results), "concurrency": concurrency, "requests_per_second": round(len(results) / elapsed)}


def run(server: Server, runs: int, requests_count: int, concurrency: int) -> dict[str, Any]:
    """Warm up, then `runs` × (sequential, concurrent) measurements."""
    measure(server, 20, 1)  # warm-up: connections, plans, OS cache
    results: dict[str, Any] = {"sequential": [], "concurrent": []}
    for _ in range(runs):
        results["sequential"].append(measure(server, requests_count, 1))
        results["concurrent"].append(measure(server, requests_count, concurrency))
    results["sample_response"] = requests.get(server.url(ENDPOINT), timeout=10).json()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=float, default=7.0, help="the rows are spread over this many days up to now")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--without-index", action="store_true", help="drop the indexes of 0005_sqal_reads first")
    parser.add_argument("--fresh", action="store_true", help="reload even if the cached database is still valid")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end (no cache)")
    args = parser.parse_args()
    with bench_services() as services:
        database_url, data = prepare(services.server_url, args.rows, args.devices, args.days, args.fresh)
        report: dict[str, Any] = {"rows_requested": args.rows, "devices": args.devices, "days": args.days, "data": data}
        if args.without_index:
            drop_indexes(database_url)
        report["index"] = not args.without_index
        try:
            with Server(database_url, services.redis_url, SERVER_ENV) as server:
                report.update(run(server, args.runs, args.requests, args.concurrency))
        finally:
            if args.drop:
                drop(services.server_url)
    print(json.dumps(report, indent=2, default=str))
    print(
        f"\n| uncached {ENDPOINT} | p50 ms | p95 ms | p99 ms | max ms | req/s |\n|---|---|---|---|---|---|",
        file=sys.stderr,
    )
    for row in report["sequential"] + report["concurrent"]:
        print(
            f"| {row['concurrency']} client(s) | {row['p50']} | {row['p95']} | {row['p99']} | {row['max']} | "
            f"{row['requests_per_second']} |",
            file=sys.stderr,
        )
    return 0 if statistics.median(row["p99"] for row in report["sequential"]) < 100 else 1


if __name__ == "__main__":
    sys.exit(main())

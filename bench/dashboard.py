"""Benchmark: `GET /api/dashboard/metrics/` on 1,000,000 stored samples, uncached, against a real gunicorn.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.dashboard

Creates the database `sqal_bench_dashboard` on DATABASE_URL's server (dropped at the end unless --keep), migrates
it, bulk-loads `--rows` samples server-side (`INSERT … SELECT FROM generate_series`, no row crosses the network)
spread evenly over the last `--days` days across `--devices` devices with a believable grade/defect mix, vacuums
it, then loads the last 10 minutes after the vacuum (the freshest pages are not all-visible, as in production
between two autovacuums). Then it starts gunicorn (2 workers, CACHE_ENABLED=false, no rate limit) and measures the
endpoint's latency seen by a keep-alive client: `--requests` sequential requests after a warm-up, then the same
with `--concurrency` clients. `--without-index` drops the indexes of migration 0005 first, to see what they buy.
Target (issue 6): p99 < 100 ms uncached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import requests
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "sqal_bench_dashboard"
TAIL_SECONDS = 600
ENDPOINT = "/api/dashboard/metrics/"
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
           %(end)s::timestamptz - make_interval(secs => (%(rows)s - i) * %(step)s) AS ts,
           'BENCH_' || lpad((1 + i %% %(devices)s)::text, 3, '0') AS device_id
    FROM (SELECT i, random() AS r, random() AS r2, random() AS r3 FROM generate_series(%(first)s, %(last)s) i) g
) s,
(SELECT {MATRIX.format(value="200 + ((x * 7 + y * 3) %% 50)")} AS distance,
        {MATRIX.format(value="42.5 + ((x + y) %% 10) * 2.7")} AS reflectance,
        {MATRIX.format(value="1100 + ((x * 5 + y) %% 30) * 8.5")} AS amplitude,
        %(channels)s::jsonb AS channels) m
"""


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def admin(url: str, statement: sql.Composable) -> None:
    connection = psycopg2.connect(with_database(url, "postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def migrate(database_url: str) -> None:
    """Run the Alembic migrations through the app, as `flask db upgrade` does."""
    from flask_migrate import upgrade

    from backend import create_app

    app = create_app({"database_url": database_url, "app_env": "test"})
    with app.app_context():
        upgrade()


def load(database_url: str, rows: int, devices: int, days: float, chunk: int = 250_000) -> dict[str, Any]:
    """Bulk-load `rows` samples ending now; returns timings and the sizes of the dashboard windows."""
    end = datetime.now(UTC)
    step = days * 86400 / rows
    tail = min(rows, int(TAIL_SECONDS / step))
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    timings: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.42)")
            cursor.execute(
                "INSERT INTO devices (device_id, token_hash, profile, firmware_version, last_seen_at) "
                "SELECT 'BENCH_' || lpad(d::text, 3, '0'), md5('a' || d) || md5('b' || d), 'bench', '1.4.2', now() "
                "FROM generate_series(1, %s) d",
                (devices,),
            )
            started = time.perf_counter()
            bounds = [*range(1, rows - tail + 1, chunk), rows - tail + 1]
            for first, after in itertools.pairwise(bounds):
                params = {"first": first, "last": after - 1, "rows": rows, "step": step, "end": end}
                cursor.execute(LOAD_SQL, {**params, "devices": devices, "channels": CHANNELS})
                print(f"  loaded {after - 1:,} rows", file=sys.stderr)
            cursor.execute("VACUUM ANALYZE sensor_samples")
            params = {"first": rows - tail + 1, "last": rows, "rows": rows, "step": step, "end": end}
            cursor.execute(LOAD_SQL, {**params, "devices": devices, "channels": CHANNELS})
            cursor.execute(
                "INSERT INTO sensor_sample_keys (device_id, sample_id) SELECT device_id, sample_id FROM sensor_samples"
            )
            cursor.execute("ANALYZE sensor_samples")
            timings["load_seconds"] = round(time.perf_counter() - started, 1)
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE \"timestamp\" >= date_trunc('day', now() AT TIME ZONE 'UTC') "
                "AT TIME ZONE 'UTC'), count(*) FILTER (WHERE \"timestamp\" >= now() - interval '1 hour'), "
                "pg_size_pretty(pg_total_relation_size('sensor_samples')) FROM sensor_samples"
            )
            total, today, last_hour, size = cursor.fetchone()
    finally:
        connection.close()
    return {**timings, "rows": total, "rows_today": today, "rows_last_hour": last_hour, "table_size": size}


class Server:
    """gunicorn with the bench settings, in its own process group."""

    def __init__(self, database_url: str, port: int, app: str, log_dir: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "APP_ENV": "production",
            "AUTH_MODE": "off",
            "WEB_CONCURRENCY": "2",
            "CACHE_ENABLED": "false",
            "RATE_LIMIT_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}"
        with (log_dir / "gunicorn.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", app],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/health/live", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not start; see {log_dir / 'gunicorn.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


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


def measure(url: str, requests_count: int, concurrency: int) -> dict[str, Any]:
    """Latency of `requests_count` GETs spread over `concurrency` keep-alive clients (bounded, then stops)."""
    per_client = max(1, requests_count // concurrency)

    def client() -> list[float]:
        latencies = []
        with requests.Session() as session:
            for _ in range(per_client):
                started = time.perf_counter()
                response = session.get(url + ENDPOINT, timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{ENDPOINT} answered {response.status_code}: {response.text[:300]}")
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [latency for batch in pool.map(lambda _: client(), range(concurrency)) for latency in batch]
    elapsed = time.perf_counter() - started
    return {**percentiles(results), "concurrency": concurrency, "requests_per_second": round(len(results) / elapsed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=float, default=7.0, help="the rows are spread over this many days up to now")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=18732)
    parser.add_argument("--app", default="backend:create_app()", help="gunicorn app spec")
    parser.add_argument("--without-index", action="store_true", help="drop the indexes of 0005_sqal_reads first")
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database of a previous --keep run")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url:
        parser.error("set DATABASE_URL to a PostgreSQL server (a database is created on it)")
    database_url = with_database(server_url, DATABASE)
    report: dict[str, Any] = {"rows_requested": args.rows, "devices": args.devices, "days": args.days}
    if not args.reuse:
        admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        migrate(database_url)
        print(f"loading {args.rows:,} samples…", file=sys.stderr)
        report["data"] = load(database_url, args.rows, args.devices, args.days)
    if args.without_index:
        admin_connection = psycopg2.connect(database_url)
        admin_connection.autocommit = True
        with admin_connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS ix_sensor_samples_grade_time, ix_sensor_samples_defects")
        admin_connection.close()
    report["index"] = not args.without_index
    server = Server(database_url, args.port, args.app, REPO_ROOT / ".local" / "bench" / "dashboard")
    try:
        measure(server.url, 20, 1)  # warm-up: connections, plans, OS cache
        report["sequential"] = measure(server.url, args.requests, 1)
        report["concurrent"] = measure(server.url, args.requests, args.concurrency)
        report["sample_response"] = requests.get(server.url + ENDPOINT, timeout=10).json()
    finally:
        server.stop()
        if not args.keep:
            admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
    print(json.dumps(report, indent=2, default=str))
    sequential, concurrent = report["sequential"], report["concurrent"]
    print(
        f"\n| uncached {ENDPOINT} | p50 ms | p95 ms | p99 ms | max ms | req/s |\n|---|---|---|---|---|---|\n"
        f"| 1 client | {sequential['p50']} | {sequential['p95']} | {sequential['p99']} | {sequential['max']} | "
        f"{sequential['requests_per_second']} |\n"
        f"| {concurrent['concurrency']} clients | {concurrent['p50']} | {concurrent['p95']} | {concurrent['p99']} | "
        f"{concurrent['max']} | {concurrent['requests_per_second']} |",
        file=sys.stderr,
    )
    return 0 if sequential["p99"] < 100 else 1


if __name__ == "__main__":
    sys.exit(main())

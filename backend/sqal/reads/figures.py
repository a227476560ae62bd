"""The dashboard figures: one SQL statement (index-only scans, or the hourly aggregate on TimescaleDB).

Served by `GET /api/dashboard/metrics/` and pushed by `/ws/dashboard/`, both through `routes.dashboard_snapshot`,
which caches them (`dashboard` namespace: TTL CACHE_TTL_DASHBOARD ≤ 5 s, single flight within and across workers):
a wall of dashboards costs about one SQL statement per TTL, and the live snapshots sent by every worker share it.
The scans use the two indexes of migration 0005_sqal_reads (declared on `SensorSample`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from backend.core.clock import day_bounds
from backend.extensions import db
from backend.sqal.aggregates import HOUR_VIEW
from backend.sqal.reads import cells
from backend.sqal.vocabulary import CONFORMING, GRADES, THROUGHPUT_WINDOW_SECONDS, sql_list

TOP_DEFECTS = 5


# One statement of index-only scans. Today's samples are counted one grade at a time, each a range of
# ix_sensor_samples_grade_time aggregated without hashing or FILTER (several times cheaper per row); "last hour" and
# the throughput window are counted by their own (small) range scans.
_RAW_GRADES = f"""
    SELECT g.grade, t.samples, t.score_sum
    FROM (VALUES {", ".join(f"('{grade}')" for grade in GRADES)}) AS g(grade)
    CROSS JOIN LATERAL (
        SELECT count(*) AS samples, sum(fusion_final_score) AS score_sum FROM sensor_samples
        WHERE fusion_final_grade = g.grade AND "timestamp" >= :day_start AND "timestamp" < :day_end
    ) t
"""
_RAW_DEFECTS = """
    SELECT d.code, count(*) AS n
    FROM sensor_samples s CROSS JOIN LATERAL jsonb_array_elements_text(s.fusion_defects) AS d(code)
    WHERE s."timestamp" >= :day_start AND s."timestamp" < :day_end AND s.fusion_defects <> '[]'::jsonb
    GROUP BY d.code ORDER BY n DESC, d.code LIMIT :top
"""
# TimescaleDB: the same figures from the hourly real-time aggregate (a UTC day is whole hours).
_AGGREGATE_GRADES = f"""
    SELECT g.grade, coalesce(a.samples, 0) AS samples, a.score_sum
    FROM (VALUES {", ".join(f"('{grade}')" for grade in GRADES)}) AS g(grade)
    LEFT JOIN (
        SELECT grade, sum(samples) AS samples, sum(score_sum) AS score_sum FROM {HOUR_VIEW}
        WHERE bucket >= :day_start AND bucket < :day_end GROUP BY grade
    ) a ON a.grade = g.grade
"""
_AGGREGATE_DEFECTS = f"""
    SELECT d.code, sum(a.samples) AS n
    FROM {HOUR_VIEW} a CROSS JOIN LATERAL jsonb_array_elements_text(a.defects) AS d(code)
    WHERE a.bucket >= :day_start AND a.bucket < :day_end AND a.defects <> '[]'::jsonb
    GROUP BY d.code ORDER BY n DESC, d.code LIMIT :top
"""
_FIGURES_SQL = f"""
    WITH grades AS MATERIALIZED ({{grades}}
    ), today AS (
        SELECT coalesce(sum(samples), 0) AS samples, sum(score_sum) / nullif(sum(samples), 0) AS average_score,
               jsonb_object_agg(grade, samples) AS grades,
               100.0 * sum(samples) FILTER (WHERE grade = 'REJECT') / nullif(sum(samples), 0) AS reject_rate,
               100.0 * sum(samples) FILTER (WHERE grade IN ({sql_list(CONFORMING)}))
                   / nullif(sum(samples), 0) AS conformity_rate
        FROM grades
    ), defects AS (
        SELECT coalesce(jsonb_agg(jsonb_build_object('code', code, 'count', n) ORDER BY n DESC, code), '[]')
               AS top_defects
        FROM ({{defects}}) ranked
    )
    SELECT today.samples AS today, today.average_score, today.grades, today.reject_rate, today.conformity_rate,
           today.samples / CAST(:elapsed_hours AS float8) AS samples_per_hour,
           (SELECT count(*) FROM sensor_samples WHERE "timestamp" >= :hour_start) AS last_hour,
           (SELECT count(*) FROM sensor_samples WHERE "timestamp" >= :window_start)
               / CAST(:window_seconds AS float8) AS throughput,
           defects.top_defects,
           (SELECT count(*) FROM devices WHERE enabled AND last_seen_at > :online_since) AS active_devices,
           (SELECT count(*) FROM devices WHERE enabled) AS devices_total
    FROM today, defects
"""
RAW_FIGURES = text(_FIGURES_SQL.format(grades=_RAW_GRADES, defects=_RAW_DEFECTS))
AGGREGATE_FIGURES = text(_FIGURES_SQL.format(grades=_AGGREGATE_GRADES, defects=_AGGREGATE_DEFECTS))


def select_figures(
    now: datetime, online_seconds: float, window_seconds: int = THROUGHPUT_WINDOW_SECONDS
) -> dict[str, Any]:
    """The dashboard figures at `now` (see `DashboardMetrics` for each definition), in one SQL statement."""
    day_start, day_end = day_bounds(now)
    params = {
        "day_start": day_start,
        "day_end": day_end,
        "hour_start": now - timedelta(hours=1),
        "window_start": now - timedelta(seconds=window_seconds),
        "window_seconds": window_seconds,
        "elapsed_hours": max((now - day_start).total_seconds(), 60.0) / 3600,
        "online_since": now - timedelta(seconds=online_seconds),
        "top": TOP_DEFECTS,
    }
    # Small index-only scans: parallel workers would only add start-up cost and compete with ingestion.
    db.session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    statement = AGGREGATE_FIGURES if cells.has_aggregates(db.engine) else RAW_FIGURES
    row = db.session.execute(statement, params).mappings().one()
    db.session.rollback()  # read-only; also ends the SET LOCAL
    return {
        "generated_at": now,
        "day_start": day_start,
        "samples_last_hour": row["last_hour"],
        "samples_today": row["today"],
        "samples_per_hour": row["samples_per_hour"],
        "average_quality_score": row["average_score"],
        "grade_distribution": {grade: row["grades"].get(grade, 0) for grade in GRADES},
        "reject_rate_percent": row["reject_rate"],
        "conformity_rate_percent": row["conformity_rate"],
        "active_devices": row["active_devices"],
        "devices_total": row["devices_total"],
        "throughput_per_second": row["throughput"],
        "throughput_window_seconds": window_seconds,
        "top_defects": row["top_defects"],
    }

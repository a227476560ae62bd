"""Bug statistics computed in SQL: the summary, the daily trends and the snapshot behind the Prometheus gauges.

Days are UTC days. "Today" comes from the application clock (`service.utcnow`) and is passed to SQL as a
parameter, never taken from the database's `now()`, so frozen-time tests and every worker agree on it.
"Open" means unresolved (status `open` or `in_progress`); a bug stops being open when it is resolved, closed or
set to won't-fix. Resolution time is `resolved_at - created_at` over bugs that carry a `resolved_at`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Float, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from backend.bugs.enums import UNRESOLVED, Category, Severity, Status, values
from backend.bugs.models import BugReport, bug_metrics
from backend.bugs.service import utcnow
from backend.core.clock import day_bounds
from backend.extensions import db

SECONDS_PER_HOUR = 3600.0


def _zero_filled(counts: Counter[str], enum: type[Severity | Status | Category]) -> dict[str, int]:
    return {value: counts.get(value, 0) for value in values(enum)}


def _resolution_seconds() -> Any:
    return func.extract("epoch", BugReport.resolved_at - BugReport.created_at)


def summary(today: date | None = None) -> dict[str, Any]:
    """Totals and breakdowns (zero-filled), resolved today, average and median resolution time in hours."""
    start, end = day_bounds(today or utcnow().date())
    by_status: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    open_by_severity: Counter[str] = Counter()
    grouped = select(BugReport.severity, BugReport.status, BugReport.category, func.count()).group_by(
        BugReport.severity, BugReport.status, BugReport.category
    )
    for severity, status, category, count in db.session.execute(grouped):
        by_status[status] += count
        by_severity[severity] += count
        by_category[category] += count
        if status in UNRESOLVED:
            open_by_severity[severity] += count

    seconds = _resolution_seconds()
    resolved_today, avg_hours, median_hours = db.session.execute(
        select(
            func.count().filter(BugReport.resolved_at >= start, BugReport.resolved_at < end),
            (func.avg(seconds) / SECONDS_PER_HOUR).cast(Float),
            (func.percentile_cont(0.5).within_group(seconds) / SECONDS_PER_HOUR).cast(Float),
        ).where(BugReport.resolved_at.is_not(None))
    ).one()
    return {
        "total": sum(by_status.values()),
        "by_status": _zero_filled(by_status, Status),
        "by_severity": _zero_filled(by_severity, Severity),
        "by_category": _zero_filled(by_category, Category),
        "open_by_severity": _zero_filled(open_by_severity, Severity),
        "critical_open": open_by_severity.get(Severity.CRITICAL.value, 0),
        "resolved_today": resolved_today,
        "avg_resolution_hours": avg_hours,
        "median_resolution_hours": median_hours,
    }


# One row per day from generate_series (zero-filled by the LEFT JOINs). Open at the end of day d is the number of
# bugs created before d ends minus those that stopped being open before d ends: the count before the window plus
# a running sum inside it. A bug stops being open at coalesce(resolved_at, closed_at), never before it was created.
TRENDS_SQL = text(
    """
    WITH days AS (
        SELECT d::date AS day FROM generate_series(CAST(:first_day AS timestamp), CAST(:last_day AS timestamp),
                                                   interval '1 day') AS d
    ),
    created AS (
        SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM bug_reports WHERE created_at >= :window_start AND created_at < :window_end GROUP BY 1
    ),
    resolved AS (
        SELECT (resolved_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM bug_reports WHERE resolved_at >= :window_start AND resolved_at < :window_end GROUP BY 1
    ),
    ended AS (
        SELECT (coalesce(resolved_at, closed_at) AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM bug_reports
        WHERE coalesce(resolved_at, closed_at) >= :window_start AND coalesce(resolved_at, closed_at) < :window_end
        GROUP BY 1
    ),
    before_window AS (
        SELECT count(*) FILTER (WHERE created_at < :window_start)
             - count(*) FILTER (WHERE coalesce(resolved_at, closed_at) < :window_start) AS open_bugs
        FROM bug_reports
    )
    SELECT days.day,
           coalesce(created.n, 0) AS created,
           coalesce(resolved.n, 0) AS resolved,
           before_window.open_bugs
             + sum(coalesce(created.n, 0) - coalesce(ended.n, 0)) OVER (ORDER BY days.day) AS open
    FROM days
    CROSS JOIN before_window
    LEFT JOIN created ON created.day = days.day
    LEFT JOIN resolved ON resolved.day = days.day
    LEFT JOIN ended ON ended.day = days.day
    ORDER BY days.day
    """
)


def trends(days: int, today: date | None = None) -> list[dict[str, Any]]:
    """One entry per UTC day for the `days` days ending today: created, resolved, open at the end of the day."""
    last_day = today or utcnow().date()
    first_day = last_day - timedelta(days=days - 1)
    params = {
        "first_day": first_day,
        "last_day": last_day,
        "window_start": day_bounds(first_day)[0],
        "window_end": day_bounds(last_day)[1],
    }
    return [
        {"date": row.day, "created": row.created, "resolved": row.resolved, "open": int(row.open)}
        for row in db.session.execute(TRENDS_SQL, params)
    ]


@dataclass(frozen=True)
class MetricSnapshot:
    """What the Prometheus gauges expose, read in one go."""

    by_severity_status: dict[tuple[str, str], int]
    resolved_today: int
    avg_resolution_seconds: float | None


def metric_snapshot(connection: Connection | Session, today: date | None = None) -> MetricSnapshot:
    """Counts per severity x status (every pair, zero-filled) from the `bug_metrics` view, plus resolution figures."""
    start, end = day_bounds(today or utcnow().date())
    counts = {(severity, status): 0 for severity in values(Severity) for status in values(Status)}
    grouped = select(
        bug_metrics.c.severity,
        bug_metrics.c.status,
        func.sum(bug_metrics.c.bugs),
    ).group_by(bug_metrics.c.severity, bug_metrics.c.status)
    for severity, status, count in connection.execute(grouped):
        counts[(severity, status)] = int(count)
    resolution = connection.execute(
        select(func.sum(bug_metrics.c.resolution_seconds), func.sum(bug_metrics.c.resolved))
    ).one()
    resolved_today = connection.execute(
        select(func.count()).where(BugReport.resolved_at >= start, BugReport.resolved_at < end)
    ).scalar_one()
    total_seconds, resolved = resolution
    average = float(total_seconds) / int(resolved) if resolved else None
    return MetricSnapshot(counts, int(resolved_today), average)

"""Where the reads count samples from: the continuous aggregates on TimescaleDB, the raw rows elsewhere.

A "cell" is (bucket, grade, samples, score_sum): every count and average the reads serve is a sum of cells. On
TimescaleDB with the aggregates of migration 0010 (`backend/sqal/aggregates.py`), [start, end) is cut into the
whole hours read from the hourly aggregate (only when the requested buckets are whole hours), the whole minutes
around them read from the per-minute aggregate, and the sub-minute edges read from `sensor_samples` itself: the
same rows as the plain SQL, counted from far fewer. Both aggregates are real-time, so the newest samples count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from backend.sqal.aggregates import HOUR_VIEW, MINUTE_VIEW
from backend.sqal.vocabulary import GRADES, sql_list

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
_aggregates: dict[str, bool] = {}


def has_aggregates(engine: Engine) -> bool:
    """True when the continuous aggregates exist in this database (checked once per database)."""
    key = engine.url.render_as_string(hide_password=True)
    if key not in _aggregates:
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT count(*) FROM pg_extension e, pg_class c "
                    "WHERE e.extname = 'timescaledb' AND c.relname IN (:minute, :hour) AND c.relkind = 'v'"
                ),
                {"minute": MINUTE_VIEW, "hour": HOUR_VIEW},
            ).scalar()
        _aggregates[key] = found == 2
    return _aggregates[key]


def _floor(moment: datetime, width: timedelta, origin: datetime) -> datetime:
    return origin + ((moment - origin) // width) * width


def _ceil(moment: datetime, width: timedelta, origin: datetime) -> datetime:
    floor = _floor(moment, width, origin)
    return floor if floor == moment else floor + width


def split(start: datetime, end: datetime, origin: datetime, whole_hours: bool) -> dict[str, tuple[datetime, datetime]]:
    """[start, end) cut into the spans each source covers: hours, minutes before/after them, raw edges."""
    m0, m1 = _ceil(start, MINUTE, origin), _floor(end, MINUTE, origin)
    if m0 >= m1:
        m0 = m1 = end
    h0 = h1 = m1
    if whole_hours:
        h0, h1 = _ceil(m0, HOUR, origin), _floor(m1, HOUR, origin)
        if h0 >= h1:
            h0 = h1 = m1
    return {
        "hours": (h0, h1),
        "minutes_before": (m0, h0),
        "minutes_after": (h1, m1),
        "raw_before": (start, m0),
        "raw_after": (m1, end),
    }


def cells_sql(
    bucket: Callable[[str], str],
    start: datetime,
    end: datetime,
    origin: datetime,
    *,
    use_aggregates: bool,
    whole_hours: bool,
    device_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """SQL of the cells of [start, end) (columns bucket, grade, samples, score_sum) and its parameters.

    `bucket(column)` is the SQL of the requested bucket of a time column; with whole_hours the buckets must be
    whole hours aligned on hours (then the hourly aggregate is used), else whole minutes.
    """
    device = " AND device_id = :device_id" if device_id is not None else ""
    grades = f"IN ({sql_list(GRADES)})"
    raw_bucket = bucket('"timestamp"')
    raw = (
        f"SELECT {raw_bucket} AS bucket, fusion_final_grade AS grade, count(*) AS samples, "
        f"sum(fusion_final_score) AS score_sum FROM sensor_samples "
        f'WHERE fusion_final_grade {grades} AND "timestamp" >= :{{lo}} AND "timestamp" < :{{hi}}{device} GROUP BY 1, 2'
    )
    params: dict[str, Any] = {"device_id": device_id}
    if not use_aggregates:
        params.update(lo=start, hi=end)
        return raw.format(lo="lo", hi="hi"), params
    parts = []
    for name, (low, high) in split(start, end, origin, whole_hours).items():
        if low >= high:
            continue
        params[f"{name}_lo"], params[f"{name}_hi"] = low, high
        if name.startswith("raw"):
            parts.append(raw.format(lo=f"{name}_lo", hi=f"{name}_hi"))
            continue
        view = HOUR_VIEW if name == "hours" else MINUTE_VIEW
        parts.append(
            f"SELECT {bucket('bucket')} AS bucket, grade, sum(samples) AS samples, sum(score_sum) AS score_sum "
            f"FROM {view} WHERE grade {grades} AND bucket >= :{name}_lo AND bucket < :{name}_hi{device} GROUP BY 1, 2"
        )
    if not parts:  # an empty range: no cell
        return raw.format(lo="lo", hi="hi"), {**params, "lo": start, "hi": start}
    return "\nUNION ALL\n".join(parts), params

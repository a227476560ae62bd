"""SQL behind the SQAL read API: keyset listing, sample look-up, devices and time series (figures: `figures.py`).

Every count is an aggregate computed by PostgreSQL; rows are never loaded into Python to be counted. Times come
from the caller (`now`), never from the database's `now()`, so every worker, the cache and frozen-time tests agree.
"Today" is the UTC day. Time buckets are aligned on 2000-01-01T00:00Z: `time_bucket` when TimescaleDB is
installed, `date_bin` otherwise (PostgreSQL >= 14; `date_trunc` cannot make 5- or 15-minute buckets).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, text, tuple_
from sqlalchemy.engine import Engine

from backend.base.errors import Conflict, NotFound
from backend.core.clock import day_bounds
from backend.extensions import db
from backend.sqal.models import SensorSample
from backend.sqal.reads import cells
from backend.sqal.sample_fields import SAMPLE_FIELDS, item_builder
from backend.sqal.vocabulary import GRADES

BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

S = SensorSample
_SUMMARY_FIELDS = tuple(field for field in SAMPLE_FIELDS if not field.detail)
_SUMMARY_COLUMNS = tuple(getattr(S, field.column) for field in _SUMMARY_FIELDS)
_DETAIL_COLUMNS = tuple(getattr(S, field.column) for field in SAMPLE_FIELDS)
_summary_item = item_builder(_SUMMARY_FIELDS)  # a row as `SampleOut`'s nested dict
_detail_item = item_builder(SAMPLE_FIELDS)  # as `SampleDetail`'s
_timescaledb: dict[str, bool] = {}


def bucket_start(moment: datetime, width: timedelta) -> datetime:
    """Start of the bucket of `width` holding `moment` (same alignment as the SQL)."""
    return BUCKET_ORIGIN + ((moment - BUCKET_ORIGIN) // width) * width


def has_timescaledb(engine: Engine) -> bool:
    """True when the database has the timescaledb extension installed (checked once per database)."""
    key = engine.url.render_as_string(hide_password=True)
    if key not in _timescaledb:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first()
        _timescaledb[key] = found is not None
    return _timescaledb[key]


def sample_conditions(
    *,
    device_id: str | None = None,
    grades: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    min_score: float | None = None,
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the sample filters (shared by the listing and the export)."""
    conditions: list[ColumnElement[bool]] = []
    if device_id is not None:
        conditions.append(S.device_id == device_id)
    if grades:
        conditions.append(S.fusion_final_grade.in_(list(grades)))
    if start is not None:
        conditions.append(S.timestamp >= start)
    if end is not None:
        conditions.append(S.timestamp < end)
    if min_score is not None:
        conditions.append(S.fusion_final_score >= min_score)
    return conditions


def list_samples(
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
    **filters: Any,
) -> tuple[list[dict[str, Any]], bool]:
    """Samples newest first (timestamp, then id), strictly after the keyset position `after`; (items, more).

    `filters`: those of `sample_conditions`."""
    conditions = sample_conditions(**filters)
    if after is not None:
        # The plain bound lets the planner range-scan the timestamp index; the row comparison breaks ties.
        conditions.append(S.timestamp <= after[0])
        conditions.append(tuple_(S.timestamp, S.id) < tuple_(after[0], after[1]))
    statement = select(*_SUMMARY_COLUMNS).where(*conditions).order_by(S.timestamp.desc(), S.id.desc()).limit(limit + 1)
    rows = db.session.execute(statement).mappings().all()
    return [_summary_item(row) for row in rows[:limit]], len(rows) > limit


def get_sample(key: str, device_id: str | None = None) -> dict[str, Any]:
    """The full sample whose sample_id (or id) is `key`; NotFound, or Conflict when several devices match."""
    matches: ColumnElement[bool] = S.sample_id == key
    with contextlib.suppress(ValueError):
        matches = matches | (S.id == uuid.UUID(key))
    statement = select(*_DETAIL_COLUMNS).where(matches)
    if device_id is not None:
        statement = statement.where(S.device_id == device_id)
    rows = db.session.execute(statement.order_by(S.timestamp.desc()).limit(10)).mappings().all()
    if not rows:
        raise NotFound(f"No sample {key}", {"sample_id": key, "device_id": device_id})
    if len(rows) > 1:
        devices = sorted({row["device_id"] for row in rows})
        raise Conflict(
            f"Sample id {key} is used by several devices: add ?device_id=",
            {"sample_id": key, "device_ids": devices},
            code="ambiguous_sample_id",
        )
    return _detail_item(rows[0])


_DEVICES_SQL = text(
    """
    SELECT d.device_id, d.profile, d.firmware_version, d.enabled, d.created_at, d.last_seen_at,
           coalesce(d.enabled AND d.last_seen_at > :online_since, FALSE) AS online,
           (SELECT count(*) FROM sensor_samples s
             WHERE s.device_id = d.device_id AND s."timestamp" >= :day_start AND s."timestamp" < :day_end)
             AS samples_today,
           latest.fusion_final_grade AS latest_grade, latest.fusion_final_score AS latest_score,
           latest."timestamp" AS latest_sample_at
    FROM devices d
    LEFT JOIN LATERAL (
        SELECT s.fusion_final_grade, s.fusion_final_score, s."timestamp" FROM sensor_samples s
        WHERE s.device_id = d.device_id ORDER BY s."timestamp" DESC LIMIT 1
    ) latest ON TRUE
    ORDER BY d.device_id
    """
)


def list_devices(now: datetime, online_seconds: float) -> list[dict[str, Any]]:
    """Every device with online flag, samples today and its latest sample's grade."""
    day_start, day_end = day_bounds(now)
    params = {"online_since": now - timedelta(seconds=online_seconds), "day_start": day_start, "day_end": day_end}
    return [dict(row) for row in db.session.execute(_DEVICES_SQL, params).mappings()]


def timeseries(width: timedelta, start: datetime, end: datetime, device_id: str | None = None) -> list[dict[str, Any]]:
    """Per bucket of [start, end): count, average fused score, count per grade; empty buckets included.

    From the continuous aggregates on TimescaleDB (`cells.py`), from the raw rows elsewhere: the same numbers.
    """
    engine = db.engine
    if has_timescaledb(engine):
        function = "time_bucket(CAST(:width AS interval), {}, origin => CAST(:origin AS timestamptz))"
    else:
        function = "date_bin(CAST(:width AS interval), {}, CAST(:origin AS timestamptz))"
    source, source_params = cells.cells_sql(
        function.format,
        start,
        end,
        BUCKET_ORIGIN,
        use_aggregates=cells.has_aggregates(engine),
        whole_hours=width % cells.HOUR == timedelta(0),
        device_id=device_id,
    )
    statement = text(
        f"""
        WITH cells AS (
            SELECT bucket, grade, sum(samples) AS samples, sum(score_sum) AS score_sum
            FROM ({source}) AS source GROUP BY 1, 2
        ), points AS (
            SELECT bucket, sum(samples) AS samples, sum(score_sum) / sum(samples) AS average_score,
                   jsonb_object_agg(grade, samples) AS grades
            FROM cells GROUP BY bucket
        )
        SELECT b.bucket, coalesce(p.samples, 0) AS samples, p.average_score, coalesce(p.grades, '{{}}') AS grades
        FROM generate_series(CAST(:first AS timestamptz), CAST(:end AS timestamptz) - interval '1 microsecond',
                             CAST(:width AS interval)) AS b(bucket)
        LEFT JOIN points p ON p.bucket = b.bucket
        ORDER BY b.bucket
        """
    )
    params = {
        "width": width,
        "origin": BUCKET_ORIGIN,
        "start": start,
        "end": end,
        "first": bucket_start(start, width),
        **source_params,
    }
    return [
        {
            "start": row["bucket"],
            "count": int(row["samples"]),
            "average_score": row["average_score"],
            "grades": {grade: row["grades"].get(grade, 0) for grade in GRADES},
        }
        for row in db.session.execute(statement, params).mappings()
    ]

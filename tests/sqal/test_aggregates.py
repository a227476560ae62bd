"""Continuous aggregates (TimescaleDB) and the plain SQL return the same numbers on the same data."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import text

from backend.extensions import db
from backend.sqal.aggregates import HOUR_VIEW, MINUTE_VIEW
from backend.sqal.reads import cells, figures, service
from backend.sqal.reads.schemas import BUCKETS
from tests.sqal.rows import NOW, devices, insert_devices, insert_samples, sample_data

# (bucket, offset of `from` before NOW, length): ranges cut mid-second, mid-minute and mid-hour on purpose.
RANGES = [
    ("1m", timedelta(hours=2, seconds=17.5), timedelta(hours=1, minutes=3, seconds=2)),
    ("5m", timedelta(days=1, minutes=7, seconds=3), timedelta(hours=20, minutes=1, seconds=29)),
    ("15m", timedelta(days=2, hours=5), timedelta(days=2, hours=5, minutes=20)),
    ("1h", timedelta(days=2, hours=23, minutes=59, seconds=59.9), timedelta(days=3, minutes=1)),
    ("1h", timedelta(hours=2, minutes=30, seconds=1), timedelta(hours=2, minutes=20)),
    ("1d", timedelta(days=3, hours=4), timedelta(days=3, hours=4, seconds=1)),
    ("1h", timedelta(seconds=30), timedelta(seconds=20)),  # inside one minute: raw rows only
]


def _load(application: APIFlask, rows: list[dict[str, Any]]) -> None:
    insert_devices(application, *devices())
    insert_samples(application, rows)


def _numbers(application: APIFlask) -> dict[str, Any]:
    """Every time series of RANGES (all devices and one) and the dashboard figures at NOW."""
    found: dict[str, Any] = {}
    with application.app_context():
        for bucket, before, length in RANGES:
            start = NOW - before
            for device in (None, "LINE_B"):
                points = service.timeseries(BUCKETS[bucket][0], start, start + length, device)
                found[f"{bucket} {before} {device}"] = points
        found["figures"] = figures.select_figures(NOW, 10.0)
        db.session.remove()
    return found


def assert_same(plain: Any, timescale: Any, where: str = "") -> None:
    if isinstance(plain, dict):
        assert plain.keys() == timescale.keys(), where
        for key in plain:
            assert_same(plain[key], timescale[key], f"{where}.{key}")
    elif isinstance(plain, list):
        assert len(plain) == len(timescale), where
        for index, (left, right) in enumerate(zip(plain, timescale, strict=True)):
            assert_same(left, right, f"{where}[{index}]")
    elif isinstance(plain, float) and not isinstance(timescale, bool):
        assert timescale == pytest.approx(plain, rel=1e-9), where  # sums added in another order
    else:
        assert plain == timescale, where


def _refresh(application: APIFlask, until: Any) -> None:
    """Materialize both aggregates up to `until` (what the refresh policies do), outside a transaction."""
    with application.app_context(), db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for view in (MINUTE_VIEW, HOUR_VIEW):
            connection.execute(
                text("CALL refresh_continuous_aggregate(:view, NULL, CAST(:until AS timestamptz))"),
                {"view": view, "until": until},
            )


def _materialized(application: APIFlask, view: str) -> int:
    """Rows of the aggregate that come from its materialization (not from the real-time part)."""
    with application.app_context():
        relation = db.session.execute(
            text(
                "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name) "
                "FROM timescaledb_information.continuous_aggregates WHERE view_name = :view"
            ),
            {"view": view},
        ).scalar()
        count = int(db.session.execute(text(f"SELECT count(*) FROM {relation}")).scalar() or 0)
        db.session.remove()
        return count


def test_aggregates_and_plain_sql_agree(plain_app: APIFlask, timescale_app: APIFlask) -> None:
    rows = sample_data()
    _load(plain_app, rows)
    _load(timescale_app, rows)
    with timescale_app.app_context():
        assert cells.has_aggregates(db.engine)
    with plain_app.app_context():
        assert not cells.has_aggregates(db.engine)
    expected = _numbers(plain_app)
    assert expected["figures"]["samples_today"] > 100
    assert expected["figures"]["top_defects"]
    assert any(point["count"] for point in expected[f"1h {RANGES[3][1]} None"])

    # Nothing materialized yet: the aggregates are computed from the raw rows at query time.
    assert _materialized(timescale_app, HOUR_VIEW) == 0
    assert_same(expected, _numbers(timescale_app), "real-time only")

    # Materialized up to 30 minutes before NOW: older buckets come from the aggregates, the rest in real time.
    _refresh(timescale_app, NOW - timedelta(minutes=30))
    assert _materialized(timescale_app, HOUR_VIEW) > 0
    assert _materialized(timescale_app, MINUTE_VIEW) > 0
    assert_same(expected, _numbers(timescale_app), "materialized")

    # Fresh samples after the refresh count at once (materialized_only = false), on both paths alike.
    fresh = sample_data(200, days=0.01, seed=21)
    for row in fresh:
        row["sample_id"] = "F-" + row["sample_id"]
    _load_fresh = [row for row in fresh if row["timestamp"] > NOW - timedelta(minutes=10)]
    assert _load_fresh
    insert_samples(plain_app, _load_fresh)
    insert_samples(timescale_app, _load_fresh)
    again = _numbers(plain_app)
    assert again["figures"]["samples_today"] == expected["figures"]["samples_today"] + len(
        [row for row in _load_fresh if row["timestamp"].date() == NOW.date()]
    )
    assert_same(again, _numbers(timescale_app), "fresh samples")


def test_split_covers_the_range_exactly() -> None:
    origin = service.BUCKET_ORIGIN
    for bucket, before, length in RANGES:
        start = NOW - before
        for whole_hours in (False, True):
            spans = cells.split(start, start + length, origin, whole_hours)
            covered = sorted(span for span in spans.values() if span[0] < span[1])
            assert covered[0][0] == start, bucket
            assert covered[-1][1] == start + length, bucket
            assert all(a[1] == b[0] for a, b in itertools.pairwise(covered)), (bucket, covered)

"""One UTC-day rule for every domain (bugs' "resolved today", SQAL's "today" figures)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from backend.core.clock import day_bounds


def test_a_date_and_an_instant_of_that_utc_day_give_the_same_bounds() -> None:
    start, end = day_bounds(date(2026, 3, 1))
    assert (start, end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert day_bounds(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)) == (start, end)
    # 01:30 in UTC+2 is still the previous UTC day
    assert day_bounds(datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == (start, end)

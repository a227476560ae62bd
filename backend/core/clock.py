"""Calendar rules shared by the domains: days are UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def day_bounds(day: date | datetime) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes: the day `day` names, or the UTC day an instant falls in."""
    if isinstance(day, datetime):
        day = day.astimezone(UTC).date()
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)

"""The words every SQAL sub-package shares: grades, identifiers, the UTC day and the Redis channel of live samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args

from pydantic import Field

from backend.core.config import Settings
from backend.core.resilience import key_prefix

Grade = Literal["A", "B", "C", "REJECT"]
GRADES: tuple[str, ...] = get_args(Grade)
CONFORMING = ("A", "B")  # the grades counted by the conformity rates

# Device and sample ids: a letter or digit, then letters, digits and _ . : - (at most 100 characters in all).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
ID_MAX_LENGTH = 100
DeviceId = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]

CHANNEL = "sqal:samples"


def sql_list(values: tuple[str, ...]) -> str:
    """Constant strings as an SQL list: `'A', 'B'` (for CHECK constraints and IN lists; never user input)."""
    return ", ".join(f"'{value}'" for value in values)


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day holding `now`."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def channel_for(settings: Settings) -> str:
    """The deployment's channel: prefixed like every other Redis key, so services sharing a Redis stay apart."""
    return key_prefix(settings) + CHANNEL

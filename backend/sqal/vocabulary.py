"""The words every SQAL sub-package shares: grades, identifiers, the UTC day and the Redis channel of live samples."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from backend.base.config import Settings
from backend.core.resilience import key_prefix

Grade = Literal["A", "B", "C", "REJECT"]
GRADES: tuple[str, ...] = get_args(Grade)
CONFORMING = ("A", "B")  # the grades counted by the conformity rates

# Device and sample ids: a letter or digit, then letters, digits and _ . : - (at most 100 characters in all).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
ID_MAX_LENGTH = 100
DeviceId = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]

CHANNEL = "sqal:samples"

# The sliding window of the throughput, score and rate figures (the `samples_throughput_per_second` gauge and the
# dashboard's figures alike).
THROUGHPUT_WINDOW_SECONDS = 300
# A device is online when it was seen within this many generation intervals (SQAL_GENERATION_INTERVAL).
ONLINE_INTERVALS = 2


def sql_list(values: tuple[str, ...]) -> str:
    """Constant strings as an SQL list: `'A', 'B'` (for CHECK constraints and IN lists; never user input)."""
    return ", ".join(f"'{value}'" for value in values)


def online_seconds(settings: Settings) -> float:
    """How recently a device must have been seen to count as online."""
    return ONLINE_INTERVALS * settings.sqal_generation_interval


def channel_for(settings: Settings) -> str:
    """The deployment's channel: prefixed like every other Redis key, so services sharing a Redis stay apart."""
    return key_prefix(settings) + CHANNEL

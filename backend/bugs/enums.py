"""Vocabularies of a bug report. Values are the wire and database spelling (lower snake case)."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """How bad the defect is, least to most severe."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Priority(StrEnum):
    """How soon it should be handled, least to most urgent."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class Status(StrEnum):
    """Workflow state; see `backend.bugs.workflow` for the allowed transitions."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    WONT_FIX = "wont_fix"


class Category(StrEnum):
    """Which part of the line the defect is in."""

    HARDWARE = "hardware"
    SOFTWARE = "software"
    SENSOR = "sensor"
    NETWORK = "network"
    DATA = "data"
    OTHER = "other"


# "Open" in the summary and trends means unresolved: nobody has resolved, closed or dismissed it yet.
UNRESOLVED = (Status.OPEN, Status.IN_PROGRESS)


def values(enum: type[StrEnum]) -> list[str]:
    """The enum's values in declaration order (the order used for ranking and zero-filled breakdowns)."""
    return [member.value for member in enum]

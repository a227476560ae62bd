"""A bug history spanning several days, recorded over HTTP at frozen instants (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from flask.testing import FlaskClient

from tests.bugs.helpers import create, patch

# "Now" for every statistics test: 2025-03-10 12:00 UTC.
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


# name -> (created at, severity, category, [(when, new status), ...])
HISTORY = {
    "B6": (at(1, 12), "critical", "other", []),
    "B1": (at(6, 9), "critical", "hardware", [(at(7, 9), "resolved"), (at(8, 10), "closed")]),
    "B2": (at(6, 12), "high", "software", [(at(10, 0, 30), "resolved")]),
    "B3": (at(7, 8), "critical", "sensor", [(at(8, 9), "in_progress")]),
    "B7": (at(7, 10), "medium", "other", [(at(8, 10), "resolved"), (at(9, 9), "open")]),
    "B4": (at(8, 23, 30), "low", "network", [(at(9, 1), "wont_fix")]),
    "B5": (at(9, 10), "medium", "data", [(at(10, 10), "resolved")]),
    "B8": (at(10, 8), "high", "hardware", [(at(10, 9), "closed")]),
}


@pytest.fixture
def history(client: FlaskClient) -> dict[str, int]:
    """Create HISTORY through the API, each request at its own frozen instant; return name -> id."""
    ids: dict[str, int] = {}
    for name, (created_at, severity, category, events) in HISTORY.items():
        with time_machine.travel(created_at, tick=False):
            ids[name] = create(client, title=name, severity=severity, category=category)["id"]
        for when, status in events:
            with time_machine.travel(when, tick=False):
                patch(client, ids[name], status=status)
    return ids

"""Summary and trends against values computed by hand from `conftest.HISTORY` (now = 2025-03-10 12:00 UTC).

State at NOW:  B6 open · B1 closed (resolved 03-07) · B2 resolved 03-10 00:30 · B3 in_progress ·
B7 open (resolved 03-08, reopened 03-09: its resolution is erased) · B4 wont_fix 03-09 · B5 resolved 03-10 10:00 ·
B8 closed 03-10 09:00 without resolution.
Resolution times: B1 24 h, B2 84.5 h (03-06 12:00 -> 03-10 00:30), B5 24 h -> average 44.1666 h, median 24 h.
"""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import text

from backend.bugs import stats
from backend.extensions import db
from tests.bugs.conftest import NOW
from tests.bugs.helpers import assert_error, error_fields

EXPECTED_SUMMARY = {
    "total": 8,
    "byStatus": {"open": 2, "in_progress": 1, "resolved": 2, "closed": 2, "wont_fix": 1},
    "bySeverity": {"low": 1, "medium": 2, "high": 2, "critical": 3},
    "byCategory": {"hardware": 2, "software": 1, "sensor": 1, "network": 1, "data": 1, "other": 2},
    "openBySeverity": {"low": 0, "medium": 1, "high": 0, "critical": 2},
    "criticalOpen": 2,
    "resolvedToday": 2,
    "avgResolutionHours": pytest.approx((24 + 84.5 + 24) / 3),
    "medianResolutionHours": pytest.approx(24.0),
}

# Open at the end of each day: created before the day ends and neither resolved nor closed by then.
# 03-06: B6 B1 B2 · 03-07: B6 B2 B3 B7 · 03-08: B6 B2 B3 B4 B7 · 03-09: B6 B2 B3 B5 B7 · 03-10: B6 B3 B7
EXPECTED_LAST_5_DAYS = [
    {"date": "2025-03-06", "created": 2, "resolved": 0, "open": 3},
    {"date": "2025-03-07", "created": 2, "resolved": 1, "open": 4},
    {"date": "2025-03-08", "created": 1, "resolved": 0, "open": 5},
    {"date": "2025-03-09", "created": 1, "resolved": 0, "open": 5},
    {"date": "2025-03-10", "created": 1, "resolved": 2, "open": 3},
]


def get(client: FlaskClient, path: str) -> Any:
    with time_machine.travel(NOW, tick=False):
        response = client.get(path)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_summary_matches_hand_computed_values(client: FlaskClient, history: dict[str, int]) -> None:
    assert get(client, "/api/bugs/metrics/summary") == EXPECTED_SUMMARY


def test_summary_of_an_empty_tracker(client: FlaskClient) -> None:
    body = get(client, "/api/bugs/metrics/summary")
    assert body["total"] == 0
    assert set(body["byStatus"].values()) == {0}
    assert body["resolvedToday"] == 0
    assert body["avgResolutionHours"] is None
    assert body["medianResolutionHours"] is None


def test_resolved_today_follows_the_utc_day(client: FlaskClient, history: dict[str, int]) -> None:
    with time_machine.travel("2025-03-07 23:59:59+00:00", tick=False):
        assert client.get("/api/bugs/metrics/summary").get_json()["resolvedToday"] == 1  # B1
    with time_machine.travel("2025-03-11 00:00:00+00:00", tick=False):
        assert client.get("/api/bugs/metrics/summary").get_json()["resolvedToday"] == 0


def test_trends_last_5_days(client: FlaskClient, history: dict[str, int]) -> None:
    assert get(client, "/api/bugs/metrics/trends?days=5") == {"days": 5, "trends": EXPECTED_LAST_5_DAYS}


def test_trends_are_zero_filled_before_the_first_bug(client: FlaskClient, history: dict[str, int]) -> None:
    points = get(client, "/api/bugs/metrics/trends?days=12")["trends"]
    assert [p["date"] for p in points[:3]] == ["2025-02-27", "2025-02-28", "2025-03-01"]
    assert points[:2] == [
        {"date": "2025-02-27", "created": 0, "resolved": 0, "open": 0},
        {"date": "2025-02-28", "created": 0, "resolved": 0, "open": 0},
    ]
    # B6 alone from 03-01 to 03-05.
    assert [(p["created"], p["resolved"], p["open"]) for p in points[2:7]] == [(1, 0, 1)] + [(0, 0, 1)] * 4
    assert points[7:] == EXPECTED_LAST_5_DAYS


def test_trends_default_to_30_days_and_accept_1_and_365(client: FlaskClient, history: dict[str, int]) -> None:
    body = get(client, "/api/bugs/metrics/trends")
    assert body["days"] == 30
    assert len(body["trends"]) == 30
    assert body["trends"][0]["date"] == "2025-02-09"
    assert get(client, "/api/bugs/metrics/trends?days=1")["trends"] == EXPECTED_LAST_5_DAYS[-1:]
    year = get(client, "/api/bugs/metrics/trends?days=365")["trends"]
    assert len(year) == 365
    assert year[0]["date"] == "2024-03-11"
    assert sum(p["created"] for p in year) == 8


def test_trends_last_open_count_agrees_with_the_summary(client: FlaskClient, history: dict[str, int]) -> None:
    summary = get(client, "/api/bugs/metrics/summary")
    last = get(client, "/api/bugs/metrics/trends?days=1")["trends"][-1]
    assert last["open"] == sum(summary["openBySeverity"].values())


@pytest.mark.parametrize("query", ["days=0", "days=366", "days=-1", "days=week", "days=1.5", "weeks=2"])
def test_trends_reject_bad_days(client: FlaskClient, query: str) -> None:
    error = assert_error(client.get(f"/api/bugs/metrics/trends?{query}"), 422, "validation_error")
    assert error_fields(error) == [query.split("=")[0]]


def test_statistics_use_utc_days_whatever_the_session_time_zone(app: APIFlask, history: dict[str, int]) -> None:
    with app.app_context(), time_machine.travel(NOW, tick=False):
        db.session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14
        points = stats.trends(5)
        summary = stats.summary()
        db.session.rollback()
    assert [{**p, "date": p["date"].isoformat()} for p in points] == EXPECTED_LAST_5_DAYS
    assert summary["resolved_today"] == 2

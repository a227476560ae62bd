"""GET /api/sqal/samples (filters, keyset pages, 422s) and GET /api/sqal/samples/<sample_id>."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from tests.sqal.rows import CHANNELS, MATRIX, device_row, insert_devices, insert_samples, sample_row

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    return error


@pytest.fixture
def catalogue(reads_app: APIFlask, reads_client: FlaskClient) -> list[dict[str, Any]]:
    """Two devices, 12 samples one minute apart, grades and scores cycling."""
    insert_devices(reads_app, device_row("DEV_A"), device_row("DEV_B"))
    grades = [("A", 0.92), ("B", 0.78), ("C", 0.63), ("REJECT", 0.31)]
    rows = []
    for index in range(12):
        grade, score = grades[index % 4]
        device = "DEV_A" if index % 3 else "DEV_B"
        rows.append(sample_row(device, T0 + timedelta(minutes=index), grade, score, sample_id=f"S-{index:02d}"))
    insert_samples(reads_app, rows)
    return rows


def sample_ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["sample_id"] for item in response.get_json()["items"]]


def test_newest_first_with_summary_fields(reads_client: FlaskClient, catalogue: list[dict[str, Any]]) -> None:
    response = reads_client.get("/api/sqal/samples")
    assert sample_ids(response) == [f"S-{index:02d}" for index in reversed(range(12))]
    body = response.get_json()
    assert body["next_cursor"] is None
    assert "Link" not in response.headers
    first = body["items"][0]
    assert first["timestamp"] == iso(T0 + timedelta(minutes=11))
    assert (first["grade"], first["score"], first["device_id"]) == ("REJECT", 0.31, "DEV_A")
    assert first["vl53l8ch"]["grade"] == "REJECT"
    assert "distance_matrix" not in first["vl53l8ch"]
    assert "channels" not in first["as7341"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("device_id=DEV_B", [9, 6, 3, 0]),
        ("grade=REJECT", [11, 7, 3]),
        ("grade=A,B", [9, 8, 5, 4, 1, 0]),
        ("min_score=0.7", [9, 8, 5, 4, 1, 0]),
        (f"from={iso(T0 + timedelta(minutes=4))}&to={iso(T0 + timedelta(minutes=7))}", [6, 5, 4]),
        ("from=2026-03-10T09:05:00%2B01:00", [11, 10, 9, 8, 7, 6, 5]),
        ("device_id=DEV_A&grade=C&min_score=0.5", [10, 2]),
        ("device_id=NOBODY", []),
    ],
)
def test_filters(reads_client: FlaskClient, catalogue: list[dict[str, Any]], query: str, expected: list[int]) -> None:
    assert sample_ids(reads_client.get(f"/api/sqal/samples?{query}")) == [f"S-{index:02d}" for index in expected]


def follow(client: FlaskClient, url: str) -> tuple[list[str], list[str]]:
    """All pages of a listing through `next_cursor`; also checks each Link header matches it."""
    seen: list[str] = []
    cursors: list[str] = []
    while True:
        response = client.get(url)
        seen += sample_ids(response)
        cursor = response.get_json()["next_cursor"]
        if cursor is None:
            assert "Link" not in response.headers
            return seen, cursors
        link = response.headers["Link"]
        assert link.endswith('>; rel="next"')
        target = link[1 : link.index(">")]
        assert parse_qs(urlsplit(target).query)["cursor"] == [cursor]
        cursors.append(cursor)
        url = target


def test_keyset_pages_cover_everything_once(reads_client: FlaskClient, catalogue: list[dict[str, Any]]) -> None:
    seen, cursors = follow(reads_client, "/api/sqal/samples?limit=5")
    assert seen == [f"S-{index:02d}" for index in reversed(range(12))]
    assert len(cursors) == 2
    filtered, _ = follow(reads_client, "/api/sqal/samples?limit=2&grade=A,B&device_id=DEV_A")
    assert filtered == ["S-08", "S-05", "S-04", "S-01"]


def test_pages_break_timestamp_ties_by_id(reads_app: APIFlask, reads_client: FlaskClient) -> None:
    insert_devices(reads_app, device_row("DEV_A"))
    rows = [sample_row("DEV_A", T0, sample_id=f"TIE-{index}") for index in range(7)]
    insert_samples(reads_app, rows)
    seen, _ = follow(reads_client, "/api/sqal/samples?limit=3")
    expected = [row["sample_id"] for row in sorted(rows, key=lambda row: row["id"], reverse=True)]
    assert seen == expected


def test_no_duplicate_or_gap_while_samples_arrive(reads_app: APIFlask, reads_client: FlaskClient) -> None:
    """Rows present before paging all appear exactly once, whatever is inserted meanwhile (new or backfilled)."""
    insert_devices(reads_app, device_row("DEV_A"))
    existing = [sample_row("DEV_A", T0 + timedelta(seconds=index)) for index in range(300)]
    insert_samples(reads_app, existing)
    stop = threading.Event()
    inserted: list[int] = []

    def writer() -> None:
        batch = 0
        while not stop.is_set():
            newer = T0 + timedelta(hours=1, seconds=batch)
            backfill = T0 + timedelta(seconds=batch % 300, microseconds=500)  # between existing rows
            insert_samples(reads_app, [sample_row("DEV_A", newer), sample_row("DEV_A", backfill)])
            batch += 1
            inserted.append(batch)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, cursors = follow(reads_client, "/api/sqal/samples?limit=7")
    finally:
        stop.set()
        thread.join()
    assert len(cursors) >= 300 // 7
    assert inserted, "the writer never ran during the paging"
    assert len(seen) == len(set(seen)), "a sample was returned twice"
    missing = {row["sample_id"] for row in existing} - set(seen)
    assert not missing, f"{len(missing)} pre-existing samples were skipped"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("grade=X", "grade.0"),
        ("from=2026-03-10T08:00:00", "from"),
        ("to=yesterday", "to"),
        ("min_score=1.5", "min_score"),
        ("min_score=nan", "min_score"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("device_id=bad%20id", "device_id"),
        ("colour=red", "colour"),
        ("cursor=not-a-cursor", "cursor"),
        (f"from={iso(T0)}&to={iso(T0)}", "_schema"),
    ],
)
def test_bad_filters_are_422(reads_client: FlaskClient, query: str, field: str) -> None:
    error = assert_error(reads_client.get(f"/api/sqal/samples?{query}"), 422, "validation_error")
    assert field in [detail["field"] for detail in error["details"]]


def test_cursor_only_continues_its_own_filters(reads_client: FlaskClient, catalogue: list[dict[str, Any]]) -> None:
    cursor = reads_client.get("/api/sqal/samples?limit=2&grade=A").get_json()["next_cursor"]
    assert cursor
    assert sample_ids(reads_client.get(f"/api/sqal/samples?limit=2&grade=A&cursor={cursor}")) == ["S-00"]
    assert sample_ids(reads_client.get(f"/api/sqal/samples?limit=9&grade=A&cursor={cursor}")) == ["S-00"]
    error = assert_error(reads_client.get(f"/api/sqal/samples?grade=B&cursor={cursor}"), 422, "validation_error")
    assert "other filters" in error["details"][0]["message"]


def test_sample_detail_has_matrices_and_channels(reads_client: FlaskClient, catalogue: list[dict[str, Any]]) -> None:
    response = reads_client.get("/api/sqal/samples/S-05")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["sample_id"], body["device_id"], body["grade"]) == ("S-05", "DEV_A", "B")
    assert body["vl53l8ch"]["distance_matrix"] == MATRIX
    assert body["vl53l8ch"]["reflectance_matrix"] == MATRIX
    assert body["vl53l8ch"]["amplitude_matrix"] == MATRIX
    assert body["as7341"]["channels"] == CHANNELS
    assert body["created_at"].endswith("Z")
    by_id = reads_client.get(f"/api/sqal/samples/{body['id']}")
    assert by_id.get_json() == body


def test_missing_sample_is_404(reads_client: FlaskClient, catalogue: list[dict[str, Any]]) -> None:
    assert_error(reads_client.get("/api/sqal/samples/S-99"), 404, "not_found")
    assert_error(reads_client.get(f"/api/sqal/samples/{uuid.uuid4()}"), 404, "not_found")
    assert_error(reads_client.get("/api/sqal/samples/S-05?device_id=DEV_B"), 404, "not_found")


def test_sample_id_shared_by_two_devices_needs_device_id(reads_app: APIFlask, reads_client: FlaskClient) -> None:
    insert_devices(reads_app, device_row("DEV_A"), device_row("DEV_B"))
    insert_samples(reads_app, [sample_row(name, T0, sample_id="SAME-1") for name in ("DEV_A", "DEV_B")])
    error = assert_error(reads_client.get("/api/sqal/samples/SAME-1"), 409, "ambiguous_sample_id")
    assert error["details"]["device_ids"] == ["DEV_A", "DEV_B"]
    assert reads_client.get("/api/sqal/samples/SAME-1?device_id=DEV_B").get_json()["device_id"] == "DEV_B"


def _forged(cursor: str, **fields: Any) -> str:
    """The cursor with some of its JSON fields replaced (or removed when given None), re-encoded as sent."""
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw.update(fields)
    raw = {key: value for key, value in raw.items() if value is not None}
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "fields",
    [
        {"t": "2026-03-10T08:05:00+20:00"},  # a valid ISO 8601 offset PostgreSQL refuses (at most ±15:59)
        {"t": "2026-03-10T08:05:00-23:59"},
        {"t": "2026-03-10T09:05:00+01:00"},  # the same instant, but cursors are issued in UTC
        {"t": "0001-01-01T00:00:00+01:00"},  # before year 1 once in UTC
        {"t": "2026-03-10T08:05:00"},
        {"t": 1773129900},
        {"i": 5},
        {"i": ["not", "a", "uuid"]},
        {"f": {"grade": None}},
        {"f": "../../etc/passwd"},
        {"x": "unexpected"},
        {"t": None},
    ],
    ids=lambda fields: json.dumps(fields),
)
def test_forged_cursor_is_422(reads_client: FlaskClient, catalogue: list[dict[str, Any]], fields: Any) -> None:
    cursor = reads_client.get("/api/sqal/samples?limit=2").get_json()["next_cursor"]
    assert reads_client.get(f"/api/sqal/samples?limit=2&cursor={cursor}").status_code == 200
    error = assert_error(
        reads_client.get(f"/api/sqal/samples?limit=2&cursor={_forged(cursor, **fields)}"), 422, "validation_error"
    )
    assert [detail["field"] for detail in error["details"]] == ["cursor"]

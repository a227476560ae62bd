"""Bug CRUD, comments, listing and validation over the Flask test client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import text

from backend.bugs import service
from backend.bugs.models import DEVICE_ID_MAX
from backend.bugs.schemas import SORTABLE
from backend.extensions import db
from tests.bugs.helpers import VALID, assert_error, create, error_fields

BUG_KEYS = {
    "id",
    "title",
    "description",
    "severity",
    "priority",
    "status",
    "category",
    "deviceId",
    "reporter",
    "assignee",
    "version",
    "createdAt",
    "updatedAt",
    "resolvedAt",
    "closedAt",
}


def test_create_returns_201_location_camel_case_and_defaults(client: FlaskClient) -> None:
    response = client.post("/api/bugs/", json={"title": "Test"})
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/bugs/{body['id']}"
    assert set(body) == BUG_KEYS
    assert {k: body[k] for k in ("status", "priority", "severity", "category", "description", "version")} == {
        "status": "open",
        "priority": "medium",
        "severity": "medium",
        "category": "other",
        "description": "",
        "version": 1,
    }
    assert body["resolvedAt"] is None
    assert body["closedAt"] is None
    created = datetime.fromisoformat(body["createdAt"])
    assert body["createdAt"].endswith("Z")
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert body["updatedAt"] == body["createdAt"]
    detail = client.get(response.headers["Location"]).get_json()
    assert detail == {**body, "comments": []}


def test_create_with_the_reference_example_body(client: FlaskClient) -> None:
    example = {
        "title": "Test sensor timeout",
        "description": "VL53L8CH stops responding after 2 hours",
        "severity": "high",
        "priority": "urgent",
        "category": "hardware",
        "deviceId": "ESP32_LL_01",
        "reporter": "Line operator",
        "assignee": "Firmware team",
    }
    body = create(client, **example)
    assert {key: body[key] for key in example} == example


def test_snake_case_device_id_is_accepted_and_answered_in_camel_case(client: FlaskClient) -> None:
    body = client.post("/api/bugs/", json={**VALID, "device_id": "ESP32_LL_02"}).get_json()
    assert body["deviceId"] == "ESP32_LL_02"
    assert "device_id" not in body


@pytest.mark.parametrize(
    "field", ["status", "resolvedAt", "closedAt", "resolved_at", "createdAt", "updatedAt", "id", "version", "colour"]
)
def test_create_rejects_fields_the_client_does_not_own(client: FlaskClient, field: str) -> None:
    response = client.post("/api/bugs/", json={**VALID, field: "2024-01-01T00:00:00Z"})
    error = assert_error(response, 422, "validation_error")
    assert error_fields(error) == [field]
    assert client.get("/api/bugs/").headers["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("severity", "blocker"),
        ("severity", "CRITICAL"),
        ("severity", None),
        ("priority", "asap"),
        ("priority", 1),
        ("category", "firmware"),
        ("title", ""),
        ("title", "   "),
        ("title", "t" * 201),
        ("title", 12),
        ("title", None),
        ("description", "d" * 10_001),
        ("description", None),
        ("deviceId", ""),
        ("deviceId", "E" * (DEVICE_ID_MAX + 1)),
        ("deviceId", "ESP32 LL 01"),
        ("reporter", ""),
        ("reporter", "r" * 101),
        ("assignee", " "),
        ("assignee", "a" * 101),
    ],
)
def test_create_rejects_each_invalid_field_by_name(client: FlaskClient, field: str, value: Any) -> None:
    error = assert_error(client.post("/api/bugs/", json={**VALID, field: value}), 422, "validation_error")
    assert error_fields(error) == [field]
    assert client.get("/api/bugs/").headers["X-Total-Count"] == "0"


def test_limits_are_inclusive(client: FlaskClient) -> None:
    body = create(
        client,
        title="t" * 200,
        description="d" * 10_000,
        deviceId="E" * DEVICE_ID_MAX,
        reporter="r" * 100,
        assignee="a" * 100,
    )
    assert len(body["title"]) == 200
    assert len(body["deviceId"]) == DEVICE_ID_MAX


def test_missing_title_is_named(client: FlaskClient) -> None:
    error = assert_error(client.post("/api/bugs/", json={"description": "x"}), 422, "validation_error")
    assert error_fields(error) == ["title"]


def test_malformed_json_and_wrong_content_type(client: FlaskClient) -> None:
    response = client.post("/api/bugs/", data="{bad", content_type="application/json")
    assert_error(response, 400, "malformed_json")
    assert_error(client.post("/api/bugs/", data="title=x"), 415, "unsupported_media_type")


def test_unknown_bug_is_404_everywhere(client: FlaskClient) -> None:
    assert assert_error(client.get("/api/bugs/4242"), 404, "not_found")["details"] == {"id": 4242}
    assert_error(client.patch("/api/bugs/4242", json={"title": "x"}), 404, "not_found")
    assert_error(client.post("/api/bugs/4242/comments", json={"comment": "c", "author": "a"}), 404, "not_found")


def test_comment_is_201_and_detail_lists_comments_oldest_first(client: FlaskClient, app: APIFlask) -> None:
    bug = create(client)
    response = client.post(f"/api/bugs/{bug['id']}/comments", json={"comment": "Test comment", "author": "Test User"})
    assert response.status_code == 201
    first = response.get_json()
    assert set(first) == {"id", "bugId", "comment", "author", "createdAt"}
    assert (first["bugId"], first["comment"], first["author"]) == (bug["id"], "Test comment", "Test User")
    # Inserted later but dated earlier: order follows the date, not the insertion.
    with app.app_context():
        for comment, when in (
            ("older", datetime(2020, 1, 1, tzinfo=UTC)),
            ("oldest", datetime(2019, 1, 1, tzinfo=UTC)),
        ):
            with time_machine.travel(when, tick=False):
                service.add_comment(bug["id"], comment, "Ops")
    comments = client.get(f"/api/bugs/{bug['id']}").get_json()["comments"]
    assert [c["comment"] for c in comments] == ["oldest", "older", "Test comment"]
    assert comments[0]["createdAt"] == "2019-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"comment": "", "author": "a"}, ["comment"]),
        ({"comment": "  ", "author": "a"}, ["comment"]),
        ({"comment": "c" * 5001, "author": "a"}, ["comment"]),
        ({"comment": "c", "author": ""}, ["author"]),
        ({"comment": "c", "author": "a" * 101}, ["author"]),
        ({"comment": "c"}, ["author"]),
        ({"comment": "c", "author": "a", "createdAt": "2020-01-01"}, ["createdAt"]),
    ],
)
def test_comment_validation_names_the_field(client: FlaskClient, body: dict[str, Any], fields: list[str]) -> None:
    bug = create(client)
    error = assert_error(client.post(f"/api/bugs/{bug['id']}/comments", json=body), 422, "validation_error")
    assert error_fields(error) == fields
    assert client.get(f"/api/bugs/{bug['id']}").get_json()["comments"] == []


def test_deleting_a_bug_cascades_to_its_comments(client: FlaskClient, app: APIFlask) -> None:
    bug = create(client)
    for index in range(2):
        client.post(f"/api/bugs/{bug['id']}/comments", json={"comment": f"c{index}", "author": "a"})
    with app.app_context():
        db.session.execute(text("DELETE FROM bug_reports WHERE id = :id"), {"id": bug["id"]})
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM bug_comments")).scalar_one() == 0


def titles(client: FlaskClient, query: str) -> list[str]:
    response = client.get(f"/api/bugs/?{query}")
    assert response.status_code == 200, response.get_json()
    return [bug["title"] for bug in response.get_json()]


@pytest.fixture
def catalogue(client: FlaskClient) -> FlaskClient:
    """Five bugs created in this order (so default newest-first lists them reversed)."""
    create(client, title="Sensor drift", severity="low", category="sensor", deviceId="ESP32_LL_01")
    create(client, title="Wifi drops", description="Router 50% packet loss", severity="critical", category="network")
    create(client, title="Bad grade", description="grade_a shown as B", severity="high", category="data")
    create(
        client, title="Laser dead", severity="critical", priority="urgent", category="hardware", deviceId="ESP32_LL_02"
    )
    create(client, title="Typo", severity="medium", priority="low", category="software", deviceId="ESP32_LL_01")
    return client


def test_default_order_is_newest_first(catalogue: FlaskClient) -> None:
    assert titles(catalogue, "") == ["Typo", "Laser dead", "Bad grade", "Wifi drops", "Sensor drift"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("severity=critical", ["Laser dead", "Wifi drops"]),
        ("severity=critical,low", ["Laser dead", "Wifi drops", "Sensor drift"]),
        ("category=data", ["Bad grade"]),
        ("status=open", ["Typo", "Laser dead", "Bad grade", "Wifi drops", "Sensor drift"]),
        ("status=resolved", []),
        ("device_id=ESP32_LL_01", ["Typo", "Sensor drift"]),
        ("deviceId=ESP32_LL_02", ["Laser dead"]),
        ("q=LASER", ["Laser dead"]),
        ("q=packet", ["Wifi drops"]),
        ("q=50%25", ["Wifi drops"]),
        ("q=%25", ["Wifi drops"]),
        ("q=e_a", ["Bad grade"]),
        ("q=_", ["Bad grade"]),
        ("severity=critical&category=hardware", ["Laser dead"]),
    ],
)
def test_filters(catalogue: FlaskClient, query: str, expected: list[str]) -> None:
    assert titles(catalogue, query) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-severity", ["Laser dead", "Wifi drops", "Bad grade", "Typo", "Sensor drift"]),
        ("severity,createdAt", ["Sensor drift", "Typo", "Bad grade", "Wifi drops", "Laser dead"]),
        ("-priority,-id", ["Laser dead", "Bad grade", "Wifi drops", "Sensor drift", "Typo"]),
        ("title", ["Bad grade", "Laser dead", "Sensor drift", "Typo", "Wifi drops"]),
        ("created_at", ["Sensor drift", "Wifi drops", "Bad grade", "Laser dead", "Typo"]),
        ("-resolvedAt,id", ["Sensor drift", "Wifi drops", "Bad grade", "Laser dead", "Typo"]),
    ],
)
def test_sort(catalogue: FlaskClient, sort: str, expected: list[str]) -> None:
    assert titles(catalogue, f"sort={sort}") == expected


def test_every_sortable_field_sorts_both_ways(catalogue: FlaskClient) -> None:
    for field in SORTABLE:
        ascending, descending = titles(catalogue, f"sort={field}"), titles(catalogue, f"sort=-{field}")
        assert sorted(ascending) == sorted(descending) == sorted(titles(catalogue, ""))


def test_resolved_bugs_sort_before_unresolved_ones_both_ways(catalogue: FlaskClient) -> None:
    catalogue.patch("/api/bugs/3", json={"status": "resolved"})
    assert titles(catalogue, "sort=-resolvedAt")[0] == "Bad grade"
    assert titles(catalogue, "sort=resolvedAt")[0] == "Bad grade"


def test_pagination_headers_keep_filters(catalogue: FlaskClient) -> None:
    response = catalogue.get("/api/bugs/?severity=critical,high&deviceId=ESP32_LL_02&limit=1&sort=id")
    assert response.headers["X-Total-Count"] == "1"
    response = catalogue.get("/api/bugs/?severity=critical,high&limit=2&offset=1&sort=id")
    assert [bug["title"] for bug in response.get_json()] == ["Bad grade", "Laser dead"]
    assert response.headers["X-Total-Count"] == "3"
    link = response.headers["Link"]
    assert '</api/bugs/?severity=critical%2Chigh&sort=id&limit=2&offset=0>; rel="prev"' in link
    assert '</api/bugs/?severity=critical%2Chigh&sort=id&limit=2&offset=0>; rel="first"' in link
    assert '</api/bugs/?severity=critical%2Chigh&sort=id&limit=2&offset=2>; rel="last"' in link
    assert 'rel="next"' not in link
    assert catalogue.get("/api/bugs/?limit=2").headers["X-Total-Count"] == "5"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sort=password", "sort"),
        ("sort=-severity,bogus", "sort"),
        ("sort=", "sort"),
        ("sort=--id", "sort"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=done", "status"),
        ("status=open,", "status"),
        ("severity=blocker", "severity"),
        ("category=firmware", "category"),
        ("deviceId=" + "E" * (DEVICE_ID_MAX + 1), "deviceId"),
        ("q=", "q"),
        ("page=2", "page"),
    ],
)
def test_bad_query_parameters_are_422(client: FlaskClient, query: str, field: str) -> None:
    error = assert_error(client.get(f"/api/bugs/?{query}"), 422, "validation_error")
    assert error_fields(error) == [field]

"""PATCH: partial updates, the status workflow and the timestamps it owns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from flask.testing import FlaskClient

from backend.bugs.models import DEVICE_ID_MAX
from tests.bugs.helpers import assert_error, create, error_fields, patch

STATUSES = ["open", "in_progress", "resolved", "closed", "wont_fix"]
# The documented workflow, written out independently of backend.bugs.workflow.
ALLOWED = {
    ("open", "in_progress"),
    ("open", "resolved"),
    ("open", "closed"),
    ("open", "wont_fix"),
    ("in_progress", "open"),
    ("in_progress", "resolved"),
    ("in_progress", "closed"),
    ("in_progress", "wont_fix"),
    ("resolved", "open"),
    ("resolved", "closed"),
    ("closed", "open"),
    ("wont_fix", "open"),
    ("wont_fix", "closed"),
}


def bug_in(client: FlaskClient, status: str) -> dict[str, Any]:
    bug = create(client)
    return bug if status == "open" else patch(client, bug["id"], status=status)


@pytest.mark.parametrize("target", STATUSES)
@pytest.mark.parametrize("current", STATUSES)
def test_transition_matrix(client: FlaskClient, current: str, target: str) -> None:
    bug = bug_in(client, current)
    response = client.patch(f"/api/bugs/{bug['id']}", json={"status": target, "assignee": "Ana"})
    if current == target or (current, target) in ALLOWED:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == target
        assert response.get_json()["version"] == bug["version"] + 1
    else:
        error = assert_error(response, 409, "illegal_transition")
        assert error["details"]["from"] == current
        assert error["details"]["to"] == target
        assert current in error["message"]
        assert target in error["message"]
        # Nothing of a refused PATCH is written, not even its other fields.
        assert client.get(f"/api/bugs/{bug['id']}").get_json() == {**bug, "comments": []}


def test_closed_bug_must_be_reopened_before_work_resumes(client: FlaskClient) -> None:
    bug = bug_in(client, "closed")
    assert_error(client.patch(f"/api/bugs/{bug['id']}", json={"status": "in_progress"}), 409, "illegal_transition")
    assert patch(client, bug["id"], status="open")["status"] == "open"
    assert patch(client, bug["id"], status="in_progress")["status"] == "in_progress"


def at(day: int, hour: int) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_workflow_sets_and_clears_timestamps(client: FlaskClient) -> None:
    with time_machine.travel(at(1, 8), tick=False):
        bug = create(client)
    steps = [
        # (when, status, expected resolvedAt, expected closedAt)
        (at(2, 9), "in_progress", None, None),
        (at(3, 10), "resolved", at(3, 10), None),
        (at(4, 11), "closed", at(3, 10), at(4, 11)),
        (at(5, 12), "open", None, None),
        (at(6, 13), "wont_fix", None, at(6, 13)),
        (at(7, 14), "closed", None, at(7, 14)),
        (at(8, 15), "open", None, None),
        (at(9, 16), "closed", None, at(9, 16)),
    ]
    for when, status, resolved_at, closed_at in steps:
        with time_machine.travel(when, tick=False):
            body = patch(client, bug["id"], status=status)
        assert body["status"] == status
        assert body["resolvedAt"] == (iso(resolved_at) if resolved_at else None), status
        assert body["closedAt"] == (iso(closed_at) if closed_at else None), status
        assert body["updatedAt"] == iso(when)
        assert body["createdAt"] == iso(at(1, 8))


def test_same_status_is_a_no_op_for_the_workflow(client: FlaskClient) -> None:
    with time_machine.travel(at(1, 8), tick=False):
        bug = bug_in(client, "resolved")
    with time_machine.travel(at(2, 8), tick=False):
        again = patch(client, bug["id"], status="resolved")
    assert again["resolvedAt"] == bug["resolvedAt"]
    assert again["version"] == bug["version"] + 1


@pytest.mark.parametrize("field", ["resolvedAt", "closedAt", "resolved_at", "createdAt", "version", "id"])
def test_client_cannot_set_workflow_owned_fields(client: FlaskClient, field: str) -> None:
    bug = create(client)
    response = client.patch(f"/api/bugs/{bug['id']}", json={field: "2024-01-01T00:00:00Z"})
    error = assert_error(response, 422, "validation_error")
    assert error_fields(error) == [field]
    assert error["details"][0]["message"] == "Extra inputs are not permitted"


def test_patch_updates_only_the_fields_sent(client: FlaskClient) -> None:
    bug = create(client, deviceId="ESP32_LL_01", reporter="Op", severity="low")
    body = patch(client, bug["id"], severity="critical", assignee="Ana", title="Renamed")
    assert {k: body[k] for k in ("severity", "assignee", "title", "deviceId", "reporter", "description")} == {
        "severity": "critical",
        "assignee": "Ana",
        "title": "Renamed",
        "deviceId": "ESP32_LL_01",
        "reporter": "Op",
        "description": bug["description"],
    }
    assert body["version"] == 2
    cleared = patch(client, bug["id"], deviceId=None, reporter=None)
    assert (cleared["deviceId"], cleared["reporter"], cleared["assignee"]) == (None, None, "Ana")
    assert client.get(f"/api/bugs/{bug['id']}").get_json()["version"] == 3


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": None}, ["title"]),
        ({"status": None}, ["status"]),
        ({"severity": None}, ["severity"]),
        ({"description": None}, ["description"]),
        ({"status": "done"}, ["status"]),
        ({"priority": "asap"}, ["priority"]),
        ({"category": "firmware"}, ["category"]),
        ({"title": "t" * 201}, ["title"]),
        ({"assignee": ""}, ["assignee"]),
        ({"deviceId": "x" * (DEVICE_ID_MAX + 1)}, ["deviceId"]),
        ({}, ["_schema"]),
    ],
)
def test_patch_validation_names_the_field(client: FlaskClient, body: dict[str, Any], fields: list[str]) -> None:
    bug = create(client)
    error = assert_error(client.patch(f"/api/bugs/{bug['id']}", json=body), 422, "validation_error")
    assert error_fields(error) == fields
    assert client.get(f"/api/bugs/{bug['id']}").get_json() == {**bug, "comments": []}

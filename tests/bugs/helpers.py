"""Shared helpers of the bug tests."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

VALID = {"title": "Sensor timeout", "description": "VL53L8CH stops responding after 2 hours"}


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """POST a bug (VALID plus `fields`) and return the 201 body."""
    response = client.post("/api/bugs/", json={**VALID, **fields})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def patch(client: FlaskClient, bug_id: int, **fields: Any) -> dict[str, Any]:
    """PATCH a bug and return the 200 body."""
    response = client.patch(f"/api/bugs/{bug_id}", json=fields)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the JSON error shape with this status and code; return the error object."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]
    return error


def error_fields(error: dict[str, Any]) -> list[str]:
    """The fields a validation error names, with list indexes dropped (`status.0` -> `status`)."""
    return [detail["field"].split(".")[0] for detail in error["details"]]

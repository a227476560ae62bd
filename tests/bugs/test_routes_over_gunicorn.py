"""Over HTTP against the real gunicorn (2 workers): the reference validation script and concurrent PATCHes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import GunicornServer, together

pytestmark = pytest.mark.gunicorn

ALLOWED = {
    ("open", "in_progress"),
    ("open", "resolved"),
    ("open", "closed"),
    ("in_progress", "open"),
    ("in_progress", "resolved"),
    ("in_progress", "closed"),
    ("resolved", "open"),
    ("resolved", "closed"),
    ("closed", "open"),
}


def test_reference_validation_script(gunicorn: GunicornServer) -> None:
    """test_bug_tracking.sh: create, read, comment, summary."""
    with requests.Session() as http:
        created = http.post(
            gunicorn.url("/api/bugs/"),
            json={"title": "Test", "description": "Test description", "severity": "low", "priority": "medium"},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        bug_id = created.json()["id"]
        assert created.headers["Location"] == f"/api/bugs/{bug_id}"

        read = http.get(gunicorn.url(f"/api/bugs/{bug_id}"), timeout=5)
        assert read.status_code == 200
        assert (read.json()["title"], read.json()["status"], read.json()["comments"]) == ("Test", "open", [])

        comment = http.post(
            gunicorn.url(f"/api/bugs/{bug_id}/comments"),
            json={"comment": "Test comment", "author": "Test User"},
            timeout=5,
        )
        assert comment.status_code == 201
        assert comment.json()["bugId"] == bug_id

        summary = http.get(gunicorn.url("/api/bugs/metrics/summary"), timeout=5)
        assert summary.status_code == 200
        body = summary.json()
        assert body["total"] == 1
        assert body["bySeverity"]["low"] == 1
        assert body["openBySeverity"]["low"] == 1
        assert body["criticalOpen"] == 0

        comments = http.get(gunicorn.url(f"/api/bugs/{bug_id}"), timeout=5).json()["comments"]
        assert [(c["comment"], c["author"]) for c in comments] == [("Test comment", "Test User")]


def patcher(server: GunicornServer, bug_id: int, body: dict[str, Any]) -> Callable[[], requests.Response]:
    def call() -> requests.Response:
        with requests.Session() as http:
            return http.patch(server.url(f"/api/bugs/{bug_id}"), json=body, timeout=20)

    return call


def new_bug(server: GunicornServer) -> dict[str, Any]:
    response = requests.post(server.url("/api/bugs/"), json={"title": "Race"}, timeout=5)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def test_concurrent_patches_do_not_lose_updates(gunicorn: GunicornServer) -> None:
    bug = new_bug(gunicorn)
    fields = ["title", "description", "reporter", "assignee", "deviceId"]
    bodies = [{fields[index % len(fields)]: f"v{index}"} for index in range(20)]
    responses = together([patcher(gunicorn, bug["id"], body) for body in bodies])
    assert [r.status_code for r in responses] == [200] * len(bodies)
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(2, len(bodies) + 2)), "each PATCH saw the previous one's result"
    final = requests.get(gunicorn.url(f"/api/bugs/{bug['id']}"), timeout=5).json()
    assert final["version"] == len(bodies) + 1
    # Each field holds what the last PATCH (highest version) touching it wrote.
    for field in fields:
        last = max((r.json() for r, b in zip(responses, bodies, strict=True) if field in b), key=lambda j: j["version"])
        assert final[field] == last[field]


def test_concurrent_status_changes_form_a_legal_sequence(gunicorn: GunicornServer) -> None:
    bug = new_bug(gunicorn)
    targets = ["in_progress", "resolved", "closed", "open"] * 6
    responses = together([patcher(gunicorn, bug["id"], {"status": status}) for status in targets])
    assert {r.status_code for r in responses} <= {200, 409}
    accepted = sorted((r.json() for r in responses if r.status_code == 200), key=lambda j: j["version"])
    assert accepted, "at least the first status change is legal from open"
    assert [j["version"] for j in accepted] == list(range(2, len(accepted) + 2))
    previous: dict[str, Any] = {"status": "open", "resolvedAt": None}
    for state in accepted:
        assert state["status"] == previous["status"] or (previous["status"], state["status"]) in ALLOWED
        keeps_resolution = state["status"] == "closed" and previous["resolvedAt"] is not None
        assert (state["resolvedAt"] is not None) == (state["status"] == "resolved" or keeps_resolution)
        assert (state["closedAt"] is not None) == (state["status"] == "closed")
        previous = state
    for refused in (r for r in responses if r.status_code == 409):
        details = refused.json()["error"]["details"]
        assert (details["from"], details["to"]) not in ALLOWED


def critical_open(text: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bug_metrics" and sample.labels == {"severity": "critical", "status": "open"}:
                return sample.value
    return None


def test_every_worker_reports_the_same_bug_gauges(gunicorn: GunicornServer) -> None:
    for _ in range(3):
        response = requests.post(gunicorn.url("/api/bugs/"), json={"title": "Down", "severity": "critical"}, timeout=5)
        assert response.status_code == 201
    scrapes = []
    for _ in range(8):  # a new connection each time, so both workers answer some scrapes
        response = requests.get(gunicorn.url("/metrics"), timeout=5, headers={"Connection": "close"})
        if response.status_code == 404:
            pytest.skip("/metrics is not served yet (observability wiring pending in the factory)")
        assert response.status_code == 200
        scrapes.append(critical_open(response.text))
    assert scrapes == [3.0] * 8

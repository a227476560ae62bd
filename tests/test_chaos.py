"""Chaos endpoints: real delays and real failures, each as a JSON error; absent when disabled."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from backend import create_app
from backend.base.config import Settings


def test_slow_waits_the_requested_delay(client: FlaskClient) -> None:
    started = time.perf_counter()
    response = client.get("/slow?delay=0.3")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.3
    assert response.get_json()["delay_seconds"] == 0.3


@pytest.mark.parametrize("delay", ["-1", "31", "abc", "nan"])
def test_slow_rejects_out_of_range_delay(client: FlaskClient, delay: str) -> None:
    response = client.get(f"/slow?delay={delay}")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("exception", 500, "internal_error"), ("sql", 500, "internal_error"), ("timeout", 504, "gateway_timeout")],
)
def test_error_fails_for_real_as_json(client: FlaskClient, kind: str, status: int, code: str) -> None:
    response = client.get(f"/error?kind={kind}")
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    # The session was rolled back: the next request on the same worker still works.
    assert client.get("/products").status_code == 200


def test_error_without_kind_picks_a_failure(client: FlaskClient) -> None:
    statuses = {client.get("/error").status_code for _ in range(12)}
    assert statuses <= {500, 504}
    assert statuses


def test_error_probability_controls_the_failure_share(client: FlaskClient) -> None:
    assert {client.get("/error?probability=0").status_code for _ in range(20)} == {200}
    outcomes = [client.get("/error?probability=0.5&kind=exception").status_code for _ in range(200)]
    failures = outcomes.count(500)
    assert set(outcomes) == {200, 500}
    assert 50 < failures < 150


@pytest.mark.parametrize("query", ["probability=1.5", "probability=-0.1", "kind=meteor"])
def test_error_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    assert client.get(f"/error?{query}").status_code == 422


def test_chaos_routes_are_404_when_disabled(settings: Settings) -> Any:
    app = create_app(Settings.from_env({}, database_url=settings.database_url, app_env="production"))
    with app.test_client() as client:
        for path in ("/slow", "/error"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.get_json()["error"]["code"] == "not_found"

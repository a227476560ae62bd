"""Authentication comes before the body, and each route reads at most its largest real body.

Over the real gunicorn with AUTH_MODE=apikey: an anonymous write is refused with 401 before its body is read or
parsed (a hostile body nested too deep would otherwise be parsed first and answered 400), and a body beyond the
route's limit is 413 JSON — with a Content-Length or chunked — while the largest valid body of each route passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from apiflask import APIFlask

from backend.bugs.models import DESCRIPTION_MAX, PERSON_MAX, TITLE_MAX
from backend.core.http import DEFAULT_BODY_LIMIT
from scripts.services import TestServices
from tests.conftest import make_key, truncate_all
from tests.support.server import GunicornServer, session_server

pytestmark = [pytest.mark.gunicorn]

PRODUCT = {"name": "Lobe", "price": 10.0, "category": "Cru"}
ASTRAL = "\U0001f986"  # one character, twelve bytes once escaped (a surrogate pair)


@pytest.fixture(scope="module")
def server(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    truncate_all(app)
    env = {"AUTH_MODE": "apikey", "GUNICORN_THREADS": "8"}
    with session_server(services, tmp_path_factory.mktemp("body-limits"), workers=1, **env) as running:
        yield running


@pytest.fixture(scope="module")
def writer(app: APIFlask, server: GunicornServer) -> dict[str, str]:
    _, key = make_key(app, "products:write", "bugs:write")
    return {"X-API-Key": key, "Content-Type": "application/json"}


def error_code(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    code: str = response.json()["error"]["code"]
    return code


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_anonymous_writes_are_refused_before_the_body_is_parsed(server: GunicornServer) -> None:
    headers = {"Content-Type": "application/json"}
    for path in ("/products", "/api/bugs/", "/api/sqal/devices"):
        hostile = requests.post(server.url(path), data=nested(100), headers=headers, timeout=10)
        assert error_code(hostile, 401) == "unauthorized", path
        huge = requests.post(server.url(path), data=b" " * 900_000 + b"{}", headers=headers, timeout=10)
        assert error_code(huge, 401) == "unauthorized", path
    # CORS preflights carry no credentials: still answered.
    assert requests.options(server.url("/products"), timeout=10).status_code == 200


def test_a_body_beyond_the_route_limit_is_413(server: GunicornServer, writer: dict[str, str]) -> None:
    padded = json.dumps(PRODUCT) + " " * DEFAULT_BODY_LIMIT
    response = requests.post(server.url("/products"), data=padded, headers=writer, timeout=10)
    assert error_code(response, 413) == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield json.dumps(PRODUCT).encode()
        for _ in range(8):
            yield b" " * 4096

    chunked = requests.post(server.url("/products"), data=chunks(), headers=writer, timeout=10)
    assert error_code(chunked, 413) == "payload_too_large"
    assert (
        requests.post(
            server.url("/products"), json=PRODUCT, headers={"X-API-Key": writer["X-API-Key"]}, timeout=10
        ).status_code
        == 201
    )


def test_the_largest_real_bodies_pass(server: GunicornServer, writer: dict[str, str]) -> None:
    bug: dict[str, Any] = {
        "title": ASTRAL * TITLE_MAX,
        "description": ASTRAL * DESCRIPTION_MAX,
        "reporter": ASTRAL * PERSON_MAX,
        "assignee": ASTRAL * PERSON_MAX,
        "deviceId": "D" * 64,
    }
    body = json.dumps(bug, indent=2)  # ensure_ascii: every character escaped
    assert len(body) > 100_000
    created = requests.post(server.url("/api/bugs/"), data=body, headers=writer, timeout=10)
    assert created.status_code == 201, created.text[:300]
    comment = json.dumps({"comment": ASTRAL * 5000, "author": ASTRAL * PERSON_MAX})
    url = server.url(f"/api/bugs/{created.json()['id']}/comments")
    assert requests.post(url, data=comment, headers=writer, timeout=10).status_code == 201
    too_long = json.dumps({**bug, "description": ""}) + " " * len(body)
    assert error_code(requests.post(server.url("/api/bugs/"), data=too_long, headers=writer, timeout=10), 413) == (
        "payload_too_large"
    )
    product = json.dumps({"name": ASTRAL * 200, "price": 1.5, "category": ASTRAL * 100}, indent=2)
    assert requests.post(server.url("/products"), data=product, headers=writer, timeout=10).status_code == 201

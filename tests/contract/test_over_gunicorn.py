"""Concurrent retries and conditional updates against the real gunicorn (2 workers, threads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from apiflask import APIFlask

from tests.conftest import truncate_all
from tests.support.server import GunicornServer, session_server, together

pytestmark = pytest.mark.gunicorn

PRODUCT = {"name": "Stylo", "price": 1.5, "category": "Papeterie"}
RETRIES = 8


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def server(
    request: pytest.FixtureRequest, app: APIFlask, services: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn storing idempotency keys in Redis, or in PostgreSQL (Redis refuses connections); one per store."""
    truncate_all(app)
    refused = {} if request.param == "redis" else {"REDIS_URL": "redis://127.0.0.1:1/0"}
    with session_server(services, tmp_path_factory.mktemp("gunicorn"), **refused) as running:
        yield running


def test_concurrent_retries_with_one_key_create_one_row(server: GunicornServer) -> None:
    def create() -> requests.Response:
        return requests.post(
            server.url("/products"), json=PRODUCT, headers={"Idempotency-Key": "c0ffee-concurrent"}, timeout=30
        )

    responses = together([create] * RETRIES)
    assert [response.status_code for response in responses] == [201] * RETRIES, [r.text for r in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert len({response.headers["Location"] for response in responses}) == 1
    assert sum(response.headers.get("Idempotency-Replayed") == "true" for response in responses) == RETRIES - 1
    assert requests.get(server.url("/products"), timeout=5).headers["X-Total-Count"] == "1"


def test_concurrent_updates_with_one_etag_let_one_through(server: GunicornServer) -> None:
    created = requests.post(server.url("/api/bugs/"), json={"title": "Capteur muet"}, timeout=5)
    path = created.headers["Location"]
    etag = created.headers["ETag"]

    def update(index: int) -> Callable[[], requests.Response]:
        return lambda: requests.patch(
            server.url(path), json={"assignee": f"tech-{index}"}, headers={"If-Match": etag}, timeout=30
        )

    responses = together([update(index) for index in range(4)])
    assert sorted(response.status_code for response in responses) == [200, 412, 412, 412]
    winner = next(response for response in responses if response.status_code == 200)
    final = requests.get(server.url(path), timeout=5)
    assert final.headers["ETag"] == winner.headers["ETag"] == '"2"'
    assert final.json()["assignee"] == winner.json()["assignee"]

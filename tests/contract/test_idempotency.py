"""Idempotency-Key on creates: a retry gets the first response, not a second row; Redis first, PostgreSQL without it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import text

from backend.base.config import Settings
from backend.core.resilience import key_prefix
from backend.extensions import db
from tests.bugs.helpers import assert_error
from tests.conftest import make_key
from tests.contract.conftest import MakeClient

CREATES = {
    "product": ("/products", {"name": "Stylo", "price": 1.5, "category": "Papeterie"}),
    "bug": ("/api/bugs/", {"title": "Capteur muet", "severity": "low"}),
}
# Where keys are stored: the session's Redis, PostgreSQL when Redis refuses connections, PostgreSQL without Redis.
STORES = {"redis": None, "redis_down": "redis://127.0.0.1:1/0", "no_redis": ""}


def total(client: FlaskClient, path: str) -> int:
    return int(client.get(path).headers["X-Total-Count"])


def post(client: FlaskClient, kind: str, key: str | None, body: dict[str, Any] | None = None, **headers: str) -> Any:
    path, valid = CREATES[kind]
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, json=valid if body is None else body, headers=headers)


@pytest.fixture(params=STORES)
def store_client(request: pytest.FixtureRequest, client_with: MakeClient) -> FlaskClient:
    url = STORES[request.param]
    return client_with() if url is None else client_with(redis_url=url)


@pytest.mark.parametrize("kind", CREATES)
def test_a_retry_returns_the_first_response_and_creates_nothing(store_client: FlaskClient, kind: str) -> None:
    first = post(store_client, kind, "3f1c0a52-retry")
    again = post(store_client, kind, "3f1c0a52-retry")
    assert first.status_code == again.status_code == 201
    assert again.get_data() == first.get_data()
    for header in ("Location", "ETag", "Content-Type"):
        assert again.headers[header] == first.headers[header]
    assert "Idempotency-Replayed" not in first.headers
    assert again.headers["Idempotency-Replayed"] == "true"
    assert total(store_client, CREATES[kind][0]) == 1


@pytest.mark.parametrize("kind", CREATES)
def test_the_same_key_with_another_body_is_422(store_client: FlaskClient, kind: str) -> None:
    path, body = CREATES[kind]
    assert post(store_client, kind, "k-reused").status_code == 201
    error = assert_error(
        post(store_client, kind, "k-reused", {**body, "title" if kind == "bug" else "name": "Autre"}),
        422,
        "validation_error",
    )
    assert [(d["location"], d["field"]) for d in error["details"]] == [("headers", "Idempotency-Key")]
    assert total(store_client, path) == 1


def test_key_order_and_spacing_of_the_body_do_not_matter(client: FlaskClient) -> None:
    first = client.post(
        "/products",
        data='{"name":"A","price":1.0,"category":"C"}',
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    again = client.post(
        "/products",
        data='{ "category": "C", "price": 1.0, "name": "A" }',
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    assert (first.status_code, again.status_code, again.get_json()) == (201, 201, first.get_json())


def test_without_a_key_every_post_creates(client: FlaskClient) -> None:
    assert post(client, "product", None).status_code == post(client, "product", None).status_code == 201
    assert total(client, "/products") == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "é"])
def test_malformed_keys_are_422(client: FlaskClient, key: str) -> None:
    error = assert_error(post(client, "product", key), 422, "validation_error")
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert total(client, "/products") == 0


def test_a_key_is_scoped_to_its_route(client: FlaskClient) -> None:
    assert post(client, "product", "shared").status_code == 201
    assert post(client, "bug", "shared").status_code == 201
    assert (total(client, "/products"), total(client, "/api/bugs/")) == (1, 1)


def test_a_failed_request_releases_its_key(store_client: FlaskClient) -> None:
    assert_error(post(store_client, "product", "k-fix", {"name": "Stylo"}), 422, "validation_error")
    created = post(store_client, "product", "k-fix")
    assert created.status_code == 201
    assert post(store_client, "product", "k-fix").get_json() == created.get_json()


def test_a_key_is_scoped_to_the_api_key_that_sent_it(client_with: MakeClient) -> None:
    client = client_with(auth_mode="apikey")
    first = make_key(client.application, "products:write")[1]  # type: ignore[arg-type]
    second = make_key(client.application, "products:write")[1]  # type: ignore[arg-type]
    one = post(client, "product", "k", Authorization=f"Bearer {first}")
    other = post(client, "product", "k", Authorization=f"Bearer {second}")
    assert (one.status_code, other.status_code) == (201, 201)
    assert one.get_json()["id"] != other.get_json()["id"]
    assert post(client, "product", "k", Authorization=f"Bearer {first}").get_json() == one.get_json()


def test_redis_keeps_the_response_for_idempotency_ttl(client_with: MakeClient, settings: Settings) -> None:
    client = client_with(idempotency_ttl=600)
    assert post(client, "product", "k-ttl").status_code == 201
    connection = redis.Redis.from_url(settings.redis_url)
    prefix = key_prefix(client.application.config["SETTINGS"])
    names = list(connection.scan_iter(match=f"{prefix}idem:*"))
    assert len(names) == 1
    assert 590 <= connection.ttl(names[0]) <= 600


def test_postgresql_keeps_the_response_for_idempotency_ttl(client_with: MakeClient) -> None:
    client = client_with(redis_url="", idempotency_ttl=600)
    assert post(client, "product", "k-ttl").status_code == 201
    with client.application.app_context():
        rows = db.session.execute(text("SELECT status_code, expires_at FROM idempotency_keys")).all()
    assert len(rows) == 1
    assert rows[0].status_code == 201
    remaining = (rows[0].expires_at - datetime.now(UTC)).total_seconds()
    assert 590 <= remaining <= 600


def test_an_expired_postgresql_key_is_claimed_again_and_expired_rows_are_purged(client_with: MakeClient) -> None:
    client = client_with(redis_url="")
    for key in ("k-old", "k-other", "k-live"):
        assert post(client, "product", key).status_code == 201
    with client.application.app_context():
        db.session.execute(
            text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE status_code = 201")
        )
        db.session.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = now() + interval '1 hour' WHERE ctid = "
                "(SELECT max(ctid) FROM idempotency_keys)"
            )
        )
        db.session.commit()
        live = db.session.execute(text("SELECT count(*) FROM idempotency_keys WHERE expires_at > now()")).scalar()
    assert live == 1
    assert post(client, "product", "k-old").headers.get("Idempotency-Replayed") is None
    assert total(client, "/products") == 4
    with client.application.app_context():
        # k-old claimed again, k-other purged, the live one kept.
        assert db.session.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 2

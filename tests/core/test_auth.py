"""API keys: hashed storage, scopes, 401/403, revocation, expiry, last use without contention, the CLI."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from apiflask import APIBlueprint, APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from backend.core import auth
from backend.core.security import hash_token
from backend.extensions import db
from scripts.services import TestServices
from tests.conftest import make_key


@pytest.fixture
def probed_app(secured_app: APIFlask) -> APIFlask:
    """The secured app with a test route that needs `products:write`."""
    bp = APIBlueprint("auth_probe", __name__)

    @bp.post("/auth-probe")
    @auth.require_scope("products:write")
    def probe() -> dict[str, bool]:
        return {"ok": True}

    secured_app.register_blueprint(bp)
    return secured_app


def test_keys_are_stored_hashed(secured_app: APIFlask) -> None:
    key_id, key = make_key(secured_app, "products:write")
    with secured_app.app_context():
        row = db.session.execute(select(auth.ApiKey).where(auth.ApiKey.id == key_id)).scalar_one()
        assert row.key_hash == hash_token(key)
        assert key not in repr(row.__dict__)
    assert key.startswith("sqal_")


def test_missing_unknown_wrong_scope_and_revoked_keys(probed_app: APIFlask) -> None:
    _, writer = make_key(probed_app, "products:write")
    reader_id, reader = make_key(probed_app, "read")
    client: FlaskClient = probed_app.test_client()

    response = client.post("/auth-probe", json={})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": "sqal_nope"}).status_code == 401
    forbidden = client.post("/auth-probe", json={}, headers={"Authorization": f"Bearer {reader}"})
    assert forbidden.status_code == 403
    assert forbidden.get_json()["error"]["details"]["required_scope"] == "products:write"
    assert reader not in forbidden.get_data(as_text=True)
    assert client.post("/auth-probe", json={}, headers={"Authorization": f"Bearer {writer}"}).status_code == 200
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": writer}).status_code == 200
    both = {"Authorization": f"Bearer {writer}", "X-API-Key": "sqal_other"}
    assert client.post("/auth-probe", json={}, headers=both).status_code == 401  # never pick one silently
    same = {"Authorization": f"Bearer {writer}", "X-API-Key": writer}
    assert client.post("/auth-probe", json={}, headers=same).status_code == 200

    with probed_app.app_context():
        assert auth.revoke_key(reader_id) is True
        assert auth.revoke_key(reader_id) is False
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": reader}).status_code == 401


def test_unknown_scopes_are_refused(secured_app: APIFlask) -> None:
    with secured_app.app_context(), pytest.raises(ValueError, match="unknown or missing scopes"):
        auth.create_key("x", ["root"])
    with pytest.raises(ValueError, match="unknown scope"):
        auth.require_scope("root")


def test_cli_prints_the_key_once_and_revokes(secured_app: APIFlask) -> None:
    runner = secured_app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "--name", "ci", "--scope", "bugs:write", "--scope", "read"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(args=["keys", "list"])
    assert "bugs:write,read" in listed.output
    assert key not in listed.output
    key_id = listed.output.split("\t", 1)[0]
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert "revoked" in runner.invoke(args=["keys", "list"]).output
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code != 0


def test_auth_off_lets_writes_through(client: FlaskClient) -> None:
    response = client.post("/products", json={"name": "a", "price": 1, "category": "c"})
    assert response.status_code == 201


def test_health_says_when_auth_is_off(client: FlaskClient, secured_app: APIFlask) -> None:
    open_body = client.get("/health").get_json()
    assert open_body["auth"] == "off"
    assert open_body["warnings"] == [auth.AUTH_OFF_WARNING]
    secured_body = secured_app.test_client().get("/health").get_json()
    assert secured_body["auth"] == "apikey"
    assert "warnings" not in secured_body


def test_bug_writes_need_the_bugs_scope(secured_app: APIFlask) -> None:
    _, products_key = make_key(secured_app, "products:write")
    _, bugs_key = make_key(secured_app, "bugs:write")
    client: FlaskClient = secured_app.test_client()
    body = {"title": "Sensor timeout"}
    assert client.post("/api/bugs/", json=body).status_code == 401
    assert client.post("/api/bugs/", json={"title": ""}).status_code == 401  # auth before validation
    assert client.post("/api/bugs/", json=body, headers={"X-API-Key": products_key}).status_code == 403
    created = client.post("/api/bugs/", json=body, headers={"X-API-Key": bugs_key})
    assert created.status_code == 201
    url = created.headers["Location"]
    assert client.patch(url, json={"status": "in_progress"}).status_code == 401
    assert client.post(f"{url}/comments", json={"comment": "x", "author": "y"}).status_code == 401
    assert client.get(url).status_code == 200  # reads stay public
    assert client.get("/api/bugs/metrics/summary").status_code == 200


def test_product_writes_need_the_products_scope(secured_app: APIFlask) -> None:
    _, bugs_key = make_key(secured_app, "bugs:write")
    _, products_key = make_key(secured_app, "products:write")
    client: FlaskClient = secured_app.test_client()
    body = {"name": "Lobe", "price": 10.0, "category": "Cru"}
    assert client.post("/products", json=body).status_code == 401
    assert client.post("/products", json=body, headers={"X-API-Key": bugs_key}).status_code == 403
    created = client.post("/products", json=body, headers={"Authorization": f"Bearer {products_key}"})
    assert created.status_code == 201
    url = created.headers["Location"]
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(url, json=body).status_code == 401
    assert client.patch(url, json={"price": 12}, headers={"X-API-Key": products_key}).status_code == 200
    assert client.get(url).get_json()["price"] == 12.0  # reads stay public
    assert client.delete(url, headers={"X-API-Key": products_key}).status_code == 204


def test_each_domain_declares_its_scopes(secured_app: APIFlask) -> None:
    assert set(auth.scopes()) == {"read", "products:write", "bugs:write", "devices:admin"}
    auth.register_scopes("products:write")  # idempotent
    assert len(auth.scopes()) == 4


def test_cli_refuses_an_undeclared_scope_and_names_the_declared_ones(secured_app: APIFlask) -> None:
    refused = secured_app.test_cli_runner().invoke(args=["keys", "create", "--name", "ci", "--scope", "root"])
    assert refused.exit_code == 2
    assert "'root' is not one of" in refused.output
    for scope in auth.scopes():
        assert scope in refused.output


def _key_row(application: APIFlask, key_id: int) -> auth.ApiKey:
    with application.app_context():
        row = db.session.get(auth.ApiKey, key_id)
        assert row is not None
        db.session.expunge(row)
        return row


def test_expired_keys_are_refused_with_their_own_code(probed_app: APIFlask) -> None:
    with probed_app.app_context():
        row, key = auth.create_key("expiring", ["products:write"], datetime.now(UTC) + timedelta(hours=1))
        key_id = row.id
    client = probed_app.test_client()
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    with probed_app.app_context():  # an hour later
        db.session.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"), {"id": key_id}
        )
        db.session.commit()
    expired = client.post("/auth-probe", json={}, headers={"X-API-Key": key})
    assert expired.status_code == 401
    error = expired.get_json()["error"]
    assert error["code"] == "api_key_expired"
    assert error["details"]["expired_at"].endswith("Z")
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")
    listed = probed_app.test_cli_runner().invoke(args=["keys", "list"])
    assert f"{key_id}\texpiring\tproducts:write\texpired\texpires " in listed.output


def test_cli_expiry_accepts_durations_and_dates_in_the_future(secured_app: APIFlask) -> None:
    runner = secured_app.test_cli_runner()
    base = ["keys", "create", "--name", "ci", "--scope", "read", "--expires"]
    before = datetime.now(UTC)
    for spelled, expected in (
        ("30d", before + timedelta(days=30)),
        ("12h", before + timedelta(hours=12)),
        ("2099-01-01", datetime(2099, 1, 1, tzinfo=UTC)),
        ("2099-01-01T12:00:00+02:00", datetime(2099, 1, 1, 10, tzinfo=UTC)),
    ):
        created = runner.invoke(args=[*base, spelled])
        assert created.exit_code == 0, created.output
        key = created.stdout.strip().splitlines()[-1]
        with secured_app.app_context():
            row = auth.find_active_key(key)
            assert row is not None
            assert row.expires_at is not None
            assert abs((row.expires_at - expected).total_seconds()) < 60, spelled
    for refused in ("0d", "yesterday", "2000-01-01", "-5d", "30 days"):
        result = runner.invoke(args=[*base, refused])
        assert result.exit_code == 2, (refused, result.output)
        assert "expires" in result.output.lower()
    with secured_app.app_context():
        assert db.session.execute(select(func.count()).select_from(auth.ApiKey)).scalar_one() == 4
    never = runner.invoke(args=["keys", "create", "--name", "forever", "--scope", "read"])
    assert "expires=never" in never.output


@pytest.fixture
def fresh_touches(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has written no key's last use yet."""
    monkeypatch.setattr(auth, "_last_touched", {}, raising=False)


def test_last_use_never_waits_on_a_key_row_another_request_holds(
    probed_app: APIFlask, services: TestServices, fresh_touches: None
) -> None:
    key_id, key = make_key(probed_app, "products:write")
    client = probed_app.test_client()
    holder = psycopg2.connect(services.database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with holder.cursor() as cursor:  # a request in flight with this key, as every one held it on main
            cursor.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
        started = time.monotonic()
        assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
        assert time.monotonic() - started < 5, "the request waited for the key's row"
    finally:
        holder.rollback()
        holder.close()
    assert _key_row(probed_app, key_id).last_used_at is None  # skipped, not waited for


def test_last_use_is_written_at_most_once_per_resolution(probed_app: APIFlask, fresh_touches: None) -> None:
    key_id, key = make_key(probed_app, "products:write")
    client = probed_app.test_client()
    assert _key_row(probed_app, key_id).last_used_at is None
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    first = _key_row(probed_app, key_id).last_used_at
    assert first is not None
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    auth._last_touched.clear()  # as another worker, which has not written it yet: the database condition holds
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    assert _key_row(probed_app, key_id).last_used_at == first
    with probed_app.app_context():  # a resolution later
        db.session.execute(
            text("UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds' WHERE id = :id"),
            {"id": key_id},
        )
        db.session.commit()
    auth._last_touched.clear()
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    latest = _key_row(probed_app, key_id).last_used_at
    assert latest is not None
    assert latest >= first


def test_revocation_is_effective_at_the_next_request(probed_app: APIFlask, fresh_touches: None) -> None:
    key_id, key = make_key(probed_app, "products:write")
    client = probed_app.test_client()
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 200
    assert probed_app.test_cli_runner().invoke(args=["keys", "revoke", str(key_id)]).exit_code == 0
    assert client.post("/auth-probe", json={}, headers={"X-API-Key": key}).status_code == 401

"""API keys: hashed storage, scopes, 401/403, revocation, the CLI."""

from __future__ import annotations

import pytest
from apiflask import APIBlueprint, APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from backend.core import auth
from backend.core.security import hash_token
from backend.extensions import db
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

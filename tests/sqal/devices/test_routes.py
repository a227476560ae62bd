"""Device administration over HTTP: the `devices:admin` scope, one-time tokens, rotation, enable/disable."""

from __future__ import annotations

from apiflask import APIFlask
from flask.testing import FlaskClient

from backend.extensions import db
from backend.sqal.devices import service
from backend.sqal.models import Device
from tests.conftest import make_key
from tests.sqal.helpers import unique_device_id

DEVICES = "/api/sqal/devices"


def admin_client(app: APIFlask) -> tuple[FlaskClient, dict[str, str]]:
    _, key = make_key(app, "devices:admin")
    return app.test_client(), {"X-API-Key": key}


def token_matches(app: APIFlask, device_id: str, token: str) -> bool:
    with app.app_context():
        return service.device_token_matches(device_id, token)


def test_register_shows_the_token_once_and_never_caches_it(secured_app: APIFlask) -> None:
    client, headers = admin_client(secured_app)
    device_id = unique_device_id()
    created = client.post(DEVICES, json={"device_id": device_id, "profile": "line 1"}, headers=headers)
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    token = created.get_json()["token"]
    assert token_matches(secured_app, device_id, token)
    with secured_app.app_context():
        stored = db.session.get(Device, device_id)
        assert stored is not None
        assert stored.profile == "line 1"
        assert token not in repr(stored.__dict__)
    again = client.post(DEVICES, json={"device_id": device_id}, headers=headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"
    assert token_matches(secured_app, device_id, token)  # a refused duplicate leaves the token alone


def test_rotation_replaces_the_token(secured_app: APIFlask) -> None:
    client, headers = admin_client(secured_app)
    device_id = unique_device_id()
    old = client.post(DEVICES, json={"device_id": device_id}, headers=headers).get_json()["token"]
    rotated = client.post(f"{DEVICES}/{device_id}/token", headers=headers)
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
    new = rotated.get_json()["token"]
    assert new != old
    assert token_matches(secured_app, device_id, new)
    assert not token_matches(secured_app, device_id, old)
    missing = client.post(f"{DEVICES}/NOPE_{device_id}/token", headers=headers)
    assert missing.status_code == 404
    with secured_app.app_context():
        assert db.session.get(Device, f"NOPE_{device_id}") is None  # rotation never creates a device


def test_disable_and_enable(secured_app: APIFlask) -> None:
    client, headers = admin_client(secured_app)
    device_id = unique_device_id()
    token = client.post(DEVICES, json={"device_id": device_id}, headers=headers).get_json()["token"]
    disabled = client.patch(f"{DEVICES}/{device_id}", json={"enabled": False}, headers=headers)
    assert disabled.get_json() == {"device_id": device_id, "enabled": False}
    assert not token_matches(secured_app, device_id, token)
    assert client.patch(f"{DEVICES}/{device_id}", json={"enabled": True}, headers=headers).status_code == 200
    assert token_matches(secured_app, device_id, token)
    assert client.patch(f"{DEVICES}/missing-{device_id}", json={"enabled": True}, headers=headers).status_code == 404


def test_bad_bodies_are_refused_and_store_nothing(secured_app: APIFlask) -> None:
    client, headers = admin_client(secured_app)
    device_id = unique_device_id()
    for body in (
        {},
        {"device_id": ""},
        {"device_id": "-starts-with-dash"},
        {"device_id": "x" * 101},
        {"device_id": "a b"},
        {"device_id": device_id, "profile": "   "},
        {"device_id": device_id, "token": "chosen-by-caller"},
        {"device_id": 42},
    ):
        response = client.post(DEVICES, json=body, headers=headers)
        assert response.status_code == 422, body
        assert set(response.get_json()["error"]) == {"code", "message", "details"}
    client.post(DEVICES, json={"device_id": device_id}, headers=headers)
    for body in ({}, {"enabled": "false"}, {"enabled": 0}, {"enabled": None}):
        assert client.patch(f"{DEVICES}/{device_id}", json=body, headers=headers).status_code == 422, body
    with secured_app.app_context():
        assert db.session.query(Device).count() == 1


def test_only_the_devices_admin_scope_may_administer(secured_app: APIFlask) -> None:
    _, other = make_key(secured_app, "products:write", "bugs:write", "read")
    client = secured_app.test_client()
    device_id = unique_device_id()
    assert client.post(DEVICES, json={"device_id": device_id}).status_code == 401
    forbidden = client.post(DEVICES, json={"device_id": device_id}, headers={"X-API-Key": other})
    assert forbidden.status_code == 403
    assert forbidden.get_json()["error"]["details"]["required_scope"] == "devices:admin"
    assert client.post(f"{DEVICES}/{device_id}/token", headers={"X-API-Key": other}).status_code == 403
    assert (
        client.patch(f"{DEVICES}/{device_id}", json={"enabled": False}, headers={"X-API-Key": other}).status_code == 403
    )
    with secured_app.app_context():
        assert db.session.get(Device, device_id) is None

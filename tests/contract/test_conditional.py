"""ETag on reads and writes (the row's version) and If-Match on updates: 412 when stale, 428 when required."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.bugs.helpers import assert_error
from tests.contract.conftest import MakeClient

PRODUCT = {"name": "Foie gras entier", "price": 89.9, "category": "Foie gras"}
BUG = {"title": "Capteur muet", "severity": "low"}

# (create path, item path template, a partial update, a full replacement or None)
RESOURCES = {
    "product": ("/products", "/products/{}", {"price": 12.5}, PRODUCT),
    "bug": ("/api/bugs/", "/api/bugs/{}", {"title": "Capteur muet depuis 2 h"}, None),
}
BODIES = {"product": PRODUCT, "bug": BUG}
LOST_UPDATE = {"product": {"price": 1.0}, "bug": {"title": "Une mise à jour perdue"}}


def _create(client: FlaskClient, kind: str) -> str:
    create_path, item, _, _ = RESOURCES[kind]
    created = client.post(create_path, json=BODIES[kind])
    assert created.status_code == 201, created.get_json()
    assert created.headers["ETag"] == '"1"'
    return item.format(created.get_json()["id"])


@pytest.mark.parametrize("kind", RESOURCES)
def test_reads_and_writes_carry_the_version_as_etag(client: FlaskClient, kind: str) -> None:
    path = _create(client, kind)
    read = client.get(path)
    assert read.headers["ETag"] == f'"{read.get_json()["version"]}"' == '"1"'
    updated = client.patch(path, json=RESOURCES[kind][2], headers={"If-Match": '"1"'})
    assert updated.status_code == 200, updated.get_json()
    assert updated.headers["ETag"] == '"2"'
    assert updated.get_json()["version"] == 2
    assert client.get(path).headers["ETag"] == '"2"'  # the cache was invalidated with the write


@pytest.mark.parametrize("kind", RESOURCES)
def test_a_stale_if_match_is_412_and_writes_nothing(client: FlaskClient, kind: str) -> None:
    path = _create(client, kind)
    assert client.patch(path, json=RESOURCES[kind][2]).status_code == 200  # someone else's update: version 2
    before = client.get(path).get_json()
    stale = client.patch(path, json=LOST_UPDATE[kind], headers={"If-Match": '"1"'})
    error = assert_error(stale, 412, "precondition_failed")
    assert error["details"]["etag"] == '"2"'
    assert stale.headers["ETag"] == '"2"'
    assert client.get(path).get_json() == before


@pytest.mark.parametrize(
    ("if_match", "status"), [('"1"', 200), ('"7", "1"', 200), ("*", 200), ('W/"1"', 412), ('"2"', 412), ("1", 412)]
)
def test_if_match_compares_strong_entity_tags(client: FlaskClient, if_match: str, status: int) -> None:
    path = _create(client, "product")
    assert client.patch(path, json={"price": 3.0}, headers={"If-Match": if_match}).status_code == status


def test_put_honours_if_match(client: FlaskClient) -> None:
    path = _create(client, "product")
    assert_error(client.put(path, json=PRODUCT, headers={"If-Match": '"0"'}), 412, "precondition_failed")
    replaced = client.put(path, json=PRODUCT | {"price": 1.0}, headers={"If-Match": '"1"'})
    assert (replaced.status_code, replaced.headers["ETag"]) == (200, '"2"')


def test_if_match_on_a_missing_resource_is_404(client: FlaskClient) -> None:
    assert_error(client.patch("/products/999", json={"price": 1.0}, headers={"If-Match": '"1"'}), 404, "not_found")


@pytest.mark.parametrize("kind", RESOURCES)
def test_without_if_match_updates_go_through_unless_required(client_with: MakeClient, kind: str) -> None:
    lenient = client_with()
    path = _create(lenient, kind)
    assert lenient.patch(path, json=RESOURCES[kind][2]).status_code == 200

    strict = client_with(require_if_match=True)
    error = assert_error(strict.patch(path, json=RESOURCES[kind][2]), 428, "precondition_required")
    assert error["details"] == {"header": "If-Match"}
    assert strict.patch(path, json=RESOURCES[kind][2], headers={"If-Match": '"2"'}).status_code == 200
    if kind == "product":
        assert_error(strict.put(path, json=PRODUCT), 428, "precondition_required")

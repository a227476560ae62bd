"""Products CRUD over the Flask test client, good paths and bad paths."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from backend.products.service import SAMPLE_PRODUCTS, seed_sample_products

VALID = {"name": "Foie gras entier", "price": 89.9, "category": "Foie gras"}


def create(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/products", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]
    return error


def test_list_is_a_json_array_with_total_and_links(client: FlaskClient, app: Any) -> None:
    with app.app_context():
        seed_sample_products()
    response = client.get("/products?limit=3&offset=3")
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, list)
    assert [item["id"] for item in body] == [4, 5, 6]
    assert response.headers["X-Total-Count"] == str(len(SAMPLE_PRODUCTS))
    link = response.headers["Link"]
    assert '</products?limit=3&offset=6>; rel="next"' in link
    assert '</products?limit=3&offset=0>; rel="prev"' in link
    assert '</products?limit=3&offset=9>; rel="last"' in link


def test_list_filters_by_category_and_defaults_to_100(client: FlaskClient) -> None:
    for index in range(3):
        create(client, {**VALID, "name": f"p{index}", "category": "A" if index < 2 else "B"})
    body = client.get("/products?category=A").get_json()
    assert [item["name"] for item in body] == ["p0", "p1"]
    response = client.get("/products")
    assert response.headers["X-Total-Count"] == "3"
    assert "next" not in response.headers["Link"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "offset=-1", "unknown=1", "category="])
def test_list_rejects_bad_query(client: FlaskClient, query: str) -> None:
    assert_error(client.get(f"/products?{query}"), 422, "validation_error")


def test_create_returns_201_location_and_iso_timestamps(client: FlaskClient) -> None:
    response = client.post("/products", json=VALID)
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/products/{body['id']}"
    assert {k: body[k] for k in VALID} == VALID
    assert "T" in body["created_at"]
    assert client.get(response.headers["Location"]).get_json() == body


def test_integer_price_is_accepted_as_float(client: FlaskClient) -> None:
    assert create(client, {**VALID, "price": 12})["price"] == 12.0


def test_get_unknown_product_is_404_json(client: FlaskClient) -> None:
    error = assert_error(client.get("/products/424242"), 404, "not_found")
    assert error["details"] == {"id": 424242}


def test_put_replaces_and_patch_updates_some_fields(client: FlaskClient) -> None:
    product = create(client, VALID)
    url = f"/products/{product['id']}"
    replaced = client.put(url, json={"name": "Bloc", "price": 10.5, "category": "Blocs"})
    assert replaced.status_code == 200
    assert replaced.get_json()["name"] == "Bloc"
    patched = client.patch(url, json={"price": 11})
    assert patched.status_code == 200
    assert patched.get_json()["price"] == 11.0
    assert patched.get_json()["name"] == "Bloc"
    assert client.get(url).get_json()["price"] == 11.0


def test_put_requires_every_field(client: FlaskClient) -> None:
    product = create(client, VALID)
    error = assert_error(client.put(f"/products/{product['id']}", json={"name": "x"}), 422, "validation_error")
    assert {d["field"] for d in error["details"]} == {"price", "category"}


@pytest.mark.parametrize("body", [{}, {"name": None}, {"price": "1"}])
def test_patch_rejects_empty_null_and_wrong_types(client: FlaskClient, body: dict[str, Any]) -> None:
    product = create(client, VALID)
    assert_error(client.patch(f"/products/{product['id']}", json=body), 422, "validation_error")
    assert client.get(f"/products/{product['id']}").get_json() == product


def test_update_and_delete_unknown_are_404(client: FlaskClient) -> None:
    assert_error(client.put("/products/999", json=VALID), 404, "not_found")
    assert_error(client.patch("/products/999", json={"price": 1}), 404, "not_found")
    assert_error(client.delete("/products/999"), 404, "not_found")


def test_delete_returns_204_then_404(client: FlaskClient) -> None:
    product = create(client, VALID)
    response = client.delete(f"/products/{product['id']}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_error(client.get(f"/products/{product['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 201),
        ("name", 12),
        ("category", ""),
        ("category", "c" * 101),
        ("price", "12.5"),
        ("price", True),
        ("price", -0.01),
        ("price", None),
        ("price", [1]),
    ],
)
def test_create_rejects_invalid_field(client: FlaskClient, field: str, value: Any) -> None:
    error = assert_error(client.post("/products", json={**VALID, field: value}), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [field]
    assert client.get("/products").headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_create_rejects_non_finite_prices(client: FlaskClient, literal: str) -> None:
    data = f'{{"name": "a", "price": {literal}, "category": "c"}}'
    response = client.post("/products", data=data, content_type="application/json")
    assert_error(response, 422, "validation_error")


def test_create_rejects_unknown_and_missing_fields(client: FlaskClient) -> None:
    error = assert_error(client.post("/products", json={**VALID, "colour": "red"}), 422, "validation_error")
    assert error["details"][0]["field"] == "colour"
    error = assert_error(client.post("/products", json={"name": "x"}), 422, "validation_error")
    assert {d["field"] for d in error["details"]} == {"price", "category"}


@pytest.mark.parametrize("body", ["{bad", '{"name": "x",}', "", "[1, 2"])
def test_malformed_json_is_400(client: FlaskClient, body: str) -> None:
    response = client.post("/products", data=body, content_type="application/json")
    assert_error(response, 400, "malformed_json")


def test_json_that_is_not_an_object_is_422(client: FlaskClient) -> None:
    assert_error(client.post("/products", json=[1, 2]), 422, "validation_error")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    kwargs: dict[str, Any] = {"data": '{"name": "a", "price": 1, "category": "c"}'}
    if content_type:
        kwargs["content_type"] = content_type
    assert_error(client.post("/products", **kwargs), 415, "unsupported_media_type")


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.delete("/products")
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_seed_is_idempotent(client: FlaskClient, app: Any) -> None:
    with app.app_context():
        assert seed_sample_products() == len(SAMPLE_PRODUCTS)
        assert seed_sample_products() == 0
    assert client.get("/products").headers["X-Total-Count"] == str(len(SAMPLE_PRODUCTS))


@pytest.mark.parametrize(
    # Within the route's body limit (16 KiB), deep enough to exhaust the parser's recursion.
    "body",
    ["[" * 8000 + "]" * 8000, '{"a":' * 2500 + "1" + "}" * 2500, "[" * 33 + "]" * 33],
)
def test_deeply_nested_json_is_refused_not_a_crash(client: FlaskClient, body: str) -> None:
    response = client.post("/products", data=body, content_type="application/json")
    error = assert_error(response, 400, "json_too_deep")
    assert error["details"] == {"max_depth": 32}


def test_a_body_beyond_the_route_limit_is_refused_unread(client: FlaskClient) -> None:
    response = client.post("/products", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert_error(response, 413, "payload_too_large")


def test_responses_carry_security_headers(client: FlaskClient) -> None:
    for response in (client.get("/products"), client.get("/nowhere"), client.post("/products", json={})):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"

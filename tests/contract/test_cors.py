"""Browser clients can read the API's headers: CORS exposes them to allowed origins."""

from __future__ import annotations

from tests.contract.conftest import CONTRACT_HEADERS, MakeClient

ORIGIN = "https://dashboard.example"


def exposed(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",") if name.strip()}


def test_allowed_origin_may_read_every_contract_header(client_with: MakeClient) -> None:
    client = client_with(cors_origins=(ORIGIN,))
    response = client.get("/products", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {name.lower() for name in CONTRACT_HEADERS} <= exposed(response.headers["Access-Control-Expose-Headers"])


def test_preflight_allows_conditional_and_idempotent_writes(client_with: MakeClient) -> None:
    client = client_with(cors_origins=(ORIGIN,))
    response = client.options(
        "/products/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type, if-match, idempotency-key",
        },
    )
    assert response.status_code == 200
    allowed = exposed(response.headers["Access-Control-Allow-Headers"])
    assert {"content-type", "if-match", "idempotency-key"} <= allowed


def test_other_origins_are_not_exposed_anything(client_with: MakeClient) -> None:
    client = client_with(cors_origins=(ORIGIN,))
    response = client.get("/products", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers

"""The OpenAPI document as a contract: stable operationIds, every header the API sends declared where it is sent,
component names a client generator accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from scripts import openapi
from tests.contract.conftest import CONTRACT_HEADERS, MakeClient

# The operationIds are the names of generated client functions: renaming one breaks every client. Change on purpose.
OPERATION_IDS = {
    ("get", "/products"): "listProducts",
    ("post", "/products"): "createProduct",
    ("get", "/products/{product_id}"): "getProduct",
    ("put", "/products/{product_id}"): "replaceProduct",
    ("patch", "/products/{product_id}"): "updateProduct",
    ("delete", "/products/{product_id}"): "deleteProduct",
    ("get", "/api/bugs/"): "listBugs",
    ("post", "/api/bugs/"): "createBug",
    ("get", "/api/bugs/{bug_id}"): "getBug",
    ("patch", "/api/bugs/{bug_id}"): "updateBug",
    ("post", "/api/bugs/{bug_id}/comments"): "addBugComment",
    ("get", "/api/bugs/metrics/summary"): "getBugSummary",
    ("get", "/api/bugs/metrics/trends"): "getBugTrends",
    ("get", "/api/sqal/samples"): "listSamples",
    ("get", "/api/sqal/samples/export"): "exportSamples",
    ("get", "/api/sqal/samples/{sample_id}"): "getSample",
    ("get", "/api/sqal/devices"): "listDevices",
    ("post", "/api/sqal/devices"): "createDevice",
    ("post", "/api/sqal/devices/{device_id}/token"): "rotateDeviceToken",
    ("patch", "/api/sqal/devices/{device_id}"): "updateDevice",
    ("get", "/api/sqal/stats/timeseries"): "getTimeseries",
    ("get", "/api/dashboard/metrics/"): "getDashboardMetrics",
    ("get", "/health"): "getHealth",
    ("get", "/health/live"): "getLiveness",
    ("get", "/health/ready"): "getReadiness",
    ("get", "/health/startup"): "getStartup",
    ("get", "/slow"): "chaosSlow",
    ("get", "/error"): "chaosError",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi.build_spec()


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    }


def declared(spec: dict[str, Any], operation: dict[str, Any], status: int) -> set[str]:
    response = operation["responses"].get(str(status), {})
    names = set(response.get("headers", {}))
    for name in names:
        assert response["headers"][name] == {"$ref": f"#/components/headers/{name}"}
        assert name in spec["components"]["headers"]
    return names


def test_every_operation_has_its_pinned_operation_id(spec: dict[str, Any]) -> None:
    found = {key: operation.get("operationId") for key, operation in operations(spec).items()}
    assert found == OPERATION_IDS
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", name) for name in OPERATION_IDS.values())


@pytest.mark.parametrize(
    ("method", "path", "status", "headers"),
    [
        ("post", "/products", 201, {"Location", "ETag", "Idempotency-Replayed"}),
        ("post", "/api/bugs/", 201, {"Location", "ETag", "Idempotency-Replayed"}),
        ("get", "/products", 200, {"X-Total-Count", "Link"}),
        ("get", "/api/bugs/", 200, {"X-Total-Count", "Link"}),
        ("get", "/api/sqal/samples", 200, {"Link"}),
        ("get", "/products/{product_id}", 200, {"ETag"}),
        ("put", "/products/{product_id}", 200, {"ETag"}),
        ("patch", "/products/{product_id}", 200, {"ETag"}),
        ("get", "/api/bugs/{bug_id}", 200, {"ETag"}),
        ("patch", "/api/bugs/{bug_id}", 200, {"ETag"}),
        ("get", "/products", 429, {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}),
        ("post", "/api/bugs/", 503, {"Retry-After"}),
        ("delete", "/products/{product_id}", 404, {"X-Trace-Id", "RateLimit-Limit"}),
        ("get", "/health", 503, {"X-Trace-Id"}),
    ],
)
def test_response_headers_are_declared(
    spec: dict[str, Any], method: str, path: str, status: int, headers: set[str]
) -> None:
    assert headers <= declared(spec, operations(spec)[(method, path)], status)


def test_probes_declare_no_rate_limit_headers(spec: dict[str, Any]) -> None:
    assert "RateLimit-Limit" not in declared(spec, operations(spec)[("get", "/health/live")], 200)


@pytest.mark.parametrize(
    ("method", "path", "header"),
    [
        ("post", "/products", "Idempotency-Key"),
        ("post", "/api/bugs/", "Idempotency-Key"),
        ("put", "/products/{product_id}", "If-Match"),
        ("patch", "/products/{product_id}", "If-Match"),
        ("patch", "/api/bugs/{bug_id}", "If-Match"),
    ],
)
def test_request_headers_are_parameters(spec: dict[str, Any], method: str, path: str, header: str) -> None:
    parameters = operations(spec)[(method, path)].get("parameters", [])
    assert {"name": header, "in": "header", "required": False}.items() <= next(
        parameter for parameter in parameters if parameter["name"] == header
    ).items()


def test_component_names_are_plain_and_titles_unique(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    titles = [schema.get("title", name) for name, schema in schemas.items()]
    assert len(titles) == len(set(titles)), "a client generator makes one class per title"
    assert [name for name in schemas if "." in name and schemas.get(name.rsplit(".", 1)[1]) == schemas[name]] == []
    assert "Severity" in schemas  # nested enums get their own name


def _sent_contract_headers(app: APIFlask, client: FlaskClient, method: str, path: str, **kwargs: Any) -> Any:
    response = client.open(path, method=method, **kwargs)
    endpoint, _ = app.url_map.bind("localhost").match(path.split("?")[0], method=method)
    operation_id = app.view_functions[endpoint]._spec["operation_id"]  # type: ignore[attr-defined]
    sent = {name for name in CONTRACT_HEADERS if name in response.headers}
    return operation_id, response.status_code, sent


def test_every_header_sent_is_declared_for_its_operation_and_status(
    spec: dict[str, Any], client_with: MakeClient
) -> None:
    """Real responses (rate limits on, so RateLimit-* are sent): nothing the API sends is missing from the spec."""
    client = client_with(rate_limit_enabled=True, rate_limit_write="2/minute")
    app: APIFlask = client.application  # type: ignore[assignment]
    by_id = {operation["operationId"]: operation for operation in operations(spec).values()}
    product = {"name": "Stylo", "price": 1.5, "category": "Papeterie"}
    bug = {"title": "Capteur muet", "severity": "low"}
    calls = [
        ("POST", "/products", {"json": product, "headers": {"Idempotency-Key": "k-1"}}),
        ("POST", "/products", {"json": product, "headers": {"Idempotency-Key": "k-1"}}),  # replayed
        ("GET", "/products?limit=1", {}),
        ("GET", "/products/1", {}),
        ("PATCH", "/products/1", {"json": {"price": 2.0}, "headers": {"If-Match": '"1"'}}),
        ("PUT", "/products/1", {"json": product, "headers": {"If-Match": '"1"'}}),  # 412
        ("GET", "/products/999", {}),
        ("POST", "/api/bugs/", {"json": bug}),
        ("POST", "/api/bugs/", {"json": bug}),
        ("POST", "/api/bugs/", {"json": bug}),  # the route's third write in the minute: 429
        ("GET", "/api/bugs/", {}),
        ("GET", "/health/live", {}),
    ]
    seen = []
    for method, path, kwargs in calls:
        operation_id, status, sent = _sent_contract_headers(app, client, method, path, **kwargs)
        seen.append((operation_id, status))
        assert sent <= declared(spec, by_id[operation_id], status), (operation_id, status, sent)
    assert ("replaceProduct", 412) in seen, seen
    assert ("createBug", 429) in seen, seen

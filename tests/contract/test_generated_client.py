"""The Python client generated from docs/openapi.json, driving the real gunicorn: if the committed spec and the
server disagree (an operationId, a header, a body, an error shape), these calls fail."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from apiflask import APIFlask

from scripts.client import PACKAGE, generate
from tests.conftest import make_key, truncate_all
from tests.support.server import GunicornServer, session_server

pytestmark = pytest.mark.gunicorn


@pytest.fixture(scope="module")
def sqal_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary directory (generated once per module, ~1 s)."""
    root = tmp_path_factory.mktemp("client")
    generate(root / PACKAGE, meta="none")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def server(app: APIFlask, services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """gunicorn with API keys required, as in production."""
    truncate_all(app)
    with session_server(services, tmp_path_factory.mktemp("gunicorn"), AUTH_MODE="apikey") as running:
        yield running


@pytest.fixture(scope="module")
def writer(app: APIFlask) -> str:
    return make_key(app, "products:write", "bugs:write")[1]


def client_for(sqal_client: ModuleType, server: GunicornServer, key: str | None) -> Any:
    if key is None:
        return sqal_client.Client(base_url=server.base_url)
    return sqal_client.AuthenticatedClient(base_url=server.base_url, token=key)


def test_create_then_list_page_by_page(sqal_client: ModuleType, server: GunicornServer, writer: str) -> None:
    with client_for(sqal_client, server, writer) as client:
        _create_then_list(client)


def _create_then_list(client: Any) -> None:
    from sqal_client.api.products import create_product, get_product, list_products
    from sqal_client.models import ProductIn, ProductOut

    created = []
    for index in range(5):
        body = ProductIn(name=f"Bloc {index}", price=10.0 + index, category="client-paging")
        response = create_product.sync_detailed(client=client, body=body)
        assert response.status_code == 201, response.content
        assert isinstance(response.parsed, ProductOut)
        assert response.headers["Location"] == f"/products/{response.parsed.id}"
        assert response.headers["ETag"] == '"1"'
        created.append(response.parsed.id)

    seen: list[int] = []
    offset = 0
    while True:
        page = list_products.sync_detailed(client=client, category="client-paging", limit=2, offset=offset)
        assert page.status_code == 200
        assert page.headers["X-Total-Count"] == "5"
        seen += [product.id for product in page.parsed]
        if 'rel="next"' not in page.headers["Link"]:
            break
        offset += 2
    assert seen == created

    one = get_product.sync_detailed(client=client, product_id=created[0])
    assert (one.parsed.name, one.parsed.version, one.headers["ETag"]) == ("Bloc 0", 1, '"1"')
    assert one.headers["X-Trace-Id"]


def test_error_envelope_is_parsed(sqal_client: ModuleType, server: GunicornServer, writer: str) -> None:
    with client_for(sqal_client, server, writer) as client:
        _errors(client)


def _errors(client: Any) -> None:
    from sqal_client.api.products import create_product, get_product, update_product
    from sqal_client.models import HTTPError, ProductIn, ProductPatch, ValidationError

    missing = get_product.sync_detailed(client=client, product_id=987654)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, HTTPError)
    assert missing.parsed.error.code == "not_found"
    assert missing.parsed.error.details == {"id": 987654}

    invalid = create_product.sync_detailed(client=client, body=ProductIn(name="Stylo", price=-1.0, category="x"))
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, ValidationError)
    assert [(item.location, item.field) for item in invalid.parsed.error.details] == [("json", "price")]

    product = create_product.sync_detailed(client=client, body=ProductIn(name="Stylo", price=1.0, category="x"))
    stale = update_product.sync_detailed(
        client=client, product_id=product.parsed.id, body=ProductPatch(price=2.0), if_match='"0"'
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, HTTPError)
    assert stale.parsed.error.code == "precondition_failed"
    fresh = update_product.sync_detailed(
        client=client, product_id=product.parsed.id, body=ProductPatch(price=2.0), if_match=product.headers["ETag"]
    )
    assert (fresh.status_code, fresh.parsed.price, fresh.headers["ETag"]) == (200, 2.0, '"2"')


def test_authentication(sqal_client: ModuleType, server: GunicornServer, app: APIFlask) -> None:
    from sqal_client.api.bugs import create_bug
    from sqal_client.models import BugCreate, BugOut, HTTPError, Severity

    body = BugCreate(title="Capteur muet", severity=Severity.HIGH)
    with client_for(sqal_client, server, None) as client:
        anonymous = create_bug.sync_detailed(client=client, body=body)
    assert anonymous.status_code == 401
    assert isinstance(anonymous.parsed, HTTPError)
    assert anonymous.parsed.error.code == "unauthorized"

    with client_for(sqal_client, server, make_key(app, "read")[1]) as client:
        reader = create_bug.sync_detailed(client=client, body=body)
    assert reader.status_code == 403
    assert reader.parsed.error.code == "forbidden"

    with client_for(sqal_client, server, make_key(app, "bugs:write")[1]) as client:
        first = create_bug.sync_detailed(client=client, body=body, idempotency_key="client-retry-1")
        again = create_bug.sync_detailed(client=client, body=body, idempotency_key="client-retry-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert isinstance(again.parsed, BugOut)
    assert again.parsed.id == first.parsed.id
    assert again.headers["Idempotency-Replayed"] == "true"

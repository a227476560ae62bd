"""/docs works offline: Swagger UI assets are served from this app, and the page carries a strict CSP."""

from __future__ import annotations

import re

import requests
from flask.testing import FlaskClient

from backend.core import docs
from tests.support.browser import Browser
from tests.support.server import GunicornServer


def test_docs_page_loads_only_local_assets_under_a_hash_based_csp(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    assert external == []
    policy = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "'unsafe-eval'" not in policy
    assert policy == docs.content_security_policy(page.get_data())
    assert policy.count("'sha256-") == html.count("<script>")
    for name in docs.ASSETS.values():
        with client.get(f"/docs/assets/{name}") as asset:  # a file response: close it
            assert asset.status_code == 200, name
            assert (asset.content_length or 0) > 0


def test_only_the_named_assets_are_served(client: FlaskClient) -> None:
    for name in ("index.html", "swagger-editor-bundle.js", "LICENSE", "..%2F__init__.py"):
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
        assert response.get_json()["error"]["code"] == "not_found"


def test_other_pages_do_not_get_the_docs_policy(client: FlaskClient) -> None:
    assert "Content-Security-Policy" not in client.get("/health").headers


def test_swagger_ui_renders_every_operation_in_chromium(gunicorn: GunicornServer, browser: Browser) -> None:
    operations = sum(
        1
        for path in requests.get(gunicorn.url("/openapi.json"), timeout=5).json()["paths"].values()
        for method in path
        if method in {"get", "post", "put", "patch", "delete"}
    )
    browser.navigate(gunicorn.url("/docs"))
    rendered = browser.wait_for(
        f"document.querySelectorAll('.opblock').length >= {operations} && document.querySelectorAll('.opblock').length"
    )
    assert rendered == operations
    assert browser.errors == []  # no CSP violation, no blocked asset, no script error

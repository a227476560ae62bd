"""The real gunicorn with 2 workers serves the API over HTTP."""

from __future__ import annotations

import requests

from tests.support.server import GunicornServer


def test_crud_over_http_on_two_workers(gunicorn: GunicornServer) -> None:
    created = requests.post(
        gunicorn.url("/products"), json={"name": "Lobe", "price": 30.5, "category": "Cru"}, timeout=5
    )
    assert created.status_code == 201
    location = created.headers["Location"]
    product_id = created.json()["id"]
    # Many requests so both workers serve some; every one sees the committed row.
    for _ in range(20):
        response = requests.get(gunicorn.url(location), timeout=5)
        assert response.status_code == 200
        assert response.json()["id"] == product_id
    patched = requests.patch(gunicorn.url(location), json={"price": 31}, timeout=5)
    assert patched.json()["price"] == 31.0
    assert requests.delete(gunicorn.url(location), timeout=5).status_code == 204
    assert requests.get(gunicorn.url(location), timeout=5).status_code == 404
    assert requests.get(gunicorn.url("/health"), timeout=5).json()["status"] == "UP"
    assert requests.get(gunicorn.url("/openapi.json"), timeout=5).json()["openapi"].startswith("3.1")
    assert requests.get(gunicorn.url("/docs"), timeout=5).status_code == 200


def test_slow_request_completes_on_sigterm(gunicorn: GunicornServer) -> None:
    import threading
    import time

    result: dict[str, int] = {}

    def call() -> None:
        result["status"] = requests.get(gunicorn.url("/slow?delay=2"), timeout=10).status_code

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    assert gunicorn.stop() == 0
    thread.join()
    assert result["status"] == 200

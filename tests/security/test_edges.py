"""The edges, in process: trusted proxies decide the client address (rate limits, logs), and /metrics and the probes'
details are only for the operations side. Over the real gunicorn and nginx: tests/security/test_edges_nginx.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from apiflask import APIFlask
from flask.testing import FlaskClient

from backend.base.config import Settings
from scripts.devservices import free_port
from tests.conftest import built_apps
from tests.support.server import GunicornServer

PROXY = "10.20.0.7"
TOKEN = "ops-" + "x" * 28


@pytest.fixture
def make_app(settings: Settings, app: APIFlask) -> Iterator[Callable[..., APIFlask]]:
    """Apps on the session database (migrated by `app`) with overrides; disposed after the test."""
    with built_apps(database_url=settings.database_url, redis_url=settings.redis_url, app_env="test") as build:
        yield build


def client_address() -> str:
    """An address (IPv6 documentation range) no other test or earlier run sharing the Redis rate-limit keys uses."""
    suffix = uuid.uuid4().hex
    return "2001:db8:" + ":".join(suffix[i : i + 4] for i in range(0, 24, 4))


def get(client: FlaskClient, peer: str, forwarded_for: str | None = None, path: str = "/products") -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code


def limited(**overrides: Any) -> dict[str, Any]:
    return {"rate_limit_enabled": True, "rate_limit_read": "2/minute", **overrides}


def test_by_default_a_forged_x_forwarded_for_changes_nothing(make_app: Callable[..., APIFlask]) -> None:
    peer = client_address()
    with make_app(**limited()).test_client() as client:
        statuses = [get(client, peer, forwarded_for=client_address()) for _ in range(3)]
    assert statuses == [200, 200, 429], "each forged address must not get its own bucket"


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(make_app: Callable[..., APIFlask]) -> None:
    first, second = client_address(), client_address()
    app = make_app(**limited(forwarded_allow_ips=("10.20.0.0/16",)))
    with app.test_client() as client:
        assert [get(client, PROXY, first) for _ in range(3)] == [200, 200, 429]
        assert get(client, PROXY, second) == 200, "another client behind the same proxy shares no bucket"
        # What the client wrote before the proxy's own entry is not believed (one trusted hop).
        assert get(client, PROXY, f"{second}, {first}") == 429
        assert get(client, PROXY, f"{client_address()}, {first}") == 429


def test_an_untrusted_peer_is_keyed_on_its_own_address(make_app: Callable[..., APIFlask]) -> None:
    peer = client_address()
    app = make_app(**limited(forwarded_allow_ips=("10.20.0.0/16",)))
    with app.test_client() as client:
        assert [get(client, peer, client_address()) for _ in range(3)] == [200, 200, 429]


def test_two_trusted_hops_read_the_second_address_from_the_right(make_app: Callable[..., APIFlask]) -> None:
    real = client_address()
    app = make_app(**limited(forwarded_allow_ips=(PROXY + "/32",), proxy_trusted_hops=2))
    with app.test_client() as client:
        assert [get(client, PROXY, f"{client_address()}, {real}, 10.30.0.1") for _ in range(3)] == [200, 200, 429]


def test_logs_and_the_app_see_the_real_client_and_never_the_headers(
    make_app: Callable[..., APIFlask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(forwarded_allow_ips=("10.20.0.0/16",))
    seen: dict[str, Any] = {}

    @app.get("/_test/peer")
    def peer_view() -> dict[str, Any]:
        from flask import request

        seen.update(addr=request.remote_addr, scheme=request.scheme, forwarded=request.headers.get("X-Forwarded-For"))
        return {}

    caplog.set_level(logging.INFO, logger="backend.access")
    with app.test_client() as client:
        client.get("/_test/peer", headers={"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"},
                   environ_base={"REMOTE_ADDR": PROXY})  # fmt: skip
        assert seen == {"addr": "198.51.100.9", "scheme": "https", "forwarded": None}
        client.get("/_test/peer", headers={"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"},
                   environ_base={"REMOTE_ADDR": "192.0.2.44"})  # fmt: skip
        assert seen == {"addr": "192.0.2.44", "scheme": "http", "forwarded": None}
    logged = [r.remote_addr for r in caplog.records if getattr(r, "path", None) == "/_test/peer"]  # type: ignore[attr-defined]
    assert logged == ["198.51.100.9", "192.0.2.44"]


# --- operations side ------------------------------------------------------------------------------------------


def ready(client: FlaskClient, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = client.get("/health/ready", **kwargs)
    return response.status_code, response.get_json()


def test_with_an_operations_port_metrics_and_details_leave_the_api_port(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(ops_port=9464)
    with app.test_client() as client:
        assert client.get("/metrics").status_code == 404
        status, body = ready(client)
        assert status == 200
        assert set(body) == {"status", "timestamp"}
        assert set(client.get("/health/startup").get_json()) == {"status", "timestamp"}
        assert client.get("/products").status_code == 200

    with app.test_client() as ops:
        ops_url = {"base_url": "http://localhost:9464"}
        scraped = ops.get("/metrics", **ops_url)
        assert scraped.status_code == 200
        assert b"http_requests_total" in scraped.data
        status, body = ready(ops, **ops_url)
        assert status == 200
        assert body["checks"]["database"]["status"] == "up"
        assert ops.get("/products", **ops_url).status_code == 404, "the operations port serves no API"
        assert ops.get("/health/live", **ops_url).status_code == 200


def test_a_metrics_token_opens_metrics_and_details_on_the_api_port(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(metrics_token=TOKEN)
    with app.test_client() as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.get_json()["error"]["code"] == "unauthorized"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert "checks" not in ready(client)[1]
        assert "checks" in ready(client, headers={"Authorization": f"Bearer {TOKEN}"})[1]


def test_production_without_an_operations_side_publishes_nothing(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(app_env="production", auth_mode="apikey")
    with app.test_client() as client:
        assert client.get("/metrics").status_code == 404
        assert set(ready(client)[1]) == {"status", "timestamp"}


def test_development_without_an_operations_side_keeps_one_port(make_app: Callable[..., APIFlask]) -> None:
    with make_app().test_client() as client:
        assert client.get("/metrics").status_code == 200
        assert "checks" in ready(client)[1]


@pytest.mark.gunicorn
def test_gunicorn_serves_the_operations_side_on_a_second_listener(
    app: APIFlask, server_env: dict[str, str], tmp_path: Path
) -> None:
    ops_port = free_port()
    env = {**server_env, "APP_ENV": "production", "OPS_PORT": str(ops_port)}
    with GunicornServer(env, tmp_path, workers=1) as server:
        ops = f"http://127.0.0.1:{ops_port}"
        assert requests.get(server.url("/metrics"), timeout=10).status_code == 404
        public = requests.get(server.url("/health/ready"), timeout=10)
        assert public.status_code == 200
        assert set(public.json()) == {"status", "timestamp"}
        scraped = requests.get(ops + "/metrics", timeout=10)
        assert scraped.status_code == 200
        assert "http_requests_total" in scraped.text
        assert requests.get(ops + "/health/ready", timeout=10).json()["checks"]["database"]["status"] == "up"
        for path in ("/products", "/ws/sensors/", "/docs"):
            assert requests.get(ops + path, timeout=10).status_code == 404, path


def test_trust_is_decided_on_the_peer_address_only() -> None:
    from backend.core.proxy import TrustedProxies

    proxies = TrustedProxies(lambda environ, start_response: [], ["10.20.0.0/16", "fd00::/8"], 1)
    assert proxies.is_trusted(PROXY)
    assert proxies.is_trusted("::ffff:10.20.0.7"), "a dual-stack listener's view of an IPv4 proxy"
    assert proxies.is_trusted("fd00::1")
    assert not proxies.is_trusted("10.21.0.7")
    assert not proxies.is_trusted("unix-socket")
    assert not proxies.is_trusted("")

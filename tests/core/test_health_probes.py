"""Kubernetes probes and the startup banner: readiness lists each check with its latency, degrades or fails on
Redis as configured, turns 503 on shutdown; liveness calls nothing; startup latches once the schema is at head."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from apiflask import APIFlask

from backend import create_app
from backend.base.config import ConfigError, Settings
from backend.extensions import shutdown
from scripts.devservices import free_port


def test_ready_lists_every_check_with_latency(make_app: Callable[..., APIFlask]) -> None:
    app = make_app()
    with app.test_client() as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "UP"
    checks = body["checks"]
    assert set(checks) == {"database", "migrations", "redis", "shutdown"}
    assert all(checks[name]["status"] == "up" for name in checks)
    assert all(checks[name]["latency_ms"] >= 0 for name in ("database", "migrations", "redis"))
    assert checks["redis"]["required"] is False


@pytest.mark.parametrize(("required", "status", "code"), [(False, "DEGRADED", 200), (True, "DOWN", 503)])
def test_unreachable_redis_degrades_or_fails_readiness(
    make_app: Callable[..., APIFlask], required: bool, status: str, code: int
) -> None:
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_required=required)
    with app.test_client() as client:
        response = client.get("/health/ready")
        assert (response.status_code, response.get_json()["status"]) == (code, status)
        assert response.get_json()["checks"]["redis"]["status"] == "down"
        assert client.get("/products/1").status_code == 200  # the cache fails open meanwhile


def test_required_redis_without_url_stops_startup(make_app: Callable[..., APIFlask]) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        make_app(redis_url="", redis_required=True)


def test_live_calls_no_dependency() -> None:
    dead = free_port()
    settings = Settings.from_env(
        {}, app_env="test", database_url=f"postgresql://x@127.0.0.1:{dead}/x", redis_url=f"redis://127.0.0.1:{dead}/0"
    )
    app = create_app(settings)
    with app.test_client() as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/startup").status_code == 503
        assert client.get("/health").get_json()["database"] == "disconnected"


def test_startup_latches_after_the_schema_is_at_head(
    make_app: Callable[..., APIFlask], statements: Callable[[APIFlask], list[str]]
) -> None:
    app = make_app()
    seen = statements(app)
    with app.test_client() as client:
        first = client.get("/health/startup")
        assert first.status_code == 200
        assert first.get_json()["checks"]["migrations"]["status"] == "up"
        queries = len(seen)
        assert client.get("/health/startup").status_code == 200
    assert len(seen) == queries  # no database call once started


def test_startup_banner_lists_dependencies(make_app: Callable[..., APIFlask], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="backend.core.health"):
        make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    banner = next(record for record in caplog.records if getattr(record, "event", "") == "startup_dependencies")
    dependencies = banner.dependencies  # type: ignore[attr-defined]
    assert dependencies["postgresql"]["status"] == "up"
    assert dependencies["migrations"]["status"] == "up"
    assert dependencies["redis"] == {**dependencies["redis"], "status": "down", "required": False}
    assert banner.levelno == logging.WARNING
    assert "redis" in banner.getMessage()


def test_shutdown_sequence_drains_then_refuses(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(shutdown_drain_delay=0.3, shutdown_timeout=10)
    handed_over: list[float] = []
    # buffered: the test client closes each response at once, as a server does (in-flight accounting).
    with app.test_client() as client:
        assert shutdown.of(app).begin(lambda: handed_over.append(time.monotonic()))
        assert not shutdown.of(app).begin()  # once
        ready = client.get("/health/ready", buffered=True)
        assert ready.status_code == 503
        assert ready.get_json()["checks"] == {"shutdown": {"status": "down", "phase": "draining"}}
        assert client.get("/products/1", buffered=True).status_code == 200  # still served while the balancer catches up
        time.sleep(0.5)
        refused = client.get("/products/1", buffered=True)
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "service_unavailable"
        assert refused.headers["Connection"] == "close"
        assert client.get("/health/live", buffered=True).status_code == 200
        coordinator = shutdown.of(app)
        assert coordinator.thread is not None
        coordinator.thread.join(5)
    assert len(handed_over) == 1

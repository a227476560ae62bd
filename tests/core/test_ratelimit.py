"""Rate limits: reads and writes budgeted apart, 429 in the error format with Retry-After and RateLimit-* headers,
probes and /metrics exempt, `hit()` on the same storage, and fail-open when Redis is killed."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from apiflask import APIFlask
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff

from backend.extensions import rate_limits, redis_client
from scripts.devservices import EmbeddedRedis


def exceeded(scope: str) -> float:
    return REGISTRY.get_sample_value("rate_limit_exceeded_total", {"scope": scope}) or 0.0


def test_reads_are_limited_per_client_with_headers_then_429(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(rate_limit_read="3/minute", rate_limit_write="2/minute")
    reads, writes = exceeded("http_read"), exceeded("http_write")
    with app.test_client() as client:
        allowed = [client.get("/products/1") for _ in range(3)]
        assert [r.status_code for r in allowed] == [200, 200, 200]
        assert [r.headers["RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
        assert {r.headers["RateLimit-Limit"] for r in allowed} == {"3"}
        assert all(0 <= int(r.headers["RateLimit-Reset"]) <= 60 for r in allowed)
        assert all("Retry-After" not in r.headers for r in allowed)

        refused = client.get("/products/1")
        assert refused.status_code == 429
        assert refused.mimetype == "application/json"
        error = refused.get_json()["error"]
        assert error["code"] == "rate_limited"
        assert error["details"] == {"limit": "3 per 1 minute"}
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["RateLimit-Remaining"] == "0"

        # Other budgets are independent: another route, and writes.
        assert client.get("/products").status_code == 200
        assert client.patch("/products/1", json={"price": 1}).status_code == 200
        assert client.patch("/products/1", json={"price": 2}).status_code == 200
        assert client.patch("/products/1", json={"price": 3}).status_code == 429
    assert (exceeded("http_read") - reads, exceeded("http_write") - writes) == (1, 1)


def test_probes_and_metrics_are_exempt(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(rate_limit_read="1/minute")
    with app.test_client() as client:
        for path in ("/health", "/health/live", "/health/ready", "/health/startup", "/metrics"):
            statuses = {client.get(path).status_code for _ in range(5)}
            assert statuses == {200}, path
            assert "RateLimit-Limit" not in client.get(path).headers


def test_limits_are_shared_by_instances_through_redis(make_app: Callable[..., APIFlask]) -> None:
    first, second = make_app(rate_limit_read="4/minute"), make_app(rate_limit_read="4/minute")
    with first.test_client() as one, second.test_client() as two:
        assert [one.get("/products/2").status_code for _ in range(2)] == [200, 200]
        assert [two.get("/products/2").status_code for _ in range(3)] == [200, 200, 429]


def test_redis_killed_limits_fail_open(make_app: Callable[..., APIFlask], running_redis: EmbeddedRedis) -> None:
    app = make_app(rate_limit_read="1000/minute")
    with app.test_client() as client:
        assert client.get("/products/3").status_code == 200
        running_redis.kill()
        started = time.perf_counter()
        statuses = [client.get("/products/3").status_code for _ in range(20)]
        assert statuses == [200] * 20
        assert time.perf_counter() - started < 5  # no per-request wait on a dead Redis
        running_redis.start()


def test_hit_counts_events_in_the_shared_storage(
    make_app: Callable[..., APIFlask], running_redis: EmbeddedRedis
) -> None:
    app, other = make_app(), make_app()
    refusals = exceeded("ws-device")
    decisions = [rate_limits.of(app).hit("ws-device", "dev-1", "3/minute") for _ in range(2)]
    decisions.append(rate_limits.of(other).hit("ws-device", "dev-1", "3/minute"))  # another worker, same budget
    refused = rate_limits.of(app).hit("ws-device", "dev-1", "3/minute")
    assert [d.allowed for d in decisions] == [True, True, True]
    assert not refused.allowed
    assert 0 < refused.retry_after <= 60
    assert rate_limits.of(app).hit("ws-device", "dev-2", "3/minute").allowed  # per key
    assert exceeded("ws-device") - refusals == 1
    client = redis.Redis.from_url(running_redis.url())
    try:
        assert any(b"ws-device" in key and b"dev-1" in key for key in client.keys("*"))
    finally:
        client.close()

    running_redis.kill()
    started = time.perf_counter()
    # Redis gone: counted in this process's memory, never an exception.
    local = [rate_limits.of(app).hit("ws-device", "dev-3", "3/minute") for _ in range(4)]
    assert [d.allowed for d in local] == [True, True, True, False]
    assert time.perf_counter() - started < 5
    running_redis.start()


def test_disabled_limits_allow_everything(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(rate_limit_enabled=False, rate_limit_read="1/minute")
    with app.test_client() as client:
        assert {client.get("/products/1").status_code for _ in range(3)} == {200}
    assert all(rate_limits.of(app).hit("ws-device", "dev-1", "1/minute").allowed for _ in range(3))


def test_the_app_client_and_the_limiter_storage_fail_fast(make_app: Callable[..., APIFlask]) -> None:
    """Both Redis clients retry once, at once: redis-py's default backoff would hold requests during an outage."""
    app = make_app()
    budgets = rate_limits.of(app)
    clients = {"app": redis_client.of(app).client, "limiter": budgets.limiter.storage.storage}
    for name, client in clients.items():
        assert client is not None, name
        retry = client.connection_pool.connection_kwargs["retry"]
        assert retry.get_retries() == 1, name
        assert isinstance(retry._backoff, NoBackoff), name
        assert client.connection_pool.connection_kwargs["socket_timeout"] == app.config["SETTINGS"].redis_socket_timeout

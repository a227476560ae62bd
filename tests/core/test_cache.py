"""Read-through cache: hits and misses, invalidation on writes (across gunicorn workers), single flight, metrics,
the effect on database load, and fail-open while Redis is killed."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from apiflask import APIFlask
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field

from backend.core.cache_collector import CacheCollector
from backend.extensions import cache
from scripts.devservices import EmbeddedRedis
from tests.core.load import sample, scrape


class Answer(BaseModel):
    answer: int


class Values(BaseModel):
    values: list[int]


class Text(BaseModel):
    text: str


def counter(name: str, namespace: str = "products") -> float:
    return REGISTRY.get_sample_value(name, {"cache": namespace}) or 0.0


def test_second_read_is_a_hit_and_needs_no_query(
    make_app: Callable[..., APIFlask], statements: Callable[[APIFlask], list[str]]
) -> None:
    app = make_app()
    seen = statements(app)
    hits, misses = counter("cache_hits_total"), counter("cache_misses_total")
    with app.test_client() as client:
        first = client.get("/products/3")
        queries_after_first = len(seen)
        second = client.get("/products/3")
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert queries_after_first >= 1
    assert len(seen) == queries_after_first  # the hit touched no table
    assert counter("cache_misses_total") - misses == 1
    assert counter("cache_hits_total") - hits == 1


def test_every_write_invalidates_items_and_lists(make_app: Callable[..., APIFlask]) -> None:
    app = make_app()
    with app.test_client() as client:
        assert client.get("/products/1").get_json()["price"] == 42.5
        total = int(client.get("/products").headers["X-Total-Count"])
        assert client.put("/products/1", json={"name": "A", "price": 1.5, "category": "C"}).status_code == 200
        assert client.get("/products/1").get_json()["price"] == 1.5
        assert client.patch("/products/1", json={"price": 2.5}).status_code == 200
        assert client.get("/products/1").get_json()["price"] == 2.5
        assert client.post("/products", json={"name": "B", "price": 3, "category": "C"}).status_code == 201
        assert int(client.get("/products").headers["X-Total-Count"]) == total + 1
        assert client.delete("/products/1").status_code == 204
        assert client.get("/products/1").status_code == 404
        assert [p["id"] for p in client.get("/products?category=C").get_json()] == [total + 1]


def test_put_then_get_never_returns_the_old_product_across_workers(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory(workers=2, RATE_LIMIT_WRITE="10000/minute", RATE_LIMIT_READ="10000/minute")
    with requests.Session() as writer, requests.Session() as reader:
        for price in range(1, 41):
            response = writer.put(server.url("/products/2"), json={"name": "P", "price": price, "category": "C"})
            assert response.status_code == 200
            # Several fresh connections so both workers answer; none may serve the previous price.
            for _ in range(3):
                got = requests.get(server.url("/products/2"), timeout=5).json()["price"]
                assert got == price
            assert reader.get(server.url("/products?category=C")).json()[0]["price"] == price
    samples = scrape(server.base_url)
    assert sample(samples, "cache_hits_total", cache="products") > 0


def test_concurrent_misses_load_once_per_key(make_app: Callable[..., APIFlask]) -> None:
    """16 threads in each of two apps (two processes' worth of caches) ask for the same cold key at once."""
    apps = [make_app(), make_app()]
    loads: list[int] = []
    barrier = threading.Barrier(32)
    results: list[Any] = []

    def loader() -> dict[str, Any]:
        loads.append(1)
        time.sleep(0.2)
        return {"answer": 42}

    def read(app: APIFlask) -> None:
        with app.app_context():
            barrier.wait()
            results.append(cache.cached_model("dashboard", "cold-key", Answer, loader, ttl=30))

    threads = [threading.Thread(target=read, args=(app,)) for app in apps for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [Answer(answer=42)] * 32
    assert len(loads) == 1


def test_concurrent_misses_load_once_while_redis_is_down(
    make_app: Callable[..., APIFlask], running_redis: EmbeddedRedis
) -> None:
    """The database is spared a stampede even while nothing can be cached."""
    app = make_app()
    running_redis.kill()
    loads: list[int] = []
    barrier = threading.Barrier(16)
    results: list[Any] = []

    def loader() -> dict[str, list[int]]:
        loads.append(1)
        time.sleep(0.3)
        return {"values": [1, 2, 3]}

    def read() -> None:
        with app.app_context():
            barrier.wait()
            results.append(cache.cached_model("dashboard", "while-down", Values, loader, ttl=30))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [Values(values=[1, 2, 3])] * 16
    assert len(loads) == 1


def test_size_expirations_and_evictions_are_measured(make_app: Callable[..., APIFlask]) -> None:
    app = make_app()
    collector = CacheCollector(cache.of(app))

    def series() -> dict[str, float]:
        values = {}
        for metric in collector.collect():
            for item in metric.samples:
                if item.labels["cache"] == "dashboard" and not item.name.endswith("_created"):
                    values[item.name] = item.value
        return values

    with app.app_context():
        cache.cached_model("dashboard", "short", Text, lambda: {"text": "x" * 100}, ttl=1)
        cache.cached_model("dashboard", "long", Text, lambda: {"text": "y" * 50}, ttl=60)
        before = series()
        assert before["cache_size_bytes"] > 150
        time.sleep(1.2)
        after_expiry = series()
        assert after_expiry["cache_expirations_total"] - before["cache_expirations_total"] == 1
        assert after_expiry["cache_size_bytes"] < before["cache_size_bytes"]
        cache.invalidate("dashboard")
        after_write = series()
        assert after_write["cache_evictions_total"] - before["cache_evictions_total"] == 1
        assert after_write["cache_size_bytes"] == 0
        assert series()["cache_evictions_total"] == after_write["cache_evictions_total"]  # counted once


def test_hot_reads_cut_database_queries_by_70_percent(
    make_app: Callable[..., APIFlask], statements: Callable[[APIFlask], list[str]]
) -> None:
    """The same hot-read workload (items and list pages, a write now and then) with the cache off and on."""
    rng = random.Random(8)
    paths = [f"/products/{rng.randint(1, 10)}" if rng.random() < 0.8 else "/products?limit=5" for _ in range(300)]
    per_request: dict[bool, float] = {}
    for enabled in (False, True):
        app = make_app(cache_enabled=enabled, rate_limit_enabled=False)
        seen = statements(app)
        with app.test_client() as client:
            for number, path in enumerate(paths):
                if number % 100 == 99:
                    client.patch("/products/5", json={"price": number})
                    continue
                assert client.get(path).status_code == 200
        per_request[enabled] = len(seen) / len(paths)
    reduction = 1 - per_request[True] / per_request[False]
    assert reduction >= 0.70, per_request


def test_redis_killed_reads_fail_open_and_recover(
    make_app: Callable[..., APIFlask], running_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(breaker_fail_max=3, breaker_reset_timeout=0.5)
    with app.test_client() as client:
        expected = client.get("/products/4").get_json()
        running_redis.kill()
        with caplog.at_level(logging.WARNING, logger="backend.core.cache"):
            responses = [client.get("/products/4") for _ in range(30)]
        assert {response.status_code for response in responses} == {200}
        assert all(response.get_json() == expected for response in responses)
        degraded = [record for record in caplog.records if getattr(record, "event", "") == "cache_degraded"]
        assert len(degraded) == 1  # at most one warning a minute
        # A write while Redis is down is not lost: this process bypasses the cache until the bump reaches Redis.
        assert client.patch("/products/4", json={"price": 99.0}).status_code == 200
        running_redis.start()
        time.sleep(0.6)  # breaker reset timeout: the next call is the trial
        hits = counter("cache_hits_total")
        reads = [client.get("/products/4").get_json()["price"] for _ in range(5)]
        assert reads == [99.0] * 5
        assert counter("cache_hits_total") - hits >= 3


def test_each_domain_registers_its_namespace_with_its_ttl(make_app: Callable[..., APIFlask]) -> None:
    app = make_app(cache_ttl_products=11, cache_ttl_bugs=12, cache_ttl_dashboard=3)
    registered = cache.of(app)
    assert registered.ttls == {"products": 11, "bugs": 12, "dashboard": 3}
    with app.app_context(), pytest.raises(ValueError, match="no TTL"):
        cache.cached_model("unregistered", "k", Text, lambda: {"text": "t"})


class Stamped(BaseModel):
    at: datetime
    score: float = Field(alias="scoreValue")


def test_a_hit_and_a_miss_are_the_schema_s_serialisation(make_app: Callable[..., APIFlask]) -> None:
    """The entry is what the schema serialises (by alias, no extra field); a hit and a miss validate the same JSON."""
    app = make_app()
    loads: list[int] = []

    def loader() -> dict[str, Any]:
        loads.append(1)
        return {"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "scoreValue": 7, "internal": "not for the wire"}

    store = cache.of(app)
    with app.app_context():
        models = [cache.cached_model("dashboard", "stamped", Stamped, loader, ttl=30) for _ in range(2)]
    pattern = store.entry_key("dashboard", "*", "stamped")
    stored = store.call_redis(lambda client: [client.get(key) for key in client.scan_iter(match=pattern)])
    assert len(loads) == 1
    assert stored == [b'{"at":"2026-01-02T03:04:05Z","scoreValue":7.0}']
    assert models == [Stamped.model_validate_json(stored[0])] * 2

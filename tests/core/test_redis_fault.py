"""Redis killed under a steady load: no request fails (reads come from PostgreSQL meanwhile), and once Redis is
back the cache fills again and the hit ratio recovers, with no restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scripts.devservices import EmbeddedRedis
from tests.core.load import SteadyLoad, sample, scrape

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def hit_ratio(before: Samples, after: Samples) -> float:
    """Share of product lookups answered from Redis between two scrapes."""
    hits = sample(after, "cache_hits_total", cache="products") - sample(before, "cache_hits_total", cache="products")
    misses = sample(after, "cache_misses_total", cache="products") - sample(
        before, "cache_misses_total", cache="products"
    )
    return hits / (hits + misses) if hits + misses else 0.0


def test_redis_killed_under_load_then_restarted(
    server_factory: Callable[..., Any], running_redis: EmbeddedRedis
) -> None:
    server = server_factory(workers=2, RATE_LIMIT_READ="100000/minute", BREAKER_FAIL_MAX="3", BREAKER_RESET_TIMEOUT="1")
    with SteadyLoad(lambda n: server.url(f"/products/{n % 10 + 1}"), rate=100, threads=8) as load:
        time.sleep(1.0)
        warm = scrape(server.base_url)
        time.sleep(1.5)
        before_kill = scrape(server.base_url)
        running_redis.kill()
        time.sleep(3.0)
        during_outage = scrape(server.base_url)
        running_redis.start()
        time.sleep(3.0)  # breaker reset timeout, then the cache refills
        recovered = scrape(server.base_url)
        time.sleep(2.0)
        end = scrape(server.base_url)
    assert load.count() >= 900
    assert load.failures() == []
    assert hit_ratio(warm, before_kill) > 0.9
    assert hit_ratio(before_kill, during_outage) < 0.2
    assert hit_ratio(recovered, end) > 0.9
    assert sample(end, "circuit_breaker_state", name="redis") == 0

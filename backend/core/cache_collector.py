"""Scrape-time cache series read from Redis: `cache_size_bytes`, `cache_expirations_total`, `cache_evictions_total`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol

import redis
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backend.observability.collectors import StoreCollector

INDEX_SCAN_LIMIT = 5000


class IndexedCache(Protocol):
    """What the collector reads of `backend.core.cache.RedisCache` (a protocol: cache.py imports this module)."""

    enabled: bool

    def namespaces(self) -> list[str]: ...
    def version_key(self, name: str) -> str: ...
    def index_key(self, name: str) -> str: ...
    def stats_key(self) -> str: ...
    def entry_key(self, name: str, version: str, key: str) -> str: ...
    def call_redis(self, fn: Callable[[redis.Redis], Any]) -> Any: ...


class CacheCollector(StoreCollector):
    """Scrape-time series from Redis: live bytes per namespace; expired and evicted entries, counted once.

    Each stored entry is listed in a per-namespace sorted set scored by its expiry. A listed entry that is gone was
    expired if its expiry has passed, evicted otherwise; a still-present entry of an old version is deleted and
    counted as evicted. Counts are kept in Redis, so they are shared by every worker that answers a scrape.
    """

    def __init__(self, cache: IndexedCache) -> None:
        super().__init__(ttl=0.0)  # every scrape sweeps: the counts live in Redis, shared by the workers
        self.cache = cache

    def families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily("cache_size_bytes", "Bytes of the live entries of each cache", labels=["cache"]),
            CounterMetricFamily("cache_expirations", "Entries gone after their TTL", labels=["cache"]),
            CounterMetricFamily(
                "cache_evictions", "Entries removed before their TTL (invalidated or evicted)", labels=["cache"]
            ),
        )

    def compute(self) -> Iterable[Metric]:
        if not self.cache.enabled:
            return []
        size, expirations, evictions = self.families()
        for name in self.cache.namespaces():
            size.add_metric([name], self.cache.call_redis(partial(self._sweep, name=name)))
        stats = self.cache.call_redis(lambda client: client.hgetall(self.cache.stats_key()))
        for name in self.cache.namespaces():
            expirations.add_metric([name], int(stats.get(f"{name}:expirations".encode(), 0)))
            evictions.add_metric([name], int(stats.get(f"{name}:evictions".encode(), 0)))
        return [size, expirations, evictions]

    def _sweep(self, client: redis.Redis, *, name: str) -> int:
        cache = self.cache
        now_ms = time.time() * 1000
        members: Any = client.zrange(cache.index_key(name), 0, INDEX_SCAN_LIMIT - 1, withscores=True)
        version: Any = client.get(cache.version_key(name))
        current = (version or b"0").decode()
        current_prefix = cache.entry_key(name, current, "").encode()
        pipe = client.pipeline(transaction=False)
        for member, _ in members:
            pipe.strlen(member)
        sizes: list[int] = pipe.execute() if members else []
        live_bytes, gone, stale = 0, [], []
        for (member, expires_ms), length in zip(members, sizes, strict=True):
            if length == 0:
                gone.append((member, expires_ms <= now_ms + 1000))
            elif member.startswith(current_prefix):
                live_bytes += length
            else:
                stale.append(member)
        pipe = client.pipeline(transaction=False)
        for member, _ in gone:
            pipe.zrem(cache.index_key(name), member)
        for member in stale:
            pipe.unlink(member)
            pipe.zrem(cache.index_key(name), member)
        results = pipe.execute() if gone or stale else []
        # ZREM returns 1 only for the scrape that removed the member: concurrent scrapes count it once.
        expired = sum(results[i] for i, (_, was_due) in enumerate(gone) if was_due)
        evicted = sum(results[i] for i, (_, was_due) in enumerate(gone) if not was_due)
        evicted += sum(results[len(gone) + 2 * i + 1] for i in range(len(stale)))
        if expired or evicted:
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(cache.stats_key(), f"{name}:expirations", expired)
            pipe.hincrby(cache.stats_key(), f"{name}:evictions", evicted)
            pipe.execute()
        return live_bytes

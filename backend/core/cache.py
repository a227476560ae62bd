"""Redis read-through cache of API reads: a TTL per namespace, versioned keys, single flight per key, fail-open.

    from backend.extensions import cache
    cache.register_namespace(app, "orders", ttl=60)                                  # the domain's init_app
    order = cache.cached_model("orders", make_key("item", 42), OrderOut, load_order)  # the route
    cache.invalidate("orders")                                                       # after a write committed

One helper, called where the response schema is known (routes, or a function beside them): `cached_model` stores
what the schema serialises (`load()` validated by it, JSON mode, by alias: the wire form) and returns that JSON
validated by the schema again, on a miss as on a hit, so a cached read and an uncached one are the same model and
serialise to the same bytes. `wire_json` is that serialisation, for a route that sends a body of its own.

Keys are `{prefix}cache:{name}:v{version}:{key}`. `invalidate(name)` increments the namespace's version, so every
entry of the namespace (items and lists alike) stops being read at once, in every worker; old entries expire on
their own. Invalidate *after* the commit: a reader that loaded the old row before it stores it under the old
version, which nobody reads any more.

Single flight: in a process one thread loads a missing key while the others wait for its result; across processes
a `SET NX PX` lock lets one loader fill the entry while the others poll it briefly, then load themselves.

Redis down or its breaker open: values come from the loader, no error reaches the client, a warning is logged at
most once a minute; when Redis answers again (breaker closed) caching resumes. A failed invalidation is retried
before the next cache use, and this process bypasses the namespace until it succeeds.

Metrics (label `cache`): `cache_hits_total`, `cache_misses_total`, `cache_latency_seconds` per request, and at
scrape time from Redis `cache_size_bytes` (live entries), `cache_expirations_total` (entries gone after their TTL)
and `cache_evictions_total` (entries removed before it: invalidated by a write, or evicted by Redis).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis
from flask import Flask
from prometheus_client import Counter, Histogram
from pydantic import BaseModel

from backend.base.extension import AppExtension
from backend.core.cache_collector import CacheCollector
from backend.core.resilience import Breakers, RedisUnavailable, ThrottledWarning, key_prefix
from backend.observability.metrics import register_scrape_collector, zero_series

logger = logging.getLogger(__name__)

FLIGHT_WAIT = 2.0  # how long a thread waits for another thread of its process loading the same key
LOCK_TTL_MS = 5000  # cross-process fill lock (a crashed loader releases it by expiry)
LOCK_WAIT = 0.5  # how long a process polls for another process's fill before loading itself
LOCK_POLL = 0.01
INDEX_GRACE_MS = 120_000  # expired index members kept this long for the scrape to count them
WARN_EVERY = 60.0

M = TypeVar("M", bound=BaseModel)

cache_hits = Counter("cache_hits_total", "Cache lookups answered from Redis", ["cache"])
cache_misses = Counter("cache_misses_total", "Cache lookups answered by the loader (database)", ["cache"])
cache_latency = Histogram(
    "cache_latency_seconds",
    "Redis lookup latency of a cached read (s)",
    ["cache"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

# One round trip: the namespace version, then the entry under that version. The entry key is built in the
# script (fine on a single Redis; a Redis Cluster would need hash tags).
_LOOKUP = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ':' .. ARGV[2])}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def make_key(*parts: str | int | float | bool | None) -> str:
    """A stable cache key from simple values (hashed when long)."""
    raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=True)
    return raw if len(raw) <= 200 else "h:" + hashlib.blake2s(raw.encode()).hexdigest()


def wire_json(schema: type[BaseModel], value: Any) -> str:
    """`value` validated by `schema` (an instance of it as it is), as the compact JSON text it serialises to (by
    alias, non-ASCII as UTF-8)."""
    model = value if type(value) is schema else schema.model_validate(value)
    return model.model_dump_json(by_alias=True)


class Cache(AppExtension["RedisCache"]):
    """The read-through cache extension (`backend.extensions.cache`); each app holds its own `RedisCache`."""

    name = "cache"

    def init_app(self, app: Flask) -> None:
        """Attach the app's cache (no namespace yet) and serve its Redis-side metrics on /metrics."""
        store = self.bind(app, RedisCache(app))
        register_scrape_collector(app, CacheCollector(store))

    def register_namespace(self, app: Flask, name: str, *, ttl: int) -> None:
        """Declare namespace `name` and its TTL (s): each domain registers its own from its `init_app`."""
        self.of(app).ttls[name] = int(ttl)
        for metric in (cache_hits, cache_misses, cache_latency):
            zero_series(metric, (name,))  # a fresh instance shows the namespace's series at 0

    def cached_model(
        self, name: str, key: str, schema: type[M], load: Callable[[], Any], *, ttl: int | None = None
    ) -> M:
        """The `schema` model of `key` in namespace `name`: the stored entry, else `load()` validated by `schema`
        and stored for the namespace TTL (or `ttl` s). Hit or miss, the model is validated from the stored JSON.

        `load` returns what `schema.model_validate` accepts (a dict, an ORM object or row with `from_attributes`);
        its exceptions propagate and nothing is cached.
        """
        payload = self.current.read_through(name, key, partial(_serialise, schema, load), ttl)
        return schema.model_validate_json(payload)

    def invalidate(self, name: str) -> None:
        """Make every entry of namespace `name` stale, in every process. Call after the write has committed."""
        self.current.invalidate(name)

    def clear(self, app: Flask) -> None:
        """Invalidate every namespace (tests that empty tables behind the application's back)."""
        store = self.of(app)
        for name in store.namespaces():
            store.invalidate(name)


def _serialise(schema: type[BaseModel], load: Callable[[], Any]) -> str:
    return wire_json(schema, load())


def _bump_version(version_key: str, client: redis.Redis) -> Any:
    return client.incr(version_key)


@dataclass
class _Flight:
    """One in-process load of a key; the waiting threads read its payload."""

    done: threading.Event = field(default_factory=threading.Event)
    payload: str | bytes | None = None


class RedisCache:
    """The cache of one app (one per process): namespaces, keys, single flight and fail-open."""

    def __init__(self, app: Flask) -> None:
        settings = app.config["SETTINGS"]
        self.app = app
        self.enabled: bool = settings.cache_enabled and bool(settings.redis_url)
        self.prefix = key_prefix(settings) + "cache:"
        self.ttls: dict[str, int] = {}  # namespace → TTL (s), filled by `register_namespace`
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # namespaces whose invalidation has not reached Redis yet
        self._degraded = ThrottledWarning(logger, "cache_degraded", WARN_EVERY)
        self._scripts: dict[str, Any] = {}

    def namespaces(self) -> list[str]:
        return sorted(self.ttls)

    def version_key(self, name: str) -> str:
        return f"{self.prefix}{name}:version"

    def index_key(self, name: str) -> str:
        return f"{self.prefix}{name}:index"

    def stats_key(self) -> str:
        return f"{self.prefix}stats"

    def entry_key(self, name: str, version: str, key: str) -> str:
        return f"{self.prefix}{name}:v{version}:{key}"

    def read_through(self, name: str, key: str, produce: Callable[[], str], ttl: int | None) -> str | bytes:
        """The JSON text of `key` in namespace `name`: the stored entry, else `produce()` stored; see `Cache`."""
        if not self.enabled:
            return produce()
        ttl_s = ttl if ttl is not None else self.ttls.get(name)
        if ttl_s is None:
            raise ValueError(f"cache namespace {name!r} has no TTL: pass ttl= or call register_namespace")
        started = time.perf_counter()
        try:
            version, payload = self._lookup(name, key)
        except RedisUnavailable as exc:
            self._warn_degraded(exc)
            version, payload = None, None
        cache_latency.labels(name).observe(time.perf_counter() - started)
        if payload is not None:
            cache_hits.labels(name).inc()
            return payload
        cache_misses.labels(name).inc()
        if version is None:
            # Redis unavailable: nothing is stored, but still one database load per key at a time in this process.
            return self._single_flight(f"{self.prefix}{name}:local:{key}", produce, produce)
        entry = self.entry_key(name, version, key)
        return self._single_flight(entry, lambda: self._fill(name, entry, produce, ttl_s), produce)

    def _lookup(self, name: str, key: str) -> tuple[str, bytes | None]:
        """(namespace version, entry or None) in one round trip."""
        self._flush_pending()
        if name in self._pending:
            raise RedisUnavailable(f"invalidation of {name} not yet recorded in Redis")
        version, payload = self.call_redis(
            lambda client: self._script(client, "lookup", _LOOKUP)(
                keys=[self.version_key(name)], args=[f"{self.prefix}{name}:v", key]
            )
        )
        return version.decode(), payload

    def _single_flight(
        self, flight_key: str, fill: Callable[[], str | bytes], produce: Callable[[], str]
    ) -> str | bytes:
        """The first thread runs `fill`; the others wait for its payload (or `produce` their own after a while)."""
        with self._lock:
            flight = self._flights.get(flight_key)
            leader = flight is None
            if flight is None:
                flight = self._flights[flight_key] = _Flight()
        if not leader:
            if flight.done.wait(FLIGHT_WAIT) and flight.payload is not None:
                return flight.payload
            return produce()
        try:
            flight.payload = fill()
            return flight.payload
        finally:
            flight.done.set()
            with self._lock:
                self._flights.pop(flight_key, None)

    def _fill(self, name: str, entry: str, produce: Callable[[], str], ttl_s: int) -> str | bytes:
        """Load once across processes: take the fill lock, or wait briefly for the process holding it."""
        lock, token = entry + ":lock", uuid.uuid4().hex
        try:
            locked = self.call_redis(lambda client: client.set(lock, token, nx=True, px=LOCK_TTL_MS))
            if not locked:
                filled = self._poll(entry)
                if filled is not None:
                    return filled
        except RedisUnavailable as exc:
            self._warn_degraded(exc)
            return produce()
        try:
            payload = produce()
            self._store(name, entry, payload, ttl_s)
            return payload
        finally:
            if locked:
                self._quietly(lambda client: self._script(client, "release", _RELEASE)(keys=[lock], args=[token]))

    def _poll(self, entry: str) -> bytes | None:
        deadline = time.monotonic() + LOCK_WAIT
        while time.monotonic() < deadline:
            time.sleep(LOCK_POLL)
            payload: bytes | None = self.call_redis(lambda client: client.get(entry))
            if payload is not None:
                return payload
        return None

    def _store(self, name: str, entry: str, payload: str, ttl_s: int) -> None:
        now_ms = int(time.time() * 1000)
        ttl_ms = ttl_s * 1000

        def store(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.set(entry, payload, px=ttl_ms)
            pipe.zadd(self.index_key(name), {entry: now_ms + ttl_ms})
            pipe.zremrangebyscore(self.index_key(name), "-inf", now_ms - INDEX_GRACE_MS)
            pipe.pexpire(self.index_key(name), ttl_ms + INDEX_GRACE_MS)
            pipe.execute()

        self._quietly(store)

    def invalidate(self, name: str) -> None:
        """Bump the namespace version; on failure remember it and bypass the namespace until it succeeds."""
        if not self.enabled:
            return
        with self._lock:
            self._pending.add(name)
        self._flush_pending()

    def _flush_pending(self) -> None:
        with self._lock:
            pending = sorted(self._pending)
        for name in pending:
            try:
                self.call_redis(partial(_bump_version, self.version_key(name)))
            except RedisUnavailable as exc:
                self._warn_degraded(exc)
                return
            with self._lock:
                self._pending.discard(name)

    def call_redis(self, fn: Callable[[redis.Redis], Any]) -> Any:
        """`fn(client)` through the breaker; any Redis error means unavailable (the cache never fails a request)."""
        try:
            return Breakers.of(self.app).redis_call(fn)
        except redis.RedisError as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _quietly(self, fn: Callable[[redis.Redis], Any]) -> None:
        try:
            self.call_redis(fn)
        except RedisUnavailable as exc:
            self._warn_degraded(exc)

    def _script(self, client: redis.Redis, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = client.register_script(source)
        return script

    def _warn_degraded(self, exc: BaseException) -> None:
        self._degraded.warn("cache unavailable, reading from the database", exc)

"""Rate limits: HTTP routes through flask-limiter, other event budgets (a WebSocket client's frames) through `hit()`,
both on the same storage (the service's Redis), strategy (sliding-window counter, the O(1) approximation of a
token bucket) and key prefix.

HTTP: every route has two per-client budgets, counted per route: RATE_LIMIT_READ for GET/HEAD, RATE_LIMIT_WRITE
for POST/PUT/PATCH/DELETE. Probes (/health...) and /metrics are exempt. Responses carry RateLimit-Limit,
RateLimit-Remaining and RateLimit-Reset (seconds); over budget the answer is 429 JSON with Retry-After.

Redis down: flask-limiter counts in process memory (one warning) and retries Redis with exponential backoff;
`hit()` counts in process memory while the Redis breaker is open. Limits are per process meanwhile, never a 5xx.

The app's limits are the extension object `rate_limits` (backend.extensions): `rate_limits.hit(...)`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import pybreaker
import redis
from flask import Flask, Response, request
from flask_limiter import Limit, Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter

from backend.base.config import Settings
from backend.base.errors import error_response
from backend.base.extension import AppExtension
from backend.core import redis as redis_module
from backend.core.resilience import REDIS, Breaker, Breakers, ThrottledWarning, key_prefix

logger = logging.getLogger(__name__)

STRATEGY = "sliding-window-counter"
READ_METHODS = ("GET", "HEAD")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
EXEMPT_PATHS = frozenset({"/health", "/metrics"})
EXEMPT_PREFIX = "/health/"
MIN_RETRY_AFTER = 0.05

rate_limit_exceeded = Counter(
    "rate_limit_exceeded_total",
    "Requests or events refused by a rate limit (http_read, http_write, hit scopes)",
    ["scope"],
)
HTTP_SCOPES = ("http_read", "http_write")


@dataclass(frozen=True)
class Decision:
    """Outcome of `hit`: allowed, else how long to wait (seconds) before the next event is accepted."""

    allowed: bool
    retry_after: float = 0.0


class Budgets:
    """The app's limiter, its strategy on the shared storage, and the in-memory fallback of `hit`."""

    def __init__(self, limiter: Limiter, settings: Settings, prefix: str, breaker: Breaker) -> None:
        self.limiter = limiter
        self.breaker = breaker  # the Redis one
        self.enabled = settings.rate_limit_enabled
        self.shared = bool(settings.redis_url)
        self.prefix = prefix
        self.strategy = SlidingWindowCounterRateLimiter(limiter.storage) if self.enabled else None
        self.fallback = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.degraded = ThrottledWarning(logger, "ratelimit_degraded")

    def decide(self, strategy: SlidingWindowCounterRateLimiter, items: list[RateLimitItem], *keys: str) -> Decision:
        allowed = [strategy.hit(item, self.prefix, *keys) for item in items]
        if all(allowed):
            return Decision(True)
        resets = [
            strategy.get_window_stats(item, self.prefix, *keys).reset_time
            for item, ok in zip(items, allowed, strict=True)
            if not ok
        ]
        return Decision(False, round(max(max(resets) - time.time(), MIN_RETRY_AFTER), 3))

    def hit(self, scope: str, key: str, limit: str) -> Decision:
        """Count one event of `key` in `scope` against `limit` ("100/minute"; several separated by ';').

        Same storage and strategy as the HTTP limits. Always allowed when RATE_LIMIT_ENABLED is off; counted in
        process memory while Redis is unavailable.
        """
        if self.strategy is None:
            return Decision(True)
        items = _parse(limit)
        if not self.shared:
            decision = self.decide(self.strategy, items, scope, key)
        else:
            try:
                decision = self.breaker.call(self.decide, self.strategy, items, scope, key)
            except (pybreaker.CircuitBreakerError, redis.RedisError, StorageError) as exc:
                self.degraded.warn("rate limit storage unavailable, counting in process memory", exc)
                decision = self.decide(self.fallback, items, scope, key)
        if not decision.allowed:
            rate_limit_exceeded.labels(scope).inc()
        return decision


class RateLimits(AppExtension[Budgets]):
    """The app's per-client limits: every HTTP route through flask-limiter, other events with `hit`."""

    name = "ratelimit"

    def init_app(self, app: Flask) -> None:
        """Limit every route per client (reads and writes apart) and answer 429 in the error format."""
        from backend.observability.metrics import zero_series

        zero_series(rate_limit_exceeded, HTTP_SCOPES)  # `hit` scopes are registered by their users
        settings: Settings = app.config["SETTINGS"]
        prefix = key_prefix(settings) + "rl"
        limiter = Limiter(
            get_remote_address,
            default_limits=[
                Limit(settings.rate_limit_read, methods=READ_METHODS),
                Limit(settings.rate_limit_write, methods=WRITE_METHODS),
            ],
            strategy=STRATEGY,
            storage_uri=settings.redis_url or "memory://",
            storage_options=_storage_options(settings),  # type: ignore[arg-type]
            swallow_errors=True,
            in_memory_fallback_enabled=True,
            key_prefix=prefix,
            enabled=settings.rate_limit_enabled,
        )
        limiter.request_filter(_is_exempt)
        limiter.init_app(app)
        budgets = self.bind(app, Budgets(limiter, settings, prefix, Breakers.of(app)[REDIS]))

        if settings.rate_limit_enabled:  # a disabled limiter never sets a current limit: no headers to add

            @app.after_request
            def rate_limit_headers(response: Response) -> Response:
                return _add_headers(budgets.limiter, response)

        app.register_error_handler(RateLimitExceeded, _too_many_requests)

    def hit(self, scope: str, key: str, limit: str) -> Decision:
        """`Budgets.hit` on the current app's budgets."""
        return self.current.hit(scope, key, limit)


@lru_cache(maxsize=64)
def _parse_cached(limit: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit))


def _parse(limit: str) -> list[RateLimitItem]:
    return list(_parse_cached(limit))


def _storage_options(settings: Settings) -> dict[str, object]:
    if not settings.redis_url:
        return {}
    # Fail fast like the app's client: a request must not wait on redis-py's retries for the limiter.
    return redis_module.fail_fast_options(settings)


def _is_exempt() -> bool:
    return request.path in EXEMPT_PATHS or request.path.startswith(EXEMPT_PREFIX)


def _add_headers(limiter: Limiter, response: Response) -> Response:
    """RateLimit-* on every limited response; Retry-After on 429 (seconds until the window frees a slot)."""
    current = limiter.current_limit
    if current is None:
        return response
    try:
        window = current.window
        reset_in = max(0, math.ceil(window.reset_time - time.time()))
        remaining = window.remaining
    except Exception as exc:  # storage gone between the check and now: headers are best effort
        logger.debug("rate limit headers skipped", exc_info=exc)
        return response
    response.headers["RateLimit-Limit"] = str(current.limit.amount)
    response.headers["RateLimit-Remaining"] = str(max(0, remaining))
    response.headers["RateLimit-Reset"] = str(reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, reset_in))
    return response


def _too_many_requests(error: RateLimitExceeded) -> Response:
    rate_limit_exceeded.labels(HTTP_SCOPES[0] if request.method in READ_METHODS else HTTP_SCOPES[1]).inc()
    limit = str(error.limit.limit)
    return error_response(429, "rate_limited", f"Rate limit exceeded: {limit}", {"limit": limit})

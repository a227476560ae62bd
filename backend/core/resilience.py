"""Circuit breakers around PostgreSQL and Redis, exported as `circuit_breaker_state{name}` (0 closed, 1 open,
2 half-open) with every transition logged.

PostgreSQL: the breaker wraps the engine's `do_connect`, the one place every new connection goes through (pool
checkouts after a disconnect, pre-ping reconnects, health checks). After BREAKER_FAIL_MAX failed connects in a
row it opens: connects fail at once with `DependencyUnavailable` (503 JSON + Retry-After) instead of each request
waiting for a connect timeout. After BREAKER_RESET_TIMEOUT one trial connect is let through (half-open); its
success closes the breaker, so recovery needs no restart. Connection-level errors before the breaker opens are
turned into the same 503 (`handle_error`), statement errors are left alone.

Redis: `breakers.redis_call(fn)` runs `fn(client)` through the Redis breaker and raises `RedisUnavailable` when Redis is
not configured, failing or its breaker is open; callers (cache, rate limits) fail open on it.

The app's breakers are the extension object `breakers` (backend.extensions): `breakers[REDIS]`, and
`breakers.of(app).redis_call(fn)` outside an app context.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg2
import pybreaker
import redis
from flask import Flask
from prometheus_client import Gauge
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine, ExceptionContext

from backend.base.config import ConfigError, Settings
from backend.base.errors import ServiceUnavailable
from backend.base.extension import AppExtension
from backend.base.orm import db
from backend.core.redis import LazyClient, RedisClient
from backend.observability.internals import report_fallback

logger = logging.getLogger(__name__)

T = TypeVar("T")

POSTGRESQL = "postgresql"
REDIS = "redis"
STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_OPEN: 1, pybreaker.STATE_HALF_OPEN: 2}

# One series per breaker name: the worst state over the live workers (each worker has its own breakers).
circuit_breaker_state = Gauge(
    "circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open (max over live workers)",
    ["name"],
    multiprocess_mode="livemax",
)


class DependencyUnavailable(ServiceUnavailable):
    """A dependency the request needs is down: 503 with Retry-After."""

    def __init__(self, dependency: str, breaker: Breaker) -> None:
        seconds = max(1, math.ceil(breaker.retry_after()))
        circuit = breaker.current_state
        super().__init__(
            f"{dependency} is unavailable, retry later",
            {"dependency": dependency, "circuit": circuit, "retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )
        self.dependency = dependency


class RedisUnavailable(Exception):
    """Redis is not configured, not answering, or its breaker is open (callers fail open)."""


def lock_free_call_problem() -> str | None:
    """Why `Breaker.call` cannot drive pybreaker's state machine from outside its lock (it uses the private
    `_lock` and `state._handle_success` / `_handle_error`); None when they behave as expected."""
    try:
        probe = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, exclude=[ValueError])
        lock = probe._lock
        with lock:  # _admit holds it while half_open() takes it again
            if not lock.acquire(blocking=False):
                return "_lock is not reentrant"
            lock.release()
            probe.state._handle_error(ValueError("excluded"), reraise=False)
            probe.state._handle_error(OSError("counted"), reraise=False)
            counted = probe.fail_counter
            probe.state._handle_success()
            reset = probe.fail_counter
            probe.state._handle_error(OSError("1"), reraise=False)
            with contextlib.suppress(pybreaker.CircuitBreakerError):
                probe.state._handle_error(OSError("2"), reraise=False)
        if (counted, reset, probe.current_state) != (1, 0, pybreaker.STATE_OPEN):
            return f"state machine answered {(counted, reset, probe.current_state)}, expected (1, 0, 'open')"
    except Exception as exc:  # a renamed attribute, a signature without `reraise`, ...
        return f"{type(exc).__name__}: {exc}"
    return None


@functools.cache
def lock_free_calls() -> bool:
    """The switch: True when `Breaker.call` may run calls outside pybreaker's lock, else (logged once) False and
    `pybreaker.CircuitBreaker.call` is used, which serialises the calls of a breaker."""
    problem = lock_free_call_problem()
    if problem is not None:
        report_fallback("pybreaker", "Breaker lock-free call", "pybreaker.CircuitBreaker.call", problem)
    return problem is None


class Breaker(pybreaker.CircuitBreaker):
    """pybreaker's state machine (failure counter, listeners, half-open trial), the guarded call outside its lock.

    `pybreaker.CircuitBreaker.call` holds one lock for the whole call, which would serialise every connection
    attempt of the process behind a slow one (danielfm/pybreaker#3). Here the lock only covers state changes; while
    half-open a single trial call runs and the other callers fail fast. That drives pybreaker's private state
    methods: `lock_free_calls()` checks them at startup and otherwise falls back to pybreaker's own `call`.
    """

    def __init__(
        self,
        name: str,
        fail_max: int,
        reset_timeout: float,
        is_failure: Callable[[Any], bool],
        lock_free: bool = True,
    ) -> None:
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            name=name,
            exclude=[lambda exc: not is_failure(exc)],
            listeners=[_StateLogger()],
        )
        self._opened_at = 0.0
        self._trial_running = False
        self._lock_free = lock_free and lock_free_calls()  # False (FAST_PATHS without breaker): pybreaker's call
        circuit_breaker_state.labels(name).set(0)

    @property
    def label(self) -> str:
        return self.name or "unnamed"

    def retry_after(self) -> float:
        """Seconds until the next trial call is allowed (0 unless open)."""
        if self.current_state != pybreaker.STATE_OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - time.monotonic())

    def open(self) -> bool:
        self._opened_at = time.monotonic()
        return super().open()

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func` unless the breaker is open; record the outcome. Raises CircuitBreakerError when refused."""
        if not self._lock_free:
            return super().call(func, *args, **kwargs)
        trial = self._admit()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._record(trial, exc)
            raise
        self._record(trial, None)
        return result

    def _admit(self) -> bool:
        """True when this call is the half-open trial; CircuitBreakerError when the call must not run."""
        with self._lock:
            state = self.current_state
            if state == pybreaker.STATE_CLOSED:
                return False
            if state == pybreaker.STATE_OPEN:
                if self.retry_after() > 0:
                    raise pybreaker.CircuitBreakerError(f"{self.label} circuit breaker is open")
                self.half_open()
            if self._trial_running:
                raise pybreaker.CircuitBreakerError(f"{self.label} circuit breaker is half-open, trial running")
            self._trial_running = True
            return True

    def _record(self, trial: bool, exc: BaseException | None) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            state = self.state
            if exc is None:
                state._handle_success()
                return
            # Raised when this failure opens the breaker; the caller still gets the original error.
            with contextlib.suppress(pybreaker.CircuitBreakerError):
                state._handle_error(exc, reraise=False)


class _StateLogger(pybreaker.CircuitBreakerListener):
    """Export and log every state change."""

    def state_change(
        self, cb: pybreaker.CircuitBreaker, old_state: pybreaker.CircuitBreakerState | None, new_state: Any
    ) -> None:
        name = cb.name or "unnamed"
        circuit_breaker_state.labels(name).set(STATE_VALUES.get(new_state.name, 1))
        # One warning when the breaker trips; the failed trials of a long outage (every reset timeout) are INFO.
        tripped = new_state.name == pybreaker.STATE_OPEN and (
            old_state is None or old_state.name == pybreaker.STATE_CLOSED
        )
        level = logging.WARNING if tripped else logging.INFO
        logger.log(
            level,
            "circuit breaker %s %s -> %s",
            name,
            old_state.name if old_state else None,
            new_state.name,
            extra={
                "event": "circuit_breaker_state",
                "breaker": name,
                "from_state": old_state.name if old_state else None,
                "to_state": new_state.name,
                "failures": cb.fail_counter,
                "reset_timeout_s": cb.reset_timeout,
            },
        )


def _is_connection_failure(exc: Any) -> bool:
    return isinstance(exc, psycopg2.OperationalError)


def _is_redis_failure(exc: Any) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def guard_engine(engine: Engine, breaker: Breaker) -> None:
    """Connect through `breaker`; connection-level failures become `DependencyUnavailable` (503)."""

    def connect(dialect: Dialect, conn_rec: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> Any:
        try:
            return breaker.call(dialect.connect, *cargs, **cparams)
        except pybreaker.CircuitBreakerError:
            raise DependencyUnavailable(POSTGRESQL, breaker) from None

    def unavailable(context: ExceptionContext) -> None:
        # A failed pre-ping is followed by a reconnect: let the pool do it.
        if context.is_pre_ping:
            return
        connect_failed = context.connection is None and _is_connection_failure(context.original_exception)
        if context.is_disconnect or connect_failed:
            raise DependencyUnavailable(POSTGRESQL, breaker) from context.sqlalchemy_exception

    event.listen(engine, "do_connect", connect)
    event.listen(engine, "handle_error", unavailable)


class BreakerSet:
    """One app's breakers by name (POSTGRESQL, REDIS), and its Redis calls through the Redis one."""

    def __init__(self, made: dict[str, Breaker], redis_client: LazyClient) -> None:
        self._made = made
        self._redis_client = redis_client

    def __getitem__(self, name: str) -> Breaker:
        return self._made[name]

    def redis_call(self, fn: Callable[[redis.Redis], T]) -> T:
        """`fn(client)` through the Redis breaker. RedisUnavailable when unset, open, or on a connection failure;
        other Redis errors (a bad command) propagate unchanged."""
        client = self._redis_client.client  # fails fast (see `fail_fast_options`)
        if client is None:
            raise RedisUnavailable("REDIS_URL is not set")
        try:
            return self._made[REDIS].call(fn, client)
        except pybreaker.CircuitBreakerError as exc:
            raise RedisUnavailable(str(exc)) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc


class Breakers(AppExtension[BreakerSet]):
    """The app's breakers: `breakers[REDIS]`; `breakers.of(app)` outside an app context."""

    name = "breakers"

    def init_app(self, app: Flask) -> None:
        """Create the breakers (the Redis client bound first) and put the PostgreSQL one in front of every new DB
        connection."""
        settings: Settings = app.config["SETTINGS"]
        if settings.redis_required and not settings.redis_url:
            raise ConfigError("Missing REDIS_URL: REDIS_REQUIRED=true needs a redis:// URL")
        lock_free = "breaker" in settings.fast_paths
        made = {
            name: Breaker(name, settings.breaker_fail_max, settings.breaker_reset_timeout, is_failure, lock_free)
            for name, is_failure in ((POSTGRESQL, _is_connection_failure), (REDIS, _is_redis_failure))
        }
        self.bind(app, BreakerSet(made, RedisClient.of(app)))
        with app.app_context():
            engine = db.engine
        guard_engine(engine, made[POSTGRESQL])

    def __getitem__(self, name: str) -> Breaker:
        """The current app's breaker `name`."""
        return self.current[name]

    def redis_call(self, fn: Callable[[redis.Redis], T]) -> T:
        """`BreakerSet.redis_call` of the current app."""
        return self.current.redis_call(fn)


class ThrottledWarning:
    """A warning logged at most once per `every` seconds (per process): degraded modes must not flood the logs."""

    def __init__(self, log: logging.Logger, event_name: str, every: float = 60.0) -> None:
        self.log = log
        self.event_name = event_name
        self.every = every
        self._last = -math.inf
        self._lock = threading.Lock()

    def warn(self, message: str, error: BaseException) -> bool:
        """Log `message` unless logged less than `every` seconds ago; True when logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every:
                return False
            self._last = now
        self.log.warning(message, extra={"event": self.event_name, "error": f"{type(error).__name__}: {error}"})
        return True


def key_prefix(settings: Settings) -> str:
    """Prefix of every Redis key the service writes: the service name and a digest of its database, so services
    (or test sessions) sharing one Redis never read each other's cache entries or rate-limit counters."""
    parts = urlsplit(settings.database_url)
    where = f"{parts.hostname}:{parts.port}{parts.path}"
    return f"{settings.service_name}:{hashlib.blake2s(where.encode(), digest_size=4).hexdigest()}:"

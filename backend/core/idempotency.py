"""Idempotent creates: a request retried with the same `Idempotency-Key` gets the first response, not a second row.

A create decorated with `idempotent` and sent with the header first *claims* the key (atomically: Redis
`SET NX`, or an `INSERT … ON CONFLICT DO NOTHING` in `idempotency_keys` while Redis is unavailable), runs, then
stores its response (status, body, Location, ETag) for IDEMPOTENCY_TTL seconds. Meanwhile another request with
the key waits for that response (up to WAIT_SECONDS, then 409 `idempotency_in_progress`), so concurrent retries
make one row. The key is scoped to the route and the API key that sent it; the body is fingerprinted: the same
key with another body is 422 (a `validation_error` naming the header). Only successes (2xx) are stored: after an
error the key is released and a retry runs again. A replayed response carries `Idempotency-Replayed: true`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import pybreaker
import redis
from flask import Flask, Response, current_app, g, request
from sqlalchemy import DateTime, Integer, LargeBinary, String, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, mapped_column

from backend.base.errors import Conflict, UnprocessableEntity
from backend.core import contract
from backend.core.resilience import REDIS, Breaker, ThrottledWarning, key_prefix
from backend.extensions import breakers, db, redis_client

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces (a UUID, a ULID...)
STORED_HEADERS = ("Content-Type", "Location", "ETag")
# A claim whose request died (worker killed) blocks its key for this long, not for the whole TTL.
LEASE_SECONDS = 60
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02
# Expired rows of `idempotency_keys` deleted by each claim (the table is only written while Redis is unavailable).
PURGE_BATCH = 100

F = TypeVar("F", bound=Callable[..., Any])


class IdempotencyKey(db.Model):  # type: ignore[name-defined]
    """A claimed key (status_code NULL while its first request runs) and then that request's response."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


@dataclass(frozen=True)
class Stored:
    """What a key holds: the fingerprint of its request and, once it finished, its response."""

    fingerprint: str
    status: int | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class Store(Protocol):
    def claim(self, key: str, fingerprint: str) -> Stored | None:
        """None when this request now owns `key`; otherwise what the key holds."""

    def complete(self, key: str, stored: Stored, ttl: int) -> None: ...

    def release(self, key: str) -> None: ...


class RedisStore:
    """Keys in the service's Redis (the normal case)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def claim(self, key: str, fingerprint: str) -> Stored | None:
        name = self.prefix + key
        if self.client.set(name, json.dumps({"f": fingerprint}), nx=True, ex=LEASE_SECONDS):
            return None
        raw = self.client.get(name)
        if raw is None:  # expired between the two calls
            return self.claim(key, fingerprint)
        value = json.loads(raw)
        if "s" not in value:
            return Stored(value["f"])
        return Stored(value["f"], value["s"], base64.b64decode(value["b"]), _pairs(value["h"]))

    def complete(self, key: str, stored: Stored, ttl: int) -> None:
        body = base64.b64encode(stored.body).decode()
        value = {"f": stored.fingerprint, "s": stored.status, "b": body, "h": list(stored.headers)}
        self.client.set(self.prefix + key, json.dumps(value), ex=ttl)

    def release(self, key: str) -> None:
        self.client.delete(self.prefix + key)


class DatabaseStore:
    """Keys in `idempotency_keys`, while Redis is unavailable. Its own transactions, apart from the request's."""

    def claim(self, key: str, fingerprint: str) -> Stored | None:
        table = IdempotencyKey.__table__
        with db.engine.begin() as connection:
            # This key if it expired, and a batch of other expired keys (nothing else ever deletes them).
            batch = select(table.c.key).where(table.c.expires_at < func.now()).limit(PURGE_BATCH)
            connection.execute(
                delete(table).where(table.c.expires_at < func.now(), or_(table.c.key == key, table.c.key.in_(batch)))
            )
            lease = func.now() + timedelta(seconds=LEASE_SECONDS)
            claimed = connection.execute(
                insert(table)
                .values(key=key, fingerprint=fingerprint, expires_at=lease)
                .on_conflict_do_nothing()
                .returning(table.c.key)
            ).first()
            if claimed is not None:
                return None
            row = connection.execute(
                select(table.c.fingerprint, table.c.status_code, table.c.body, table.c.headers).where(
                    table.c.key == key
                )
            ).first()
        if row is None:  # expired and deleted by another request in between
            return self.claim(key, fingerprint)
        if row.status_code is None:
            return Stored(row.fingerprint)
        return Stored(row.fingerprint, row.status_code, bytes(row.body), _pairs(row.headers))

    def complete(self, key: str, stored: Stored, ttl: int) -> None:
        table = IdempotencyKey.__table__
        with db.engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.key == key)
                .values(
                    status_code=stored.status,
                    body=stored.body,
                    headers=[list(pair) for pair in stored.headers],
                    expires_at=func.now() + timedelta(seconds=ttl),
                )
            )

    def release(self, key: str) -> None:
        table = IdempotencyKey.__table__
        with db.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.key == key, table.c.status_code.is_(None)))


_degraded = ThrottledWarning(logger, "idempotency_degraded")


class _Guarded:
    """The Redis store behind the Redis breaker, falling back to the database store when Redis fails."""

    def __init__(self, primary: RedisStore, breaker: Breaker) -> None:
        self.primary = primary
        self.breaker = breaker
        self.fallback = DatabaseStore()
        self.used: Store = primary

    def claim(self, key: str, fingerprint: str) -> Stored | None:
        try:
            self.used = self.primary
            return self.breaker.call(self.primary.claim, key, fingerprint)
        except (pybreaker.CircuitBreakerError, redis.RedisError) as exc:
            _degraded.warn("idempotency keys stored in PostgreSQL: Redis unavailable", exc)
            self.used = self.fallback
            return self.fallback.claim(key, fingerprint)

    def complete(self, key: str, stored: Stored, ttl: int) -> None:
        self._quietly(self.used.complete, key, stored, ttl)

    def release(self, key: str) -> None:
        self._quietly(self.used.release, key)

    def _quietly(self, action: Callable[..., None], *args: Any) -> None:
        # The create has committed: a store failing now must not turn it into an error. The claim then lapses
        # after LEASE_SECONDS (409 to retries meanwhile).
        try:
            action(*args)
        except Exception as exc:
            _degraded.warn("idempotency key not recorded", exc)


def _store() -> Store:
    """The current app's store: Redis behind its breaker, or the database when REDIS_URL is unset."""
    client = redis_client.client
    if client is None:
        return DatabaseStore()
    return _Guarded(RedisStore(client, key_prefix(current_app.config["SETTINGS"]) + "idem:"), breakers[REDIS])


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _fingerprint() -> str:
    """The request as far as a retry must repeat it: method, path and the JSON body (key order ignored)."""
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _digest(request.method, request.path, canonical)


def _replay(stored: Stored) -> Response:
    response = current_app.response_class(stored.body, status=stored.status)
    for name, value in stored.headers:
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def _pairs(items: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in items)


def _invalid_key(message: str) -> UnprocessableEntity:
    """422 in the validation error shape, naming the header."""
    return UnprocessableEntity(
        "Request validation failed", [{"location": "headers", "field": HEADER, "message": message}]
    )


def _wait_for(store: Store, key: str, fingerprint: str) -> Response | None:
    """The stored response for `key` (after waiting for a request still running), None if this request owns it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        stored = store.claim(key, fingerprint)
        if stored is None:
            return None
        if stored.fingerprint != fingerprint:
            raise _invalid_key("This key was already used with another request body: use a new key per request")
        if stored.status is not None:
            return _replay(stored)
        if time.monotonic() >= deadline:
            raise Conflict(
                "A request with this Idempotency-Key is still running; retry later",
                {"header": HEADER},
                code="idempotency_in_progress",
                headers={"Retry-After": "1"},
            )
        time.sleep(POLL_SECONDS)


def idempotent(view: F) -> F:
    """Make a create idempotent under the Idempotency-Key header (below `require_scope`, above `@bp.input`)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        raw = request.headers.get(HEADER)
        if raw is None:
            return view(*args, **kwargs)
        if not KEY_PATTERN.fullmatch(raw):
            raise _invalid_key("1 to 255 printable ASCII characters without spaces (e.g. a UUID)")
        principal = str(getattr(g, "api_key_id", "anonymous"))
        key = _digest(request.endpoint or "", principal, raw)
        fingerprint = _fingerprint()
        store = _store()
        replay = _wait_for(store, key, fingerprint)
        if replay is not None:
            return replay
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            store.release(key)
            raise
        if 200 <= response.status_code < 300:
            headers = tuple((name, response.headers[name]) for name in STORED_HEADERS if name in response.headers)
            stored = Stored(fingerprint, response.status_code, response.get_data(), headers)
            store.complete(key, stored, current_app.config["SETTINGS"].idempotency_ttl)
        else:
            store.release(key)
        return response

    contract.reads(HEADER)(wrapper)
    contract.sends(201, REPLAYED)(wrapper)
    return wrapper  # type: ignore[return-value]


def clear(app: Flask) -> None:
    """Forget every stored key in Redis (tests that empty tables behind the application's back)."""
    client = redis_client.of(app).client
    if client is not None:
        for name in client.scan_iter(match=key_prefix(app.config["SETTINGS"]) + "idem:*"):
            client.delete(name)

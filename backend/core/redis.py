"""The process-wide Redis client, created lazily from the settings (after gunicorn forks)."""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend.base.config import Settings

_lock = threading.Lock()
EXTENSION_KEY = "redis_client"


def fail_fast_options(settings: Settings) -> dict[str, Any]:
    """Connection options of every client of the service's Redis: short timeouts and one immediate retry (a
    connection that went stale when Redis restarted), no backoff. redis-py's default retries with backoff would
    hold each request for seconds during an outage; the breaker and the callers' fallbacks handle outages instead.
    """
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "retry": Retry(NoBackoff(), 1),
    }


def init_app(app: Flask) -> None:
    """Reserve the slot; the client itself is created on first use so no socket crosses a fork."""
    app.extensions.setdefault(EXTENSION_KEY, None)


def get_client(app: Flask) -> redis.Redis | None:
    """The app's Redis client, or None when REDIS_URL is unset."""
    client: redis.Redis | None = app.extensions.get(EXTENSION_KEY)
    if client is not None:
        return client
    settings = app.config["SETTINGS"]
    if not settings.redis_url:
        return None
    with _lock:
        client = app.extensions.get(EXTENSION_KEY)
        if client is None:
            client = redis.Redis.from_url(settings.redis_url, health_check_interval=30, **fail_fast_options(settings))
            app.extensions[EXTENSION_KEY] = client
    return client

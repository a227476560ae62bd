"""The process-wide Redis client, created lazily from the settings (after gunicorn forks)."""

from __future__ import annotations

import threading

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

_lock = threading.Lock()
EXTENSION_KEY = "redis_client"


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
            client = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_socket_timeout,
                socket_connect_timeout=settings.redis_socket_timeout,
                health_check_interval=30,
                # One quick retry: redis-py's default backoff would hold every request for seconds in an outage.
                retry=Retry(NoBackoff(), 1),
            )
            app.extensions[EXTENSION_KEY] = client
    return client

"""The process-wide Redis client, created lazily from the settings (after gunicorn forks): `redis_client`."""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend.base.config import Settings
from backend.base.extension import AppExtension


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


class LazyClient:
    """One app's Redis client, created on first use so no socket crosses a fork; None when REDIS_URL is unset."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis | None:
        if self._client is not None or not self.settings.redis_url:
            return self._client
        with self._lock:
            if self._client is None:
                options = fail_fast_options(self.settings)
                self._client = redis.Redis.from_url(self.settings.redis_url, health_check_interval=30, **options)
        return self._client

    def disconnect(self) -> None:
        """Close the client's connections (they reopen on next use), e.g. before the process forks."""
        if self._client is not None:
            self._client.connection_pool.disconnect()


class RedisClient(AppExtension[LazyClient]):
    """The app's Redis client: `redis_client.client` (None when REDIS_URL is unset)."""

    name = "redis_client"

    def init_app(self, app: Flask) -> None:
        self.bind(app, LazyClient(app.config["SETTINGS"]))

    @property
    def client(self) -> redis.Redis | None:
        """The current app's client, or None when REDIS_URL is unset."""
        return self.current.client

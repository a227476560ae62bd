"""The cross-worker Redis pub/sub of SQAL: one subscriber loop, shared by the dashboard hub (`sqal:samples`) and the
device-session registry (`sqal:device-sessions`).

`subscribe_loop` runs in a daemon thread of its owner: it subscribes, hands every message to `on_message`, reports
the subscription state to `on_live`, and reconnects with capped exponential backoff after a Redis failure until
`stop` is set. Publishing goes through `resilience.redis_call` (the Redis breaker) in the owners.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

import redis

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0


def subscribe_loop(
    redis_url: str,
    channels: Sequence[str],
    on_message: Callable[[bytes | str], None],
    stop: threading.Event,
    *,
    on_live: Callable[[bool], None] | None = None,
    event: str = "redis_subscriber_error",
) -> None:
    """Deliver the messages of `channels` to `on_message` until `stop` is set (run it in its own thread)."""
    backoff = 0.5
    live = on_live or (lambda _live: None)
    while not stop.is_set():
        pubsub = None
        try:
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0, health_check_interval=15)
            pubsub = client.pubsub()
            pubsub.subscribe(*channels)
            while not stop.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    live(True)
                    backoff = 0.5
                elif message["type"] == "message":
                    on_message(message["data"])
        except (redis.RedisError, OSError) as exc:
            live(False)
            logger.warning(
                "Redis subscription lost, retrying",
                extra={"event": event, "channels": list(channels), "error": exc.__class__.__name__},
            )
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
    live(False)

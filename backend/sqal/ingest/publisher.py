"""Best-effort fan-out of stored samples to Redis pub/sub (`sqal:samples`) for live dashboards.

Ingestion only enqueues (never blocks, never fails); one daemon thread per process drains the bounded queue
and publishes with a pipeline through `run` (the app passes `breakers.of(app).redis_call`, i.e. the Redis breaker). A
full queue or a Redis failure drops summaries (counted, warned at most once a minute): the database, not this
channel, is the record.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import redis

from backend.core.resilience import RedisUnavailable, ThrottledWarning
from backend.sqal import metrics
from backend.sqal.vocabulary import CHANNEL

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
MAX_PIPELINE = 500

RedisRunner = Callable[[Callable[[redis.Redis], Any]], Any]


class SamplePublisher:
    """Publishes JSON summaries to `channel` from a background thread started on first use."""

    def __init__(self, run: RedisRunner, channel: str = CHANNEL) -> None:
        self._run = run
        self.channel = channel
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dropped = ThrottledWarning(logger, "sample_fanout_dropped")

    def publish(self, summaries: Iterable[dict[str, Any]]) -> None:
        """Enqueue summaries without blocking; drop (and count) what does not fit."""
        self._ensure_thread()
        for summary in summaries:
            try:
                self._queue.put_nowait(summary)
            except queue.Full as exc:
                metrics.samples_publish_dropped.inc()
                self._dropped.warn("sample fan-out queue full, summaries dropped", exc)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # Started lazily, so never in a gunicorn master before the fork.
                self._thread = threading.Thread(target=self._drain, name="sqal-publisher", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_PIPELINE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._send(batch)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        def publish_all(client: redis.Redis) -> None:
            pipeline = client.pipeline(transaction=False)
            for summary in batch:
                pipeline.publish(self.channel, json.dumps(summary, separators=(",", ":")))
            pipeline.execute()

        try:
            self._run(publish_all)
        except (RedisUnavailable, redis.RedisError, OSError) as exc:
            metrics.samples_publish_dropped.inc(len(batch))
            self._dropped.warn("sample fan-out to Redis failed, summaries dropped", exc)

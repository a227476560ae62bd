"""The per-process fan-out behind `WS /ws/dashboard/` (`routes.py`): stored samples and figures to every dashboard.

Ingestion publishes each stored sample's summary to the Redis channel `sqal:samples` (`ingest/publisher.py`). In each
worker process one `DashboardHub` owns ONE subscriber thread on that channel and one snapshot thread; both are
started by the first dashboard connection of the process (after gunicorn's fork, never before) and hand frames to
every connected client through a bounded queue with `put_nowait`. They never wait for a client, so a slow or dead
dashboard cannot slow the hub, the other dashboards or ingestion (which only talks to Redis). A client whose queue
is full is dropped: its socket is shut down, which also unblocks a send stuck on a full TCP buffer.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any

from backend.sqal.metrics import dashboard_clients_dropped
from backend.sqal.protocol import DashboardEvent
from backend.sqal.pubsub import subscribe_loop
from backend.sqal.vocabulary import CHANNEL
from backend.sqal.websocket import encode

logger = logging.getLogger(__name__)

CLIENT_QUEUE_SIZE = 256
SNAPSHOT_INTERVAL = 5.0
POLL_SECONDS = 1.0


class DashboardClient:
    """One connected dashboard: a bounded queue of frames and the way to cut it off."""

    def __init__(self, queue_size: int, abort: Callable[[], None], wake: Callable[[], None] | None = None) -> None:
        self.queue: queue.Queue[tuple[DashboardEvent, str]] = queue.Queue(queue_size)
        self.dropped = threading.Event()
        self._abort = abort
        self._wake = wake

    def offer(self, kind: DashboardEvent, frame: str) -> bool:
        """Queue a frame (its type and JSON text) without waiting, then wake the connection; False when full."""
        try:
            self.queue.put_nowait((kind, frame))
        except queue.Full:
            return False
        if self._wake is not None:
            self._wake()
        return True

    def drop(self) -> None:
        """Mark dropped and abort the connection."""
        self.dropped.set()
        self._abort()


class DashboardHub:
    """Per-process fan-out: Redis subscriber and snapshot threads feeding the clients' bounded queues."""

    def __init__(
        self,
        redis_url: str,
        snapshot: Callable[[], dict[str, Any] | None],
        *,
        channel: str = CHANNEL,
        snapshot_interval: float = SNAPSHOT_INTERVAL,
        queue_size: int = CLIENT_QUEUE_SIZE,
    ) -> None:
        self.redis_url = redis_url
        self.snapshot = snapshot
        self.channel = channel
        self.snapshot_interval = snapshot_interval
        self.queue_size = queue_size
        self.instance = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._clients: set[DashboardClient] = set()
        self._pid: int | None = None
        self._live = threading.Event()
        self._stop = threading.Event()

    @property
    def live(self) -> bool:
        """True while subscribed to the Redis channel."""
        return self._live.is_set()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def ensure_started(self) -> None:
        """Start the threads in this process if not yet (threads do not survive a fork: restart after one)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._clients = set()
            self._live = threading.Event()
            self._stop = threading.Event()
            loops = [(self._snapshot_loop, "snapshots")]
            if self.redis_url:
                loops.append((self._subscribe_loop, "subscriber"))
            else:
                logger.warning("REDIS_URL unset: dashboards get metrics but no live samples")
            for target, name in loops:
                threading.Thread(target=target, name=f"sqal-dashboard-{name}", daemon=True).start()

    def stop(self) -> None:
        """Stop the threads (they exit within about POLL_SECONDS)."""
        self._stop.set()

    def wait_live(self, timeout: float) -> bool:
        """Wait until subscribed (so a new client misses nothing published afterwards)."""
        return self._live.wait(timeout)

    def connect(self, abort: Callable[[], None], wake: Callable[[], None] | None = None) -> DashboardClient:
        """Register a new client (starting the threads on first use); `wake` runs after each frame queued for it."""
        self.ensure_started()
        client = DashboardClient(self.queue_size, abort, wake)
        with self._lock:
            self._clients.add(client)
        return client

    def disconnect(self, client: DashboardClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def broadcast(self, kind: DashboardEvent, frame: str) -> None:
        """Offer a frame to every client; drop the ones that cannot take it."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if not client.offer(kind, frame):
                self.disconnect(client)
                dashboard_clients_dropped.inc()
                logger.warning("dashboard client too slow, dropped", extra={"event": "dashboard_client_dropped"})
                client.drop()

    def snapshot_frame(self) -> str | None:
        """The current figures as a `metrics` frame, or None when they cannot be computed."""
        try:
            figures = self.snapshot()
        except Exception:  # a dashboard without figures is better than a dead snapshot thread
            logger.warning("dashboard metrics snapshot failed", exc_info=True, extra={"event": "dashboard_snapshot"})
            return None
        return None if figures is None else encode({"type": DashboardEvent.METRICS, "metrics": figures})

    def hello_frame(self) -> str:
        return encode(
            {
                "type": DashboardEvent.HELLO,
                "instance": self.instance,
                "live": self.live,
                "snapshot_interval": self.snapshot_interval,
            }
        )

    def _set_live(self, live: bool) -> None:
        if live == self._live.is_set():
            return
        if live:
            self._live.set()
        else:
            self._live.clear()
        self.broadcast(DashboardEvent.STATUS, encode({"type": DashboardEvent.STATUS, "live": live}))

    def _on_message(self, data: bytes | str) -> None:
        try:
            summary = json.loads(data)
        except ValueError:
            return
        if isinstance(summary, dict):
            self.broadcast(DashboardEvent.SAMPLE, encode({"type": DashboardEvent.SAMPLE, "sample": summary}))

    def _subscribe_loop(self) -> None:
        subscribe_loop(
            self.redis_url,
            [self.channel],
            self._on_message,
            self._stop,
            on_live=self._set_live,
            event="dashboard_subscriber_error",
        )

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.snapshot_interval):
            if self._clients:
                frame = self.snapshot_frame()
                if frame is not None:
                    self.broadcast(DashboardEvent.METRICS, frame)

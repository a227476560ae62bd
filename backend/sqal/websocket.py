"""What both SQAL sockets (`/ws/sensors/` and `/ws/dashboard/`) share: strict JSON frames, the counted send, pong,
and the per-process socket budget."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Flask
from simple_websocket import Server

from backend.base.extension import AppExtension
from backend.sqal import metrics
from backend.sqal.protocol import DashboardEvent, ErrorCode, ServerFrame

# gthread: a socket holds a worker thread for its whole life; these threads stay for HTTP (probes, /metrics, the API).
RESERVED_HTTP_THREADS = 4
CLOSE_TRY_AGAIN_LATER = 1013


class SocketBudget:
    """This process's WebSocket slots: every socket, whatever its kind, takes one of `total` (the worker's threads
    but RESERVED_HTTP_THREADS), and a kind with a cap in `caps` never holds more than that many of them."""

    def __init__(self, threads: int, caps: Mapping[str, int]) -> None:
        self.total = max(1, threads - RESERVED_HTTP_THREADS)
        self.caps = {kind: min(cap, self.total) for kind, cap in caps.items()}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, kind: str) -> Iterator[bool]:
        """Hold one slot for a socket of `kind` while the body runs; yields False (nothing held) when none is free."""
        with self._lock:
            admitted = self._held.total() < self.total and self._held[kind] < self.caps.get(kind, self.total)
            if admitted:
                self._held[kind] += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._held[kind] -= 1


class Sockets(AppExtension[SocketBudget]):
    """The app's socket slots in this process, shared by device and dashboard sockets: `sockets.current.slot(kind)`."""

    name = "sqal.sockets"

    def init_app(self, app: Flask, caps: Mapping[str, int]) -> None:
        self.bind(app, SocketBudget(app.config["SETTINGS"].threads, caps))


sockets = Sockets()


def encode(frame: dict[str, Any]) -> str:
    """A frame as the JSON text sent on the wire (strict JSON: NaN or Infinity raise ValueError)."""
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def send(
    ws: Server, endpoint: str, kind: ServerFrame | DashboardEvent, text: str, *, error_code: ErrorCode | None = None
) -> None:
    """Send one text frame of type `kind` and count it (an `error` frame also by its code)."""
    ws.send(text)
    metrics.websocket_messages_sent.labels(endpoint=endpoint, type=kind).inc()
    if error_code is not None:
        metrics.websocket_errors.labels(code=error_code).inc()


def let_reader_finish(ws: Server, timeout: float = 1.0) -> None:
    """After the peer's close or a protocol error (invalid UTF-8: 1007), let simple-websocket's reader thread send
    its close reply before the socket is closed under it: it wakes `receive()` first and sends after, so a handler
    returning at once raced it and the peer saw the connection drop with no close frame."""
    reader = getattr(ws, "thread", None)  # simple-websocket 1.x; without it the race stays as it was
    if isinstance(reader, threading.Thread) and reader is not threading.current_thread():
        reader.join(timeout)


def pong(ping: dict[str, Any], **extra: Any) -> tuple[dict[str, Any], str] | None:
    """The `pong` answering a `ping` frame (its `ts` echoed, then `extra`) and its text; None when `ts` cannot be
    echoed: NaN, Infinity or 1e400 (Python's parser reads them, JSON cannot say them) or nested too deeply."""
    reply = {"type": ServerFrame.PONG, "ts": ping.get("ts"), **extra}
    try:
        return reply, encode(reply)
    except (ValueError, RecursionError):
        return None

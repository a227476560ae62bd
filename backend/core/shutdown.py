"""Graceful shutdown of one app in one process: readiness 503, drain, refuse, finish in-flight, close WebSockets.

`begin` runs the sequence (in its own thread, once):
  1. at once: phase `draining`, `/health/ready` answers 503, requests are still served while the load balancer
     takes the instance out (SHUTDOWN_DRAIN_DELAY);
  2. after the drain delay: phase `refusing`, new HTTP requests get 503 JSON with `Connection: close` (probes
     excepted) and WebSockets registered with `shutdown.track_websocket` are closed with 1001 so clients reconnect
     elsewhere;
  3. once no HTTP request is in flight (at most SHUTDOWN_TIMEOUT - HANDOVER_MARGIN s after it began), `hand_over`
     runs: the server's own graceful exit.
Without a drain (a replaced worker whose listening socket stays open elsewhere) only the WebSockets are closed
before `hand_over`.

This module knows no server. Under gunicorn, the `post_worker_init` hook of gunicorn.conf.py calls
`backend.observability.gunicorn.chain_shutdown`, which makes the worker's SIGTERM start `begin` and decides whether
to drain; elsewhere (tests, `flask run`) call `shutdown.of(app).begin(hand_over)`. `shutdown` is the extension
object of backend.extensions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from flask import Flask, Response, request
from werkzeug.wsgi import ClosingIterator

from backend.base.errors import error_response
from backend.base.extension import AppExtension

logger = logging.getLogger(__name__)

SERVING, DRAINING, REFUSING = "serving", "draining", "refusing"
HANDOVER_MARGIN = 3.0  # left to gunicorn after our wait: its 2 s keep-alive linger, then exit before the SIGKILL
GOING_AWAY = 1001
PROBE_PREFIX = "/health"


class WebSocketLike(Protocol):
    """What `track_websocket` needs from a socket (flask-sock / simple-websocket `Server`)."""

    def close(self, reason: Any = None, message: Any = None) -> Any: ...


class Coordinator:
    """The shutdown state of one app in one process: phase, HTTP requests in flight, open WebSockets."""

    def __init__(self, timeout: float, drain_delay: float) -> None:
        self.timeout = timeout
        self.drain_delay = drain_delay
        self.phase = SERVING
        self._in_flight = 0
        self._websockets: set[WebSocketLike] = set()
        self._changed = threading.Condition()
        self.thread: threading.Thread | None = None

    @property
    def refusing(self) -> bool:
        """New requests are refused (and kept-alive connections should close)."""
        return self.phase == REFUSING

    def enter(self) -> None:
        with self._changed:
            self._in_flight += 1

    def leave(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def add_websocket(self, ws: WebSocketLike) -> None:
        with self._changed:
            self._websockets.add(ws)
            refusing = self.phase == REFUSING
        if refusing:
            _close_going_away(ws)

    def discard_websocket(self, ws: WebSocketLike) -> None:
        with self._changed:
            self._websockets.discard(ws)

    def begin(
        self, hand_over: Callable[[], None] = lambda: None, needs_drain: Callable[[], bool] = lambda: True
    ) -> bool:
        """Start the sequence in a thread (once); `hand_over` runs at the end (the server's own graceful exit).
        Under gunicorn SIGTERM calls it; elsewhere (tests, other servers) call it as if SIGTERM had come."""
        with self._changed:
            if self.phase != SERVING:
                return False
            self.phase = DRAINING
        self.thread = threading.Thread(target=self._run, args=(hand_over, needs_drain), name="graceful-shutdown")
        self.thread.daemon = True
        self.thread.start()
        return True

    def _run(self, hand_over: Callable[[], None], needs_drain: Callable[[], bool]) -> None:
        started = time.monotonic()
        deadline = started + max(0.0, self.timeout - HANDOVER_MARGIN)
        try:
            drain = needs_drain()
            logger.info(
                "shutdown started" if drain else "worker replaced, stopping without drain",
                extra={"event": "shutdown_started", "drain": drain, "in_flight": self._in_flight},
            )
            if drain:
                self._drain(deadline)
            else:
                self._close_websockets()
        except Exception:
            logger.exception("shutdown sequence failed", extra={"event": "shutdown_error"})
        finally:
            logger.info(
                "in-flight requests done, handing over to the server",
                extra={
                    "event": "shutdown_handover",
                    "in_flight": self._in_flight,
                    "elapsed_s": round(time.monotonic() - started, 3),
                },
            )
            hand_over()

    def _drain(self, deadline: float) -> None:
        """Steps 1 to 3: serve during the drain delay, then refuse, close the WebSockets, wait for in-flight."""
        time.sleep(max(0.0, min(self.drain_delay, deadline - time.monotonic())))
        with self._changed:
            self.phase = REFUSING
        self._close_websockets()
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight <= 0, max(0.0, deadline - time.monotonic()))

    def _close_websockets(self) -> None:
        with self._changed:
            sockets = list(self._websockets)
        for ws in sockets:
            _close_going_away(ws)


def _close_going_away(ws: WebSocketLike) -> None:
    try:
        ws.close(reason=GOING_AWAY, message="server shutting down")
    except Exception:  # already closed by the peer or by its handler
        logger.debug("websocket already closed", exc_info=True)


class InFlightMiddleware:
    """Counts the HTTP requests being served (until their body is sent); WebSocket upgrades are not counted."""

    def __init__(self, wsgi_app: Callable[..., Any], coordinator: Coordinator) -> None:
        self.wsgi_app = wsgi_app
        self.coordinator = coordinator

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self.wsgi_app(environ, start_response)
        self.coordinator.enter()
        try:
            body = self.wsgi_app(environ, start_response)
        except BaseException:
            self.coordinator.leave()
            raise
        return ClosingIterator(body, [self.coordinator.leave])


class ShutdownCoordinator(AppExtension[Coordinator]):
    """The app's graceful shutdown: `shutdown.phase`, `shutdown.track_websocket(ws)`; `shutdown.of(app)` outside."""

    name = "shutdown"

    def init_app(self, app: Flask) -> None:
        """Track in-flight requests and refuse new ones while shutting down."""
        settings = app.config["SETTINGS"]
        coordinator = self.bind(app, Coordinator(settings.shutdown_timeout, settings.shutdown_drain_delay))
        app.wsgi_app = InFlightMiddleware(app.wsgi_app, coordinator)  # type: ignore[method-assign]

        @app.before_request
        def refuse_while_stopping() -> Response | None:
            if not coordinator.refusing or request.path.startswith(PROBE_PREFIX):
                return None
            return error_response(
                503,
                "service_unavailable",
                "Server is shutting down, retry on another instance",
                None,
                {"Retry-After": "1", "Connection": "close"},
            )

    @property
    def phase(self) -> str:
        """`serving`, `draining` (readiness 503) or `refusing` (new requests 503)."""
        return self.current.phase

    @contextmanager
    def track_websocket(self, ws: WebSocketLike) -> Iterator[WebSocketLike]:
        """Keep `ws` open until shutdown closes it with 1001 (at once if shutdown already refuses connections)."""
        coordinator = self.current
        coordinator.add_websocket(ws)
        try:
            yield ws
        finally:
            coordinator.discard_websocket(ws)

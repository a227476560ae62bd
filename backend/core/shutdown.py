"""Graceful shutdown of a gunicorn worker: readiness 503 at once, drain, refuse, finish in-flight, close WebSockets.

SIGTERM to the master (Kubernetes stopping the pod) reaches every worker, which then:
  1. at once: phase `draining`, `/health/ready` answers 503, requests are still served while the load balancer
     takes the instance out (SHUTDOWN_DRAIN_DELAY);
  2. after the drain delay: phase `refusing`, new HTTP requests get 503 JSON with `Connection: close` (probes
     excepted) and WebSockets registered with `track_websocket` are closed with 1001 so clients reconnect elsewhere;
  3. once no HTTP request is in flight (at most SHUTDOWN_TIMEOUT - HANDOVER_MARGIN s after SIGTERM), gunicorn's
     own graceful exit runs: stop accepting, close kept-alive connections, exit 0 (its `worker_exit` hook flushes
     the trace exporter).
A worker the master *replaces* (SIGHUP reload, TTOU) gets SIGTERM while the master keeps the listening socket open
and new workers accept on it already: nothing to drain, so step 1, the WebSockets closed, then step 3 at once (a
request arriving on a kept-alive connection is still served, with `Connection: close`).

Everything is installed from inside the worker by `init_app`: when the app is built in a gunicorn worker's main
thread it chains gunicorn's SIGTERM handler and its `pre_request` hook (to close connections while refusing).
With `preload_app = True` the app is built in the master instead: then gunicorn.conf.py needs the
`post_worker_init` hook calling `post_worker_init(worker)` here. Elsewhere (tests, `flask run`) nothing is chained
and `begin(app, hand_over)` runs the same sequence.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from flask import Flask, Response, current_app, request
from werkzeug.wsgi import ClosingIterator

from backend.core.errors import error_response

logger = logging.getLogger(__name__)

EXTENSION_KEY = "shutdown"
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
        self.chained = False  # SIGTERM and pre_request of a gunicorn worker are chained

    @property
    def in_flight(self) -> int:
        return self._in_flight

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

    def begin(self, hand_over: Callable[[], None], needs_drain: Callable[[], bool] = lambda: True) -> bool:
        """Start the sequence in a thread (once); `hand_over` runs at the end (gunicorn's SIGTERM handler)."""
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
                time.sleep(max(0.0, min(self.drain_delay, deadline - time.monotonic())))
                with self._changed:
                    self.phase = REFUSING
            self._close_websockets()
            if drain:
                with self._changed:
                    self._changed.wait_for(lambda: self._in_flight <= 0, max(0.0, deadline - time.monotonic()))
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


def init_app(app: Flask) -> None:
    """Track in-flight requests, refuse new ones while shutting down, and chain gunicorn's signals if in a worker."""
    settings = app.config["SETTINGS"]
    coordinator = Coordinator(settings.shutdown_timeout, settings.shutdown_drain_delay)
    app.extensions[EXTENSION_KEY] = coordinator
    app.wsgi_app = InFlightMiddleware(app.wsgi_app, coordinator)  # type: ignore[method-assign]

    @app.before_request
    def refuse_while_stopping() -> Response | None:
        if coordinator.phase != REFUSING or request.path.startswith(PROBE_PREFIX):
            return None
        return error_response(
            503,
            "service_unavailable",
            "Server is shutting down, retry on another instance",
            None,
            {"Retry-After": "1", "Connection": "close"},
        )

    if threading.current_thread() is threading.main_thread():
        _chain_gunicorn_worker(coordinator, signal.getsignal(signal.SIGTERM))


def post_worker_init(worker: Any) -> None:
    """gunicorn `post_worker_init` hook, needed only with `preload_app = True`: the app is then built in the
    master, before the worker sets its signal handlers, so `init_app` could not chain them."""
    app = getattr(worker, "wsgi", None)
    coordinator = app.extensions.get(EXTENSION_KEY) if isinstance(app, Flask) else None
    if coordinator is not None and not coordinator.chained:
        _chain_gunicorn_worker(coordinator, signal.getsignal(signal.SIGTERM))


def coordinator_of(app: Flask | None = None) -> Coordinator:
    """The app's coordinator (default: current app)."""
    target = app if app is not None else current_app
    found: Coordinator = target.extensions[EXTENSION_KEY]
    return found


def phase(app: Flask | None = None) -> str:
    """`serving`, `draining` (readiness 503) or `refusing` (new requests 503)."""
    return coordinator_of(app).phase


def stopping(app: Flask | None = None) -> bool:
    """True once SIGTERM was received (long-running loops should wind down)."""
    return phase(app) != SERVING


def begin(app: Flask, hand_over: Callable[[], None] = lambda: None, drain: bool = True) -> bool:
    """Run the shutdown sequence as if SIGTERM had been received (servers other than gunicorn, tests)."""
    return coordinator_of(app).begin(hand_over, lambda: drain)


@contextmanager
def track_websocket(ws: WebSocketLike, app: Flask | None = None) -> Iterator[WebSocketLike]:
    """Keep `ws` open until shutdown closes it with 1001 (at once if shutdown already refuses connections)."""
    coordinator = coordinator_of(app)
    coordinator.add_websocket(ws)
    try:
        yield ws
    finally:
        coordinator.discard_websocket(ws)


def _chain_gunicorn_worker(coordinator: Coordinator, previous: Any) -> bool:
    """When `previous` is a gunicorn worker's SIGTERM handler: SIGTERM runs our sequence, then that handler."""
    worker = getattr(previous, "__self__", None)
    if worker is None or not type(worker).__module__.startswith("gunicorn.workers") or not callable(previous):
        return False

    def hand_over() -> None:
        previous(signal.SIGTERM, None)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # Signal handler: no blocking work here, the sequence runs in its own thread.
        coordinator.begin(hand_over, lambda: not _master_keeps_listening(worker))

    signal.signal(signal.SIGTERM, on_sigterm)
    previous_pre_request = worker.cfg.pre_request

    def pre_request(current_worker: Any, req: Any) -> None:
        if coordinator.phase == REFUSING:
            req.must_close = True  # gunicorn then answers with "Connection: close" and closes
        previous_pre_request(current_worker, req)

    worker.cfg.set("pre_request", pre_request)
    coordinator.chained = True
    return True


def _master_keeps_listening(worker: Any) -> bool:
    """True when the gunicorn master still holds this worker's listening socket: it is replacing the worker
    (it closes its listeners before signalling workers on shutdown). Unknown (no /proc) means shutdown."""
    try:
        ours = {os.fstat(listener.fileno()).st_ino for listener in worker.sockets}
        fd_dir = f"/proc/{worker.ppid}/fd"
        for name in os.listdir(fd_dir):
            target = os.readlink(os.path.join(fd_dir, name))
            if target.startswith("socket:[") and int(target[8:-1]) in ours:
                return True
    except (OSError, ValueError, AttributeError):
        return False
    return False

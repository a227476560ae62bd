"""`WS /ws/dashboard/` and `GET /dashboard`: the live quality page and the socket that feeds it.

Frames sent (JSON text): `hello` (`instance` = random id of the worker's hub, `live` = subscribed to Redis,
`snapshot_interval`), then `metrics` (the `/api/dashboard/metrics/` body) at once and every `snapshot_interval`
seconds, `sample` (`{"type": "sample", "sample": {device_id, sample_id, timestamp, grade, score, defects}}`) for
each stored sample, and `status` (`live` true/false) when the Redis subscription is lost or back. A client may send
`{"type": "ping"}` and gets `{"type": "pong"}`; anything else it sends is ignored.
Admission (docs/protocol.md §10): a browser's handshake from a foreign `Origin` is refused with 403 (`guards.py`);
beyond the process's dashboard budget (`SocketBudget`, shared with device sockets) the socket gets `server_busy` and
1013; an oversized message closes it with 1009, a flood of messages with 1008.
The page is static HTML/JS/CSS in `static/dashboard/`, nothing from the internet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apiflask import APIBlueprint
from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from simple_websocket import ConnectionClosed, Server

from backend.base.extension import AppExtension
from backend.extensions import db, shutdown, sock
from backend.sqal import metrics
from backend.sqal.live.guards import DASHBOARD_MAX_MESSAGE_BYTES, ForeignOrigin, InboundLimit, origin_allowed
from backend.sqal.live.service import POLL_SECONDS, DashboardClient, DashboardHub
from backend.sqal.protocol import ClientFrame, DashboardEvent, ErrorCode, ServerFrame, error_frame
from backend.sqal.vocabulary import channel_for
from backend.sqal.websocket import (
    CLOSE_TRY_AGAIN_LATER,
    encode,
    let_reader_finish,
    pong,
    send,
    sockets,
)

ENDPOINT = "/ws/dashboard/"
SOCKET_KIND = "dashboard"
LIVE_WAIT_SECONDS = 2.0
STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
logger = logging.getLogger(__name__)

bp = APIBlueprint("sqal_live", __name__, enable_openapi=False)  # APIFlask reads its before_request hooks
page_bp = Blueprint("sqal_dashboard_page", __name__, static_folder=str(STATIC_DIR), static_url_path="/dashboard/static")


def _abort(ws: Server) -> None:
    with contextlib.suppress(OSError):
        ws.sock.shutdown(socket.SHUT_RDWR)


@bp.before_request
def _check_origin() -> None:
    """Before the upgrade: a browser page of another site gets 403, and no socket."""
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, request.host, current_app.config["SETTINGS"].cors_origins):
        logger.warning("dashboard socket from a foreign origin refused", extra={"event": "ws_origin_refused"})
        raise ForeignOrigin("this origin may not open the live dashboard socket", details={"origin": origin[:200]})


def _read_inbound(ws: Server, limit: InboundLimit) -> bool:
    """Answer the pings received so far; False after closing the socket for an oversized message or a flood."""
    while (message := ws.receive(timeout=0)) is not None:
        refused = limit.check(message)
        if refused is not None:
            ws.close(reason=refused[0], message=refused[1])
            return False
        try:
            frame = json.loads(message)
        except (ValueError, RecursionError):
            continue
        if isinstance(frame, dict) and frame.get("type") == ClientFrame.PING and (answer := pong(frame)) is not None:
            send(ws, ENDPOINT, DashboardEvent.PONG, answer[1])
    return True


def _pump(ws: Server, client: DashboardClient) -> None:
    """Wake on a received message or a queued frame (both set `ws.event`), whichever comes first, and serve both.

    Received messages are checked as they arrive, not once per poll, so a flood is cut after DASHBOARD_FRAME_BURST
    messages instead of piling up in simple-websocket's input buffer. Shutdown closes the socket with 1001
    (track_websocket): `connected` turns false and the loop ends within POLL_SECONDS.
    """
    limit = InboundLimit()
    while ws.connected and not client.dropped.is_set():
        ws.event.wait(POLL_SECONDS)
        ws.event.clear()  # before reading both sources: a wake-up after this point is not lost
        if not _read_inbound(ws, limit):
            return
        while True:
            try:
                kind, frame = client.queue.get_nowait()
            except queue.Empty:
                break
            send(ws, ENDPOINT, kind, frame)


class DashboardHubs(AppExtension[DashboardHub]):
    """The app's dashboard hub in this process: one Redis subscription fanned out to its dashboard sockets."""

    name = "sqal_dashboard_hub"

    def init_app(self, app: Flask, snapshot: Callable[[], dict[str, Any] | None]) -> DashboardHub:
        settings = app.config["SETTINGS"]
        return self.bind(app, DashboardHub(settings.redis_url, snapshot, channel=channel_for(settings)))


dashboard_hub = DashboardHubs()


@sock.route(ENDPOINT, bp=bp)
def dashboard_socket(ws: Server) -> None:
    """One dashboard connection: hello, the figures, then live frames until it closes or is dropped."""
    # The reader thread reads this limit at each message: from here on nothing above it is buffered.
    ws.max_message_size = DASHBOARD_MAX_MESSAGE_BYTES
    try:
        with sockets.current.slot(SOCKET_KIND) as admitted:
            if admitted:
                _serve(ws)
            else:
                busy = error_frame(ErrorCode.SERVER_BUSY, "no free connection slot, retry later")
                send(ws, ENDPOINT, ServerFrame.ERROR, encode(busy), error_code=ErrorCode.SERVER_BUSY)
                ws.close(reason=CLOSE_TRY_AGAIN_LATER, message=busy["message"])
    except ConnectionClosed:  # the client closed, or the reader closed on a protocol error: its reply goes out first
        let_reader_finish(ws)
    except OSError:
        pass  # the client went away, or was dropped (its socket shut down under a blocked send)
    finally:
        db.session.remove()


def _serve(ws: Server) -> None:
    hub = dashboard_hub.current
    client = hub.connect(abort=lambda: _abort(ws), wake=ws.event.set)
    metrics.websocket_connections_active.labels(endpoint=ENDPOINT).inc()
    try:
        with shutdown.track_websocket(ws):
            hub.wait_live(LIVE_WAIT_SECONDS)
            send(ws, ENDPOINT, DashboardEvent.HELLO, hub.hello_frame())
            snapshot = hub.snapshot_frame()
            if snapshot is not None:
                send(ws, ENDPOINT, DashboardEvent.METRICS, snapshot)
            _pump(ws, client)
    finally:
        hub.disconnect(client)
        metrics.websocket_connections_active.labels(endpoint=ENDPOINT).dec()


def register_live(app: Flask, snapshot: Callable[[], dict[str, Any] | None]) -> DashboardHub:
    """Create the app's hub (no thread, no socket yet) and register `/ws/dashboard/` and the `/dashboard` page."""
    hub = dashboard_hub.init_app(app, snapshot)
    app.register_blueprint(bp)
    app.register_blueprint(page_bp)
    return hub


def content_security_policy(host: str) -> str:
    """Same-origin only: scripts, styles, fetches and the dashboard WebSocket of this host."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@page_bp.get("/dashboard", strict_slashes=False)
def dashboard_page() -> Response:
    """The page; its script loads the REST figures, then follows `/ws/dashboard/`."""
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

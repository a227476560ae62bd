"""`WS /ws/dashboard/` and `GET /dashboard`: the live quality page and the socket that feeds it.

Frames sent (JSON text): `hello` (`instance` = random id of the worker's hub, `live` = subscribed to Redis,
`snapshot_interval`), then `metrics` (the `/api/dashboard/metrics/` body) at once and every `snapshot_interval`
seconds, `sample` (`{"type": "sample", "sample": {device_id, sample_id, timestamp, grade, score, defects}}`) for
each stored sample, and `status` (`live` true/false) when the Redis subscription is lost or back. A client may send
`{"type": "ping"}` and gets `{"type": "pong"}`; anything else it sends is ignored.
The page is static HTML/JS/CSS in `static/dashboard/`, nothing from the internet.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from simple_websocket import ConnectionClosed, Server

from backend.core import shutdown
from backend.extensions import db, sock
from backend.sqal import metrics
from backend.sqal.live.service import POLL_SECONDS, DashboardClient, DashboardHub
from backend.sqal.vocabulary import channel_for
from backend.sqal.websocket import let_reader_finish, pong, send

ENDPOINT = "/ws/dashboard/"
HUB_KEY = "sqal_dashboard_hub"
LIVE_WAIT_SECONDS = 2.0
STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"

bp = Blueprint("sqal_live", __name__)
page_bp = Blueprint("sqal_dashboard_page", __name__, static_folder=str(STATIC_DIR), static_url_path="/dashboard/static")


def _abort(ws: Server) -> None:
    with contextlib.suppress(OSError):
        ws.sock.shutdown(socket.SHUT_RDWR)


def _answer_pings(ws: Server) -> None:
    while (message := ws.receive(timeout=0)) is not None:
        try:
            frame = json.loads(message)
        except (ValueError, RecursionError):
            continue
        if isinstance(frame, dict) and frame.get("type") == "ping" and (answer := pong(frame)) is not None:
            send(ws, ENDPOINT, "pong", answer[1])


def _pump(ws: Server, client: DashboardClient) -> None:
    # Shutdown closes the socket with 1001 (track_websocket): `connected` turns false and the loop ends.
    while ws.connected and not client.dropped.is_set():
        try:
            kind, frame = client.queue.get(timeout=POLL_SECONDS)
        except queue.Empty:
            pass
        else:
            send(ws, ENDPOINT, kind, frame)
        _answer_pings(ws)


@sock.route(ENDPOINT, bp=bp)
def dashboard_socket(ws: Server) -> None:
    """One dashboard connection: hello, the figures, then live frames until it closes or is dropped."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    hub: DashboardHub = app.extensions[HUB_KEY]
    client = hub.connect(abort=lambda: _abort(ws))
    metrics.websocket_connections_active.labels(endpoint=ENDPOINT).inc()
    try:
        with shutdown.track_websocket(ws, app):
            hub.wait_live(LIVE_WAIT_SECONDS)
            send(ws, ENDPOINT, "hello", hub.hello_frame())
            snapshot = hub.snapshot_frame()
            if snapshot is not None:
                send(ws, ENDPOINT, "metrics", snapshot)
            _pump(ws, client)
    except ConnectionClosed:  # the client closed, or the reader closed on a protocol error: its reply goes out first
        let_reader_finish(ws)
    except OSError:
        pass  # the client went away, or was dropped (its socket shut down under a blocked send)
    finally:
        hub.disconnect(client)
        metrics.websocket_connections_active.labels(endpoint=ENDPOINT).dec()
        db.session.remove()


def register_live(app: Flask, snapshot: Callable[[], dict[str, Any] | None]) -> DashboardHub:
    """Create the app's hub (no thread, no socket yet) and register `/ws/dashboard/` and the `/dashboard` page."""
    hub = DashboardHub(app.config["SETTINGS"].redis_url, snapshot, channel=channel_for(app.config["SETTINGS"]))
    app.extensions[HUB_KEY] = hub
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

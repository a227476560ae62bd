"""`/ws/sensors/`: the flask-sock adapter between a device connection and `FrameHandler`.

Authenticates the token (header or query), registers the session (`sessions.py`: per-device cap, revocation), then
loops: check the session → receive → handle → exactly one reply → close when the protocol says so. Each frame runs
in its own root span linked to the connection's span (a connection lasts hours; one span per frame keeps traces
readable). The rate limit is `backend.core.ratelimit.hit` (Redis, shared
by workers). On shutdown `backend.core.shutdown` "closes" the tracked socket: that only wakes this connection's
thread, which sends the 1001 close itself, since simple-websocket is not safe for two threads sending at once
(a replaced or revoked session is closed by its own thread the same way, with 1008).
"""

from __future__ import annotations

import contextlib
import logging
import time
from contextlib import AbstractContextManager
from typing import Any

from flask import Blueprint, Flask, current_app, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from simple_websocket import ConnectionClosed, Server
from sqlalchemy.exc import SQLAlchemyError

from backend.base.errors import ServiceUnavailable
from backend.base.extension import AppExtension
from backend.extensions import breakers, db, rate_limits, shutdown, sock
from backend.sqal import metrics
from backend.sqal.ingest import service
from backend.sqal.ingest.frames import CLOSE_POLICY_VIOLATION, FrameHandler, Outcome
from backend.sqal.ingest.publisher import SamplePublisher
from backend.sqal.ingest.sessions import WAKE, DeviceSession, SessionRegistry
from backend.sqal.protocol import ErrorCode, ServerFrame, UnhandledFrame, error_frame
from backend.sqal.vocabulary import channel_for
from backend.sqal.websocket import CLOSE_TRY_AGAIN_LATER, SocketBudget, encode, let_reader_finish, send, sockets

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ENDPOINT = metrics.ENDPOINT
RATE_SCOPE = "ws_device"
# Receives wait this long at most; shutdown, take-over and revocation wake them at once (DeviceSession.wake).
RECEIVE_POLL = 10.0
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
# Private-use code (RFC 6455 §7.4.2) for `session_replaced`: not 1008, which devices read as "credential refused,
# stop" (clients/device_client.py); a replaced genuine device must reconnect, or a thief could kick it for good.
CLOSE_SESSION_REPLACED = 4000
SOCKET_KIND = "device"

bp = Blueprint("sqal_ws", __name__)


class SqalRuntime:
    """Per-app SQAL helpers: the rate-limit check, the sample publisher and the device sessions (their threads start
    on first use)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.publisher = SamplePublisher(breakers.of(app).redis_call, channel=channel_for(app.config["SETTINGS"]))
        self.sockets: SocketBudget = sockets.of(app)  # shared with dashboard sockets
        self.limits = rate_limits.of(app)
        self.sessions = SessionRegistry(app, service.credential_refusal)

    def socket_slot(self) -> AbstractContextManager[bool]:
        """Hold one of this process's socket slots for a device while the body runs; False if none."""
        return self.sockets.slot(SOCKET_KIND)

    def retry_after(self, device_id: str) -> float | None:
        """Count one frame of the device against WS_DEVICE_RATE_LIMIT; None = go ahead, else seconds to wait."""
        decision = self.limits.hit(RATE_SCOPE, device_id, self.app.config["SETTINGS"].ws_device_rate_limit)
        return None if decision.allowed else decision.retry_after


class IngestRuntime(AppExtension[SqalRuntime]):
    """The app's SqalRuntime in this process (`ingest_runtime.current` in a device socket's handler)."""

    name = "sqal"

    def init_app(self, app: Flask) -> None:
        self.bind(app, SqalRuntime(app))


ingest_runtime = IngestRuntime()


def device_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from `Authorization: Bearer …` (preferred) or `?token=`."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def _reply(ws: Server, reply: dict[str, Any], text: str | None = None) -> None:
    """Send a protocol reply (an `error` one is also counted by its code)."""
    code = reply["code"] if reply["type"] == ServerFrame.ERROR else None
    send(ws, ENDPOINT, reply["type"], text if text is not None else encode(reply), error_code=code)


def _refuse(ws: Server, reply: dict[str, Any], close_code: int) -> None:
    _reply(ws, reply)
    ws.close(reason=close_code, message=reply["message"][:120])


@sock.route("/ws/sensors/", bp=bp)
def sensors(ws: Server) -> None:
    """One device connection."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    runtime = ingest_runtime.current
    opened_ns = time.time_ns()
    try:
        with runtime.socket_slot() as admitted:
            if not admitted:
                _refuse(
                    ws,
                    error_frame(ErrorCode.SERVER_BUSY, "no free connection slot, retry later"),
                    CLOSE_TRY_AGAIN_LATER,
                )
                return
            token = device_token(request.headers.get("Authorization"), request.args.get("token"))
            authenticated = _authenticate(ws, token)
            if authenticated is not None:
                identity, span = authenticated
                session = DeviceSession(ws, identity.device_id, identity.token_hash, opened_ns)
                _connection(app, runtime, session, span)
    except ConnectionClosed:  # the peer closed, or the reader closed on a protocol error: its reply goes out first
        let_reader_finish(ws)
        raise
    except OSError:  # the peer vanished (reset, broken pipe): like a close, its device will resend
        logger.debug("device socket lost", exc_info=True)


def _authenticate(ws: Server, token: str | None) -> tuple[service.DeviceIdentity, trace.SpanContext] | None:
    """(the device, connection span) or None after refusing the socket."""
    with tracer.start_as_current_span("ws.sensors connect", context=otel_context.Context()) as span:
        try:
            identity = service.authenticate(token)
            service.touch_device(identity.device_id)
        except service.DeviceRejected as exc:
            span.set_attribute("sqal.auth_error", exc.code)
            _refuse(ws, error_frame(exc.code, exc.message), CLOSE_POLICY_VIOLATION)
            return None
        except (SQLAlchemyError, ServiceUnavailable):
            logger.exception("device authentication failed", extra={"event": "ws_auth_error"})
            _refuse(
                ws,
                error_frame(ErrorCode.INTERNAL_ERROR, "authentication unavailable, retry later"),
                CLOSE_INTERNAL_ERROR,
            )
            return None
        span.set_attribute("sqal.device_id", identity.device_id)
        return identity, span.get_span_context()


def _connection(app: Flask, runtime: SqalRuntime, session: DeviceSession, span: trace.SpanContext) -> None:
    device_id = session.device_id
    handler = FrameHandler(
        device_id,
        token_hash=session.token_hash,
        max_message_bytes=app.config["SETTINGS"].ws_max_message_bytes,
        store=service.store_samples,
        publish=runtime.publisher.publish,
        retry_after=runtime.retry_after,
    )
    logger.info("device connected", extra={"event": "ws_connect", "device_id": device_id})
    metrics.websocket_connections_active.labels(endpoint=ENDPOINT).inc()
    try:
        runtime.sessions.admit(session)
        with shutdown.track_websocket(session):
            _serve(runtime.sessions, session, handler, span)
    finally:
        runtime.sessions.release(session)
        metrics.websocket_connections_active.labels(endpoint=ENDPOINT).dec()
        db.session.remove()
        logger.info("device disconnected", extra={"event": "ws_disconnect", "device_id": device_id})


def _serve(
    sessions: SessionRegistry, session: DeviceSession, handler: FrameHandler, connection_span: trace.SpanContext
) -> None:
    ws = session.ws
    while True:
        if session.going_away.is_set():
            ws.close(reason=CLOSE_GOING_AWAY, message="server shutting down")
            return
        refusal = sessions.refusal(session)
        if refusal is not None:  # replaced by a newer socket, or the credential was revoked: no frame is handled
            logger.info(
                "device socket closed: %s",
                refusal.code,
                extra={"event": "ws_session_closed", "device_id": session.device_id, "reason": refusal.code},
            )
            close_code = (
                CLOSE_SESSION_REPLACED if refusal.code == ErrorCode.SESSION_REPLACED else CLOSE_POLICY_VIOLATION
            )
            _refuse(ws, error_frame(refusal.code, refusal.message), close_code)
            return
        message = ws.receive(timeout=min(RECEIVE_POLL, session.until_next_check()))
        if message is None or message is WAKE:
            continue
        outcome = _handle(handler, message, connection_span)
        _reply(ws, outcome.reply, outcome.encoded)
        if outcome.close_code is not None:
            ws.close(reason=outcome.close_code, message=outcome.reply.get("message", "")[:120])
            return


def _handle(handler: FrameHandler, message: str | bytes, connection_span: trace.SpanContext) -> Outcome:
    """The outcome of one message, its reply encoded; a failure in either is one `internal_error` reply."""
    links = [trace.Link(connection_span)] if connection_span.is_valid else []
    with tracer.start_as_current_span("ws.sensors frame", context=otel_context.Context(), links=links) as span:
        span.set_attribute("sqal.device_id", handler.device_id)
        try:
            outcome = handler.handle(message)
            if outcome.encoded is None:  # here, so an unencodable reply is caught like any other bug
                outcome.encoded = encode(outcome.reply)
        except Exception as exc:  # a bug must cost one frame, not the connection or the worker
            span.record_exception(exc)
            logger.exception("frame handling failed", extra={"event": "ws_frame_error", "device_id": handler.device_id})
            with contextlib.suppress(SQLAlchemyError, ServiceUnavailable):
                db.session.rollback()
            outcome = Outcome(
                UnhandledFrame.INTERNAL, error_frame(ErrorCode.INTERNAL_ERROR, "unexpected server error, resend later")
            )
        span.set_attribute("sqal.frame_type", outcome.frame_type)
        span.set_attribute("sqal.reply_type", outcome.reply_type)
        if outcome.reply_type == ServerFrame.ERROR:
            span.set_attribute("sqal.error_code", outcome.reply["code"])
    metrics.websocket_messages_received.labels(endpoint=ENDPOINT, type=outcome.frame_type).inc()
    return outcome

"""One CLIENT span per SQL statement, from SQLAlchemy's public engine events.

The spans keep the contract of opentelemetry-instrumentation-sqlalchemy (its scope name, kind and attributes under
the semantic conventions chosen by OTEL_SEMCONV_STABILITY_OPT_IN), named "<OPERATION> <table>" by `sql.classify`.
`db.statement` is SQLAlchemy's text with its placeholders (no sqlcommenter), and a failed statement's status
carries the driver class and SQLSTATE only: a driver message may quote values. Our span lives on SQLAlchemy's
execution context under our own attribute, so no other library's private state is read.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext

from backend.observability import sql
from backend.observability.exceptions import driver_error

# The instrumentation's scope name: dashboards and tail-sampling rules select SQL spans by it.
SCOPE = "opentelemetry.instrumentation.sqlalchemy"
# Our attribute on SQLAlchemy's ExecutionContext (a plain object: execution options carry no per-cursor state).
SPAN_ATTRIBUTE = "_backend_sql_span"
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"


def _modes(signal: str) -> tuple[bool, bool]:
    """(old names, stable names) for `signal` ("database" or "http"), as the instrumentations read the opt-in."""
    opted = {token.strip() for token in os.environ.get(SEMCONV_OPT_IN, "").split(",")}
    if f"{signal}/dup" in opted:
        return True, True
    return (False, True) if signal in opted else (True, False)


class SqlNames:
    """Attribute names for the semantic conventions in use (read once, like the instrumentations do)."""

    def __init__(self) -> None:
        self.db_old, self.db_new = _modes("database")
        self.net_old, self.net_new = _modes("http")

    def db(self, attributes: dict[str, Any], old: str, new: str | None, value: Any) -> None:
        if self.db_old:
            attributes[old] = value
        if self.db_new and new:
            attributes[new] = value

    def peer(self, attributes: dict[str, Any], host: str | None, port: int | None) -> None:
        if host:
            attributes.update({"net.peer.name": host} if self.net_old else {})
            attributes.update({"server.address": host} if self.net_new else {})
        if port:
            attributes.update({"net.peer.port": int(port)} if self.net_old else {})
            attributes.update({"server.port": int(port)} if self.net_new else {})


def _connection_attributes(engine: Engine, names: SqlNames) -> dict[str, Any]:
    """db.system, the peer, db.name and db.user from the engine's URL (what the instrumentation reads first)."""
    url = engine.url
    attributes: dict[str, Any] = {}
    vendor = "postgresql" if "postgres" in engine.name else engine.name
    names.db(attributes, "db.system", "db.system.name", vendor)
    names.peer(attributes, url.host, url.port)
    if url.database:
        names.db(attributes, "db.name", "db.namespace", url.database)
    if url.username and names.db_old:
        attributes["db.user"] = url.username  # no stable replacement
    return attributes


def _socket_attributes(cursor: Any, names: SqlNames) -> dict[str, Any]:
    """A URL without a host (a Unix socket from libpq defaults): the peer from psycopg2's public ConnectionInfo."""
    info = getattr(getattr(cursor, "connection", None), "info", None)
    if not isinstance(info, psycopg2.extensions.ConnectionInfo):
        return {}
    attributes: dict[str, Any] = {}
    if info.dbname:
        names.db(attributes, "db.name", "db.namespace", info.dbname)
    if info.host and info.host.startswith("/"):
        attributes["net.transport"] = "other"
        if info.port:
            names.peer(attributes, os.path.join(info.host, f".s.PGSQL.{info.port}"), None)
    else:
        attributes["net.transport"] = "ip_tcp"
        names.peer(attributes, info.host, info.port)
    return attributes


class SqlSpans:
    """The engine listeners: start the span before the cursor runs, end it after, or on the error."""

    def __init__(self, tracer: Tracer, engine: Engine) -> None:
        self._tracer = tracer
        self._names = SqlNames()
        self._attributes = _connection_attributes(engine, self._names)
        self._from_cursor = not engine.url.host

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if context is None or not is_instrumentation_enabled():
            return
        operation, table = sql.classify(statement)
        attributes = dict(self._attributes)
        if self._from_cursor:
            attributes.update(_socket_attributes(cursor, self._names))
        self._names.db(attributes, "db.statement", "db.query.text", statement)
        attributes["db.operation"] = operation
        if self._names.db_new:
            attributes["db.operation.name"] = operation
        if table != sql.NO_TABLE:
            attributes["db.sql.table"] = table
        name = operation if table == sql.NO_TABLE else f"{operation} {table}"
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        setattr(context, SPAN_ATTRIBUTE, span)

    def after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        span = getattr(context, SPAN_ATTRIBUTE, None)
        if span is not None:
            setattr(context, SPAN_ATTRIBUTE, None)
            span.end()

    def handle_error(self, exception_context: ExceptionContext) -> None:
        """End the statement's span with the error class and SQLSTATE only: driver messages may quote values."""
        execution_context = exception_context.execution_context
        span = getattr(execution_context, SPAN_ATTRIBUTE, None)
        if span is None:
            return
        setattr(execution_context, SPAN_ATTRIBUTE, None)
        original = exception_context.original_exception
        if span.is_recording():
            span.set_attribute("error.type", type(original).__qualname__)
            code = getattr(original, "pgcode", None)
            if code:
                span.set_attribute("db.response.status_code", code)
            is_driver = isinstance(original, psycopg2.Error)
            span.set_status(Status(StatusCode.ERROR, driver_error(original) if is_driver else type(original).__name__))
        span.end()


def instrument_engine(engine: Engine) -> SqlSpans:
    """Trace every statement `engine` runs: one CLIENT span, child of the current span."""
    spans = SqlSpans(trace.get_tracer(SCOPE), engine)
    event.listen(engine, "before_cursor_execute", spans.before_cursor_execute)
    event.listen(engine, "after_cursor_execute", spans.after_cursor_execute)
    event.listen(engine, "handle_error", spans.handle_error)
    return spans

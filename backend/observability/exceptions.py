"""Exceptions described for logs and spans without leaking statement values.

psycopg2 interpolates parameters on the client, so a server error quotes them back (`LINE 1: ... = 'secret'`,
`DETAIL: Key (name)=(...)`). For database errors the message becomes the driver class, the SQLSTATE and the SQL
text with its placeholders; other messages only go through the credential scrubber.
"""

from __future__ import annotations

import traceback
from typing import Any

import psycopg2
from opentelemetry.trace import Span
from sqlalchemy.exc import StatementError

from backend.observability.redaction import redact_text

MAX_CHAIN = 8


def type_name(exc: BaseException) -> str:
    """`module.Class`, or just `Class` for builtins."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def driver_error(exc: psycopg2.Error) -> str:
    """Class, SQLSTATE and the schema objects involved (names only, never the server's message text)."""
    text = f"{type(exc).__name__} (SQLSTATE {exc.pgcode})" if exc.pgcode else type(exc).__name__
    diag = exc.diag
    names = [
        f"{label}={value}"
        for label, value in (
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
            ("type", diag.datatype_name),
        )
        if value
    ]
    return f"{text} {' '.join(names)}" if names else text


def safe_message(exc: BaseException) -> str:
    """The exception's message, minus any value a database error may quote."""
    if isinstance(exc, StatementError):
        original = exc.orig
        if isinstance(original, psycopg2.Error):
            detail = driver_error(original)
        else:
            detail = type(original).__name__ if original is not None else type(exc).__name__
        return f"{detail} [SQL: {exc.statement}]" if exc.statement else detail
    if isinstance(exc, psycopg2.Error):
        return driver_error(exc)
    return redact_text(str(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < MAX_CHAIN:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return list(reversed(chain))


def safe_traceback(exc: BaseException) -> str:
    """Like `traceback.format_exception` (causes included), with every message passed through `safe_message`."""
    parts: list[str] = []
    for index, item in enumerate(_chain(exc)):
        if index:
            parts.append("\nThe above exception led to the following exception:\n\n")
        if item.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_list(traceback.extract_tb(item.__traceback__)))
        parts.append(f"{type_name(item)}: {safe_message(item)}\n")
    return "".join(parts).rstrip("\n")


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """The structured `exc_info` of a log line."""
    return {"type": type_name(exc), "message": safe_message(exc), "stacktrace": safe_traceback(exc)}


def record_on_span(span: Span, exc: BaseException) -> None:
    """The semantic-convention `exception` event, with the safe message and stack trace."""
    span.add_event(
        "exception",
        {
            "exception.type": type_name(exc),
            "exception.message": safe_message(exc),
            "exception.stacktrace": safe_traceback(exc),
        },
    )

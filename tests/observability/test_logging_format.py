"""The JSON line format: fields, exceptions, escaping, redaction, levels (in-process)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from apiflask import APIFlask
from opentelemetry import trace
from sqlalchemy import text

from backend.base.config import Settings
from backend.extensions import db
from backend.observability.logging import JsonFormatter, StdoutHandler, configure_logging
from backend.observability.redaction import redact_query, redact_text

logger = logging.getLogger("tests.observability.format")


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Any:
    """A function returning the JSON lines written to stdout so far."""

    def read() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    return read


def test_a_line_has_the_base_fields_then_the_event_fields(app: APIFlask, lines: Any) -> None:
    logger.info("product %s created", "p1", extra={"event": "created", "product_id": 7, "level": "forged"})
    [record] = lines()
    assert list(record)[:8] == ["timestamp", "level", "service", "logger", "message", "trace_id", "span_id", "pid"]
    assert record["level"] == "INFO"  # an event field cannot override a base field
    assert record["service"] == "backend"
    assert record["logger"] == "tests.observability.format"
    assert record["message"] == "product p1 created"
    assert (record["trace_id"], record["span_id"]) == ("", "")
    assert (record["event"], record["product_id"]) == ("created", 7)
    assert record["timestamp"].endswith("Z")


def test_inside_a_span_the_line_carries_its_ids(app: APIFlask, lines: Any) -> None:
    with trace.get_tracer(__name__).start_as_current_span("work") as span:
        logger.warning("inside")
    [record] = lines()
    context = span.get_span_context()
    assert record["trace_id"] == format(context.trace_id, "032x")
    assert record["span_id"] == format(context.span_id, "016x")


def test_an_exception_is_one_line_with_a_structured_exc_info(app: APIFlask, capsys: Any) -> None:
    try:
        raise ValueError('bad\nvalue "x"')
    except ValueError:
        logger.exception("failed")
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if '"failed"' in line]
    exc_info = json.loads(line)["exc_info"]
    assert exc_info["type"] == "ValueError"
    assert exc_info["message"] == 'bad\nvalue "x"'
    assert exc_info["stacktrace"].startswith("Traceback (most recent call last):")
    assert "raise ValueError('bad\\nvalue \"x\"')" in exc_info["stacktrace"]


def test_database_errors_are_logged_without_statement_values(app: APIFlask, lines: Any) -> None:
    value = "-".join(("SECRET", "VALUE"))  # not spelled out on the failing line (stack traces quote source)
    with app.app_context(), db.engine.connect() as connection:
        try:
            connection.execute(text("SELECT * FROM no_such_table WHERE name = :name"), {"name": value})
        except Exception:
            logger.exception("query failed")
    [record] = [r for r in lines() if r["message"] == "query failed"]
    assert value not in json.dumps(record)
    assert record["exc_info"]["message"] == (
        "UndefinedTable (SQLSTATE 42P01) [SQL: SELECT * FROM no_such_table WHERE name = %(name)s]"
    )


def test_control_characters_and_json_in_messages_stay_on_one_line(app: APIFlask, capsys: Any) -> None:
    hostile = '"}\n{"level":"CRITICAL"}\r\x1b[31m\u2028\x00\\'
    logger.info(hostile, extra={"field": hostile})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "\x1b" not in out
    assert "\u2028" not in out
    record = json.loads(out)
    assert record["message"] == hostile
    assert record["field"] == hostile


def test_credentials_are_masked(app: APIFlask, lines: Any) -> None:
    logger.info(
        "calling with Authorization: Bearer abc.def.ghi and password=hunter2 at postgresql://u:pw@db/x",
        extra={"headers": {"Authorization": "Basic dXNlcjpw", "X-Api-Key": "k1", "Accept": "json"}, "token": "t1"},
    )
    [record] = lines()
    dumped = json.dumps(record)
    for secret in ("abc.def.ghi", "hunter2", ":pw@", "dXNlcjpw", '"k1"', '"t1"'):
        assert secret not in dumped
    assert record["headers"]["Accept"] == "json"
    assert record["headers"]["Authorization"] == "[REDACTED]"
    assert record["token"] == "[REDACTED]"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&token=x&b=%20", "a=1&token=[REDACTED]&b=%20"),
        ("API_KEY=1&access%5Ftoken=2", "API_KEY=[REDACTED]&access%5Ftoken=[REDACTED]"),
        ("q=tokens&flag", "q=tokens&flag"),
        ("", ""),
    ],
)
def test_query_redaction(query: str, expected: str) -> None:
    assert redact_query(query) == expected


def test_text_without_credentials_is_unchanged() -> None:
    sample = "max_tokens=5 GET /products/1 took 3 ms; http://example.org/a:b"
    assert redact_text(sample) == sample


def test_log_level_is_honoured_and_configuration_is_idempotent(settings: Settings, lines: Any) -> None:
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging(settings.__class__.from_env({}, database_url=settings.database_url, log_level="WARNING"))
        configure_logging(settings.__class__.from_env({}, database_url=settings.database_url, log_level="WARNING"))
        assert len([h for h in root.handlers if isinstance(h, StdoutHandler)]) == 1
        logger.info("hidden")
        logger.warning("shown")
        assert [r["message"] for r in lines()] == ["shown"]
    finally:
        configure_logging(settings)
        root.setLevel(level)


def test_formatter_without_a_running_app_still_produces_json() -> None:
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "Worker %s died", (42,), None)
    parsed = json.loads(JsonFormatter(service="svc").format(record))
    assert (parsed["service"], parsed["message"], parsed["trace_id"]) == ("svc", "Worker 42 died", "")

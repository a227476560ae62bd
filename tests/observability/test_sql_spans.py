"""SQL CLIENT spans made from SQLAlchemy's public engine events (backend/observability/sql_spans.py), in-process
against the session's PostgreSQL, and the guard that no module leans on the instrumentation's private state again."""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest
from apiflask import APIFlask
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import exc, text
from sqlalchemy.engine import Connection

from backend.extensions import db
from backend.observability import sql_spans
from scripts.devservices import REPO_ROOT

SECRET = "s3cret-value-7f1c"


@pytest.fixture
def connection(app: APIFlask) -> Iterator[Connection]:
    """A connection of the app's (instrumented) engine in a transaction that is rolled back."""
    with app.app_context(), db.engine.connect() as conn, conn.begin() as transaction:
        yield conn
        transaction.rollback()


def sql_client_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.kind is SpanKind.CLIENT and span.attributes and span.attributes.get("db.system") == "postgresql"
    ]


def test_no_backend_module_reads_the_sqlalchemy_instrumentations_private_state() -> None:
    """EngineTracer's `_otel_span` and `_handle_error` are private: our spans must not depend on them again."""
    offenders = []
    for path in sorted((REPO_ROOT / "backend").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and node.attr in {"_otel_span", "_handle_error"}:
                if node.attr == "_otel_span" or "sqlalchemy" in ast.unparse(node.value):
                    offenders.append(f"{where} .{node.attr}")
            elif isinstance(node, ast.Constant) and node.value == "_otel_span":
                offenders.append(f"{where} '_otel_span'")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "opentelemetry.instrumentation.sqlalchemy"
            ):
                offenders.append(f"{where} from {node.module} import ...")
            elif isinstance(node, ast.ImportFrom) and node.module == "opentelemetry.instrumentation":
                offenders += [f"{where} import {alias.name}" for alias in node.names if alias.name == "sqlalchemy"]
    assert offenders == []
    assert sql_spans.SPAN_ATTRIBUTE != "_otel_span"


def test_a_statement_span_has_the_instrumentations_contract(
    connection: Connection, captured_spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("parent") as parent:
        rows = connection.execute(text("SELECT id FROM products WHERE name = :name"), {"name": SECRET}).all()
    assert rows == []
    [span] = sql_client_spans(captured_spans)
    url = connection.engine.url
    assert span.name == "SELECT products"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.sqlalchemy"
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "db.system": "postgresql",
        "db.statement": "SELECT id FROM products WHERE name = %(name)s",
        "db.operation": "SELECT",
        "db.sql.table": "products",
        "db.name": url.database,
        "db.user": url.username,
        "server.address": url.host,
        "server.port": url.port or 5432,
    }


def test_a_failed_statement_span_carries_the_error_class_and_sqlstate_but_no_driver_message(
    connection: Connection, captured_spans: InMemorySpanExporter
) -> None:
    with pytest.raises(exc.DataError) as raised:
        connection.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET})
    assert SECRET in str(raised.value.orig)  # the driver's message does quote the value
    [span] = sql_client_spans(captured_spans)  # ended by the error (no after_cursor_execute follows)
    assert span.name == "SELECT"
    assert span.parent is None  # not in a request: a root span
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "InvalidTextRepresentation (SQLSTATE 22P02)"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "InvalidTextRepresentation"
    assert span.attributes["db.response.status_code"] == "22P02"
    assert SECRET not in repr(dict(span.attributes)) + repr(span.events)


def test_executemany_is_one_span_with_placeholders(
    connection: Connection, captured_spans: InMemorySpanExporter
) -> None:
    connection.execute(text("CREATE TEMP TABLE span_rows (label text) ON COMMIT DROP"))
    connection.execute(text("INSERT INTO span_rows (label) VALUES (:label)"), [{"label": SECRET}, {"label": "b"}])
    assert connection.execute(text("SELECT count(*) FROM span_rows")).scalar_one() == 2
    create, insert, select = sql_client_spans(captured_spans)
    assert (create.name, insert.name, select.name) == ("CREATE", "INSERT span_rows", "SELECT span_rows")
    assert insert.attributes is not None
    assert insert.attributes["db.statement"] == "INSERT INTO span_rows (label) VALUES (%(label)s)"
    assert all(span.end_time is not None and span.status.status_code is StatusCode.UNSET for span in (create, insert))


def test_suppressed_instrumentation_makes_no_span(connection: Connection, captured_spans: InMemorySpanExporter) -> None:
    with suppress_instrumentation():
        connection.execute(text("SELECT 1"))
    connection.execute(text("SELECT 2"))
    assert [span.attributes and span.attributes["db.statement"] for span in sql_client_spans(captured_spans)] == [
        "SELECT 2"
    ]


def test_semantic_convention_opt_in_selects_the_attribute_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sql_spans.SEMCONV_OPT_IN, "database/dup,http")
    names = sql_spans.SqlNames()
    attributes: dict[str, object] = {}
    names.db(attributes, "db.name", "db.namespace", "x")
    names.peer(attributes, "db.internal", 5432)
    assert attributes == {"db.name": "x", "db.namespace": "x", "server.address": "db.internal", "server.port": 5432}

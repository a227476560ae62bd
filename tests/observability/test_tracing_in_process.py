"""Tracing wiring in-process: spans of the Flask app, SQL and Redis; configuration; lost-span accounting."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from backend.base.config import Settings
from backend.extensions import redis_client
from backend.observability import tracing
from scripts.devservices import REPO_ROOT

DB = "postgresql://u@127.0.0.1/x"


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("otel_spans_dropped_total", {"reason": reason}) or 0.0


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, ("backend", "backend")),
        ({"SERVICE_NAME": "svc"}, ("svc", "svc")),
        ({"JAEGER_SERVICE_NAME": "legacy"}, ("legacy", "backend")),
        ({"JAEGER_SERVICE_NAME": "legacy", "SERVICE_NAME": "svc"}, ("legacy", "svc")),
        ({"JAEGER_SERVICE_NAME": "legacy", "OTEL_RESOURCE_ATTRIBUTES": "a=1,service.name=attr"}, ("attr", "attr")),
        ({"JAEGER_SERVICE_NAME": "legacy", "OTEL_SERVICE_NAME": "otel"}, ("otel", "otel")),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr", "OTEL_SERVICE_NAME": "otel"}, ("otel", "otel")),
        ({"OTEL_SERVICE_NAME": "otel", "SERVICE_NAME": "svc"}, ("otel", "svc")),
    ],
)
def test_service_name_precedence(env: dict[str, str], name: tuple[str, str]) -> None:
    """(trace service.name, log `service`): OTEL_* name every signal, JAEGER_SERVICE_NAME only traces."""
    settings = Settings.from_env({"DATABASE_URL": DB, **env})
    assert (tracing.service_name(settings), settings.service_name) == name


def test_resource_attributes_win_over_defaults_and_the_service_name_over_them() -> None:
    env = {
        "DATABASE_URL": DB,
        "APP_ENV": "production",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging,team=qa%20line,service.name=attr",
        "OTEL_SERVICE_NAME": "otel",
    }
    attributes = tracing.build_resource(Settings.from_env(env), "9.9.9").attributes
    assert attributes["service.name"] == "otel"
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["team"] == "qa line"
    assert attributes["service.version"] == "9.9.9"
    default = tracing.build_resource(Settings.from_env({"DATABASE_URL": DB, "APP_ENV": "test"}), "1").attributes
    assert (default["service.name"], default["deployment.environment.name"]) == ("backend", "test")


def test_exporter_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)

    def endpoint(**env: str) -> str | None:
        return tracing.exporter_endpoint(Settings.from_env({"DATABASE_URL": DB, **env}))

    assert endpoint() is None
    assert endpoint(JAEGER_AGENT_HOST="jaeger") == "http://jaeger:4318/v1/traces"
    both = {"JAEGER_AGENT_HOST": "jaeger", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert endpoint(**both) == "http://collector:4318/v1/traces"


def test_request_sql_and_redis_spans(app: APIFlask, client: FlaskClient, captured_spans: InMemorySpanExporter) -> None:
    created = client.post("/products", json={"name": "Bloc", "price": 19.9, "category": "Foie gras"})
    assert created.status_code == 201
    [root] = server_spans(captured_spans)
    assert root.name == "POST /products"
    assert format(root.context.trace_id, "032x") == created.headers["X-Trace-Id"]
    [insert] = [s for s in captured_spans.get_finished_spans() if s.name == "INSERT products"]
    assert insert.parent is not None
    assert insert.parent.span_id == root.context.span_id
    assert insert.attributes is not None
    assert insert.attributes["db.operation"] == "INSERT"
    assert "Bloc" not in str(insert.attributes["db.statement"])

    client_redis = redis_client.of(app).client
    assert client_redis is not None
    with trace.get_tracer(__name__).start_as_current_span("job"):
        client_redis.set("observability:test", "value-not-in-span")
    [redis_span] = [s for s in captured_spans.get_finished_spans() if s.name == "SET"]
    assert redis_span.kind is SpanKind.CLIENT
    assert redis_span.attributes is not None
    assert redis_span.attributes["db.system"] == "redis"
    assert redis_span.attributes["db.statement"] == "SET ? ?"


def test_a_request_stopped_by_an_early_guard_is_still_traced(
    client: FlaskClient, captured_spans: InMemorySpanExporter
) -> None:
    response = client.post("/products", data="name=x", content_type="text/plain")
    assert response.status_code == 415
    [root] = server_spans(captured_spans)
    assert format(root.context.trace_id, "032x") == response.headers["X-Trace-Id"]
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 415
    assert root.status.status_code is StatusCode.UNSET  # a client error is not a server failure


def test_handled_server_errors_are_recorded(client: FlaskClient, captured_spans: InMemorySpanExporter) -> None:
    assert client.get("/error?kind=sql").status_code == 500
    [root] = server_spans(captured_spans)
    assert root.status.status_code is StatusCode.ERROR
    [event] = [e for e in root.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "sqlalchemy.exc.ProgrammingError"
    assert str(event.attributes["exception.message"]).startswith("UndefinedTable (SQLSTATE 42P01)")
    spans = captured_spans.get_finished_spans()
    [failed_sql] = [s for s in spans if s.kind is SpanKind.CLIENT and s.status.status_code is StatusCode.ERROR]
    assert failed_sql.name == "SELECT chaos_table_that_does_not_exist"
    assert failed_sql.status.status_code is StatusCode.ERROR
    assert failed_sql.status.description == "UndefinedTable (SQLSTATE 42P01)"


DISABLED_PROBE = """
import json, redis
from opentelemetry import trace
from backend import create_app
app = create_app()
client = app.test_client()
traced = client.get("/health/live", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
plain = client.get("/health/live")
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    "flask": getattr(app, "_is_instrumented_by_opentelemetry", False),
    "redis": hasattr(redis.Redis.execute_command, "__wrapped__"),
    "headers": [traced.headers["X-Trace-Id"], plain.headers["X-Trace-Id"]],
}))
"""


def test_otel_sdk_disabled_means_no_instrumentation(settings: Settings) -> None:
    env = {**os.environ, "OTEL_SDK_DISABLED": "true", "DATABASE_URL": settings.database_url, "LOG_LEVEL": "ERROR"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", DISABLED_PROBE], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["provider"] == "ProxyTracerProvider"  # no SDK provider, no exporter thread
    assert probe["flask"] is False
    assert probe["redis"] is False
    traced, plain = probe["headers"]
    assert traced == "0af7651916cd43dd8448eb211c80319c"  # a caller's trace id is still echoed
    assert len(plain) == 32
    assert plain != traced


class _FailingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls == 1:
            return SpanExportResult.FAILURE
        raise ConnectionError("collector gone")


def test_failed_exports_are_counted_and_warned_about_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = tracing.DropReporter("http://collector:4318/v1/traces", clock=lambda: now[0])
    exporter = tracing.ReportingExporter(_FailingExporter(), reporter)
    spans = [ReadableSpan(name=str(i)) for i in range(3)]
    before = dropped("export_failed")
    with caplog.at_level(logging.WARNING, logger="backend.observability.tracing"):
        assert exporter.export(spans) is SpanExportResult.FAILURE
        now[0] = 30
        assert exporter.export(spans[:2]) is SpanExportResult.FAILURE
        now[0] = 61
        reporter.dropped(1, "export_failed")
    assert dropped("export_failed") - before == 6
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "otel_spans_dropped"]
    assert [getattr(r, "dropped", 0) for r in warnings] == [3, 3]
    assert "collector gone" in getattr(warnings[1], "last_error", "")


def test_a_full_queue_counts_each_discarded_span() -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            entered.set()
            release.wait(5)
            return SpanExportResult.SUCCESS

    reporter = tracing.DropReporter("http://collector:4318/v1/traces")
    processor = tracing.CountingBatchSpanProcessor(
        Blocking(), reporter, max_queue_size=2, max_export_batch_size=1, schedule_delay_millis=60000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    before = dropped("queue_full")
    try:
        tracer.start_span("first").end()
        assert entered.wait(5)  # the exporter holds the first span; the queue has room for 2 more
        for index in range(5):
            tracer.start_span(f"span-{index}").end()
        assert dropped("queue_full") - before == 3
    finally:
        release.set()
        provider.shutdown()


def test_metrics_scrapes_are_not_traced(client: FlaskClient, captured_spans: InMemorySpanExporter) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert len(response.headers["X-Trace-Id"]) == 32
    assert captured_spans.get_finished_spans() == ()

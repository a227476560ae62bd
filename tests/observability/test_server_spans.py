"""The app's server spans (backend.observability.server_spans) are the ones opentelemetry-instrumentation-flask
makes: two small Flask apps, one per instrumentation, answer the same requests and their spans are compared (the
reference's copies of the query string with credentials masked, which ours does when the span starts)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, abort
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from backend.observability import server_spans

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _app(name: str) -> Flask:
    app = Flask(name)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/metrics")
    def scrape() -> str:
        return "up 1\n"

    @app.post("/gone")
    def gone() -> str:
        abort(410)

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("deliberate")

    return app


@pytest.fixture(scope="module", params=["fast", "stock"])
def apps(request: pytest.FixtureRequest) -> tuple[Flask, Flask]:
    """The reference and the app instrumented as ours is: our spans, or (FAST_PATHS without server_spans)
    FlaskInstrumentor with the query string masked by its request hook."""
    reference, ours = _app("reference"), _app("ours")
    FlaskInstrumentor.instrument_app(reference, excluded_urls=r"^https?://[^/]+/metrics(\?.*)?$")
    server_spans.instrument_app(ours, ("/metrics",), fast=request.param == "fast")
    return reference, ours


def _described(span: ReadableSpan, redacted: bool = False) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    if redacted:
        attributes = server_spans.redact_request_attributes(attributes)
    scope = span.instrumentation_scope
    assert scope is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "trace_id": span.context.trace_id if span.parent else None,  # random for a new trace
        "parent": span.parent.span_id if span.parent else None,
        "attributes": attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "scope": (scope.name, scope.version, scope.schema_url),
    }


REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/items/7", {}),
    ("GET", "/items/7?limit=5&token=abc", {"User-Agent": "curl/8.5.0"}),
    ("GET", "/items/7", {"traceparent": TRACEPARENT, "User-Agent": "Googlebot/2.1"}),
    ("GET", "/items/7", {"uber-trace-id": "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331:0:1"}),
    ("GET", "/nowhere", {"Host": "example.test:8443"}),
    ("GET", "/gone", {}),
    ("POST", "/gone", {"Content-Type": "application/json"}),
    ("PURGE", "/items/7", {}),
    ("GET", "/crash", {}),
    ("GET", "/metrics", {}),
    ("GET", "/metrics?name[]=up", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_same_server_span_as_the_flask_instrumentation(
    apps: tuple[Flask, Flask], captured_spans: InMemorySpanExporter, method: str, path: str, headers: dict[str, str]
) -> None:
    described = []
    for app in apps:
        captured_spans.clear()
        status = app.test_client().open(path, method=method, headers=headers).status_code
        spans = captured_spans.get_finished_spans()
        described.append((status, [_described(span, redacted=app is apps[0]) for span in spans]))
    reference, ours = described
    assert ours == reference
    assert "abc" not in str(ours)
    traced = not path.startswith("/metrics")
    assert [span["kind"] for span in ours[1]] == ([SpanKind.SERVER] if traced else [])


def test_the_span_is_current_inside_the_request(captured_spans: InMemorySpanExporter) -> None:
    from opentelemetry import trace

    ours = _app("current")
    seen: list[int] = []

    @ours.get("/current")
    def current() -> str:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return "ok"

    server_spans.instrument_app(ours, ())
    assert ours.test_client().get("/current").status_code == 200
    [span] = captured_spans.get_finished_spans()
    assert seen == [span.context.span_id]
    assert not trace.get_current_span().get_span_context().is_valid  # detached after the request

"""The hand-written OTLP encoder must decode to exactly what the SDK's encoder produces."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from backend.observability import otlp_encoding


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "test", "service.version": "1.2.3"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope.one", "0.1", schema_url="https://opentelemetry.io/schemas/1.21.0")
    other = provider.get_tracer("scope.two")
    with tracer.start_as_current_span("GET /products/<id>", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "http.request.method": "GET",
                "server.port": 8000,
                "negative": -5,
                "big": 2**62,
                "ratio": 0.25,
                "flag": True,
                "off": False,
                "empty": "",
                "unicode": "foie gras à l'été ✓",
                "list": ["a", "b"],
                "numbers": [1, 2, 3],
            }
        )
        server.add_event("something", {"detail": "x", "count": 3})
        with other.start_as_current_span("SELECT products", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.statement", "SELECT 1")
            child.set_status(Status(StatusCode.ERROR, "UndefinedTable"))
        with tracer.start_as_current_span("linked", links=[Link(server.get_span_context(), {"k": "v"})]) as span:
            span.set_status(Status(StatusCode.OK))
    remote = trace_state_span(provider)
    return [*exporter.get_finished_spans(), remote]


def trace_state_span(provider: TracerProvider) -> ReadableSpan:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(
        0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1")])
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope.remote")
    with tracer.start_as_current_span("child of remote", context=trace.set_span_in_context(NonRecordingSpan(parent))):
        pass
    return exporter.get_finished_spans()[-1]


def test_fast_encoding_decodes_to_the_sdk_encoding() -> None:
    spans = _spans()
    expected = sdk_encode_spans(spans)
    decoded = ExportTraceServiceRequest.FromString(otlp_encoding.encode_spans(spans))
    assert decoded == expected
    assert len(decoded.resource_spans[0].scope_spans) == 3  # scope.one, scope.two, scope.remote
    # Twice: the memoised attribute, status, resource and scope bytes give the same request.
    assert ExportTraceServiceRequest.FromString(otlp_encoding.encode_spans(spans)) == expected


def test_the_attribute_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_encoding, "MAX_CACHED_ATTRIBUTES", 10)
    otlp_encoding._attribute_cache.clear()
    for n in range(50):
        otlp_encoding._attributes(9, {"url.path": f"/products/{n}"})
    assert len(otlp_encoding._attribute_cache) <= 10


def test_equal_values_of_other_types_or_signs_keep_their_own_bytes() -> None:
    # 1 == True == 1.0 and 0.0 == -0.0: a memo keyed on the value alone would reuse the first one's bytes.
    resource = Resource.create({"service.name": "test"})
    values = [1, True, 1.0, 0.0, -0.0, "1", b"1", 1, True, 0.0, -0.0]
    spans = [
        ReadableSpan(
            "s", _context(n), None, resource, {"v": value}, (), (), SpanKind.INTERNAL, start_time=1, end_time=2
        )
        for n, value in enumerate(values, start=1)
    ]
    assert otlp_encoding.encode_spans(spans) == sdk_encode_spans(spans).SerializeToString()


def _context(span_id: int) -> SpanContext:
    return SpanContext(0x1234, span_id, is_remote=False, trace_flags=TraceFlags(1))

"""Guards around the OpenTelemetry SDK's private internals (docs/private-internals.md): with today's versions the
fast paths are selected; with internals that differ the public path runs, still exports, and one warning says so."""

from __future__ import annotations

import collections
import json
import logging
import types
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from flask import Flask
from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk import _shared_internal
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend.base.config import FAST_PATHS
from backend.observability import internals, otlp_encoding, server_spans, tracing
from backend.observability.logging import JsonFormatter
from tests.observability.receiver import OtlpReceiver


@pytest.fixture(autouse=True)
def fresh_switches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test probes anew and may warn again; the process's cached choice is restored afterwards."""
    monkeypatch.setattr(internals, "_reported", set())
    otlp_encoding.exporter_class.cache_clear()
    yield
    otlp_encoding.exporter_class.cache_clear()


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", "") == internals.EVENT]


def export_one_span(endpoint: str, name: str) -> tracing.CountingBatchSpanProcessor:
    """One span through the processor the app builds (`tracing._span_processor`) with every fast path, flushed."""
    processor = tracing._span_processor(endpoint + "/v1/traces", FAST_PATHS)
    assert isinstance(processor, tracing.CountingBatchSpanProcessor)
    provider = TracerProvider(resource=Resource.create({"service.name": "guard-test"}), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("guard").start_span(name).end()
    assert provider.force_flush(10_000)
    provider.shutdown()
    return processor


def test_todays_sdk_selects_the_fast_exporter(caplog: pytest.LogCaptureFixture) -> None:
    assert otlp_encoding.fast_path_problem() is None
    with caplog.at_level(logging.WARNING):
        assert otlp_encoding.exporter_class() is otlp_encoding.FastOTLPSpanExporter
    assert fallback_warnings(caplog) == []


def test_the_probe_spans_cover_every_shape_the_encoder_writes() -> None:
    spans = otlp_encoding.sample_spans()
    decoded = ExportTraceServiceRequest.FromString(otlp_encoding.encode_spans(spans))
    assert decoded == trace_encoder.encode_spans(spans)
    server, client = decoded.resource_spans[0].scope_spans[0].spans, decoded.resource_spans[0].scope_spans[1].spans
    assert server[0].events
    assert server[0].trace_state
    assert client[0].links
    kinds = {attribute.value.WhichOneof("value") for attribute in server[0].attributes}
    assert {"array_value", "kvlist_value", "bytes_value", "double_value", "int_value", "bool_value"} <= kinds


class _RenamedClient(OTLPSpanExporter):
    """An SDK version that keeps its HTTP client under another name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sender = self.__dict__.pop("_client")

    def shutdown(self) -> None:
        self._sender.shutdown()


def test_the_probe_names_a_missing_exporter_attribute() -> None:
    assert otlp_encoding.fast_path_problem(_RenamedClient) == "_RenamedClient has no _client"


def test_an_sdk_encoding_differently_falls_back_to_the_sdk_exporter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_encode = trace_encoder.encode_spans

    def future_encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        request = real_encode(spans)
        for resource_spans in request.resource_spans:
            resource_spans.resource.attributes.add(key="sdk.future", value=AnyValue(string_value="yes"))
        return request

    # A later SDK whose requests carry something this encoder does not write (its exporter sends them too).
    monkeypatch.setattr(trace_encoder, "encode_spans", future_encode)
    monkeypatch.setattr(trace_exporter, "encode_spans", future_encode)
    receiver = OtlpReceiver().start()
    try:
        with caplog.at_level(logging.WARNING):
            assert otlp_encoding.exporter_class() is OTLPSpanExporter
            processor = export_one_span(receiver.endpoint, "after fallback")
            export_one_span(receiver.endpoint, "second worker start")
        received = [span for span in receiver.spans if span.name == "after fallback"]
    finally:
        receiver.stop()
    assert type(processor.span_exporter._inner) is OTLPSpanExporter  # type: ignore[attr-defined]
    # Exported by the SDK's own path (its encoder's extra attribute) and decoded by the receiver.
    assert len(received) == 1
    assert received[0].resource["sdk.future"] == "yes"
    assert received[0].resource["service.name"] == "guard-test"
    [warning] = fallback_warnings(caplog)  # once, however many processors are built
    line = json.loads(JsonFormatter().format(warning))
    assert line["level"] == "WARNING"
    assert line["library"] == "opentelemetry-exporter-otlp-proto-http"
    assert line["library_version"] == internals.library_version("opentelemetry-exporter-otlp-proto-http")
    assert line["fallback"] == "OTLPSpanExporter"
    assert "differs from the SDK's encoder" in line["reason"]


def test_the_fast_exporter_sends_decodable_spans() -> None:
    receiver = OtlpReceiver().start()
    try:
        processor = export_one_span(receiver.endpoint, "fast path")
        received = [span for span in receiver.spans if span.name == "fast path"]
    finally:
        receiver.stop()
    assert type(processor.span_exporter._inner) is otlp_encoding.FastOTLPSpanExporter  # type: ignore[attr-defined]
    assert len(received) == 1
    assert "sdk.future" not in received[0].resource


class _Collecting(SpanExporter):
    def __init__(self) -> None:
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.names.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


def build_processor(exporter: SpanExporter) -> tracing.CountingBatchSpanProcessor:
    reporter = tracing.DropReporter("http://collector:4318/v1/traces")
    return tracing.CountingBatchSpanProcessor(tracing.ReportingExporter(exporter, reporter), reporter)


def test_todays_batch_processor_queue_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        processor = build_processor(_Collecting())
    try:
        assert isinstance(processor._counted_queue, collections.deque)
        assert processor._counted_queue.maxlen == 2048  # the SDK's default max_queue_size
    finally:
        processor.shutdown()
    assert fallback_warnings(caplog) == []


def test_another_queue_layout_exports_without_counting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An SDK whose batch queue is not a bounded deque (the SDK enforces its size itself).
    unbounded = types.SimpleNamespace(deque=lambda items, maxlen: collections.deque(items))
    monkeypatch.setattr(_shared_internal, "collections", unbounded)
    exporter = _Collecting()
    with caplog.at_level(logging.WARNING):
        processor = build_processor(exporter)
        build_processor(_Collecting()).shutdown()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("guard").start_span("still exported").end()
    provider.shutdown()
    assert processor._counted_queue is None
    assert exporter.names == ["still exported"]
    [warning] = fallback_warnings(caplog)
    assert warning.__dict__["library"] == "opentelemetry-sdk"
    assert "not a bounded deque" in warning.__dict__["reason"]


def test_server_spans_without_the_private_helpers_fall_back_to_flask_instrumentor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, captured_spans: InMemorySpanExporter
) -> None:
    assert server_spans.fast_path_problem() is None  # today's opentelemetry-instrumentation
    server_spans.fast_path_available.cache_clear()
    monkeypatch.setattr(server_spans, "_start_internal_or_server_span", lambda tracer, name: None)  # a new signature
    try:
        with caplog.at_level(logging.WARNING):
            apps = [Flask(f"fallback{n}") for n in range(2)]
            for app in apps:
                app.get("/items/<int:item_id>")(lambda item_id: {"id": item_id})
                hook = server_spans.instrument_app(app, ("/metrics",))
                assert app.before_request_funcs[None] == [hook]  # FlaskInstrumentor's, wrapped to mask the query
            response = apps[0].test_client().get("/items/3?token=secret")
    finally:
        server_spans.fast_path_available.cache_clear()
    assert response.status_code == 200
    [span] = captured_spans.get_finished_spans()
    assert span.name == "GET /items/<int:item_id>"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == server_spans.TRACER_NAME
    assert "secret" not in str(span.attributes)  # masked by the request hook
    [warning] = fallback_warnings(caplog)
    assert warning.__dict__["fast_path"] == "server_spans"
    assert warning.__dict__["fallback"] == "FlaskInstrumentor"

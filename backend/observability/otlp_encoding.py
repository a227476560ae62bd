"""OTLP trace request encoding written straight to protobuf wire bytes, with the repeated parts memoised.

The SDK's encoder builds one protobuf object per span, attribute and value (~45 µs a span), in the worker process
that also serves requests. Here a span is a few byte strings joined: the attributes (mostly the same key/value
pairs on every request), the resource and the scope are encoded once and reused. The bytes decode to the same
`ExportTraceServiceRequest` as the SDK's encoder (tests/observability compare both); rare shapes (events, links,
array or mapping values) are delegated to the SDK's own message encoders.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _encode_events,
    _encode_links,
    _span_flags,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

# Distinct key/value pairs kept encoded; cleared when full (paths and user agents are unbounded).
MAX_CACHED_ATTRIBUTES = 8192

_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_FIXED32 = struct.Struct("<I")
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_attribute_cache: dict[tuple[str, type, Any], bytes] = {}
_status_cache: dict[tuple[int, str | None], bytes] = {}
_resource_cache: dict[Any, bytes] = {}
_scope_cache: dict[Any, bytes] = {}


_SMALL_VARINTS = [bytes([n]) for n in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64  # int64: two's complement on ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode("utf-8"))


def _any_value(value: Any) -> bytes | None:
    """AnyValue bytes of a scalar; None for shapes left to the SDK encoder."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _text(1, value)
    if isinstance(value, int):
        return b"\x18" + _varint(value) if _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(7, value)
    return None


def _key_value(key: str, value: Any) -> bytes:
    """KeyValue bytes (memoised for scalar values)."""
    cache_key = (key, type(value), value) if isinstance(value, str | bool | int | float | bytes) else None
    if cache_key is not None:
        cached = _attribute_cache.get(cache_key)
        if cached is not None:
            return cached
    encoded_value = _any_value(value) if value is not None else b""
    if encoded_value is None:
        return _encode_key_value(key, value).SerializeToString()
    encoded = _text(1, key) + _field(2, encoded_value)
    if cache_key is not None:
        if len(_attribute_cache) >= MAX_CACHED_ATTRIBUTES:
            _attribute_cache.clear()
        _attribute_cache[cache_key] = encoded
    return encoded


def _attributes(number: int, attributes: Any) -> bytes:
    if not attributes:
        return b""
    return b"".join(_field(number, _key_value(key, value)) for key, value in attributes.items())


def _status(code: int, description: str | None) -> bytes:
    key = (code, description)
    cached = _status_cache.get(key)
    if cached is None:
        body = (_text(2, description) if description else b"") + (b"\x18" + _varint(code) if code else b"")
        cached = _field(15, body)
        if len(_status_cache) < 1024:
            _status_cache[key] = cached
    return cached


def _messages(number: int, messages: Sequence[Any] | None) -> bytes:
    return b"".join(_field(number, message.SerializeToString()) for message in messages or ())


def _count(number: int, value: int) -> bytes:
    return b"" if not value else _varint(number << 3) + _varint(value)


def encode_span(span: ReadableSpan) -> bytes:
    """Span message bytes (field numbers of opentelemetry/proto/trace/v1/trace.proto)."""
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no context")
    parent = span.parent
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(_text(3, ",".join(f"{key}={value}" for key, value in context.trace_state.items())))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts.append(_text(5, span.name))
    kind = _KIND[span.kind]
    parts.append(b"\x30" + _varint(kind))
    parts.append(b"\x39" + _FIXED64.pack(span.start_time or 0))
    parts.append(b"\x41" + _FIXED64.pack(span.end_time or 0))
    parts.append(_attributes(9, span.attributes))
    parts.append(_count(10, span.dropped_attributes))
    if span.events:
        parts.append(_messages(11, _encode_events(span.events)))
    parts.append(_count(12, span.dropped_events))
    if span.links:
        parts.append(_messages(13, _encode_links(span.links)))
    parts.append(_count(14, span.dropped_links))
    status = span.status
    parts.append(_status(status.status_code.value, status.description))
    parts.append(b"\x85\x01" + _FIXED32.pack(_span_flags(parent)))
    return b"".join(parts)


def _resource(resource: Any) -> bytes:
    cached = _resource_cache.get(resource)
    if cached is None:
        cached = _field(1, _encode_resource(resource).SerializeToString())
        _resource_cache[resource] = cached
    return cached


def _scope(scope: Any) -> bytes:
    cached = _scope_cache.get(scope)
    if cached is None:
        cached = _field(1, _encode_instrumentation_scope(scope).SerializeToString())
        if len(_scope_cache) < 256:
            _scope_cache[scope] = cached
    return cached


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """ExportTraceServiceRequest bytes: spans grouped by resource, then by instrumentation scope."""
    # Grouped by identity: Resource.__hash__ serialises all its attributes to JSON on every call.
    grouped: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        scopes = grouped.setdefault(id(resource), (resource, {}))[1]
        scopes.setdefault(id(scope), (scope, []))[1].append(_field(2, encode_span(span)))
    request = []
    for resource, scopes in grouped.values():
        scope_spans = []
        for scope, encoded in scopes.values():
            schema = scope.schema_url if scope is not None else None
            body = _scope(scope) + b"".join(encoded) + (_text(3, schema) if schema else b"")
            scope_spans.append(_field(2, body))
        schema_url = resource.schema_url
        body = _resource(resource) + b"".join(scope_spans) + (_text(3, schema_url) if schema_url else b"")
        request.append(_field(1, body))
    return b"".join(request)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (transport, retries, compression, size limit, self-metrics) fed by
    `encode_spans` above."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            serialized = encode_spans(spans)
        except Exception:
            serialized = None
        # Shut down, an odd batch or one over the size limit: the SDK's path logs, drops and counts it.
        if self._shutdown or serialized is None or 0 < self._max_request_size < len(serialized):
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            export_result = self._client.export(serialized)
            if not export_result.success:
                result.error = export_result.error
                if export_result.status_code is not None:
                    result.error_attrs = {"http.response.status_code": export_result.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

"""OTLP trace request encoding written straight to protobuf wire bytes, with the repeated parts memoised.

The SDK's encoder builds one protobuf object per span, attribute and value (~45 µs a span), in the worker process
that also serves requests. Here a span is a few byte strings joined: the attributes (mostly the same key/value
pairs on every request), the resource and the scope are encoded once and reused. The bytes decode to the same
`ExportTraceServiceRequest` as the SDK's encoder: `exporter_class()` checks it at startup, with the SDK exporter
internals `FastOTLPSpanExporter` relies on, and falls back to the SDK's own exporter when either differs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import struct
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from backend.observability.internals import report_fallback

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
_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano (fixed64 field 7), end_time_unix_nano (field 8)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KIND_FIELD = {kind: b"\x30" + bytes([number]) for kind, number in _KIND.items()}
_LOCAL_FLAGS = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE)  # flags: fixed32 field 16
_REMOTE_FLAGS = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE | _IS_REMOTE)

_attribute_cache: dict[tuple[Any, ...], bytes] = {}
_status_cache: dict[tuple[int, str | None], bytes] = {}
_resource_cache: dict[Any, bytes] = {}
_scope_cache: dict[Any, bytes] = {}
_name_cache: dict[str, bytes] = {}


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


def _any_value(value: Any) -> bytes:
    """AnyValue bytes (as the SDK's encoder: None is an empty value; ValueError for a type it refuses too)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _text(1, value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer out of int64 range: {value}")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(key), item)) for key, item in value.items()))
    raise ValueError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    """KeyValue bytes."""
    return _text(1, key) + _field(2, _any_value(value))


# Exact types whose (key, value) field bytes are memoised. Not float: -0.0 == 0.0 would share bytes.
_CACHED_TYPES = frozenset({str, int, bool, bytes})


def _attribute_fields(number: int, attributes: Any) -> bytes:
    """The attributes as repeated KeyValue fields `number`; each (key, scalar value) field is encoded once."""
    cache = _attribute_cache
    parts = []
    for key, value in attributes.items():
        kind = value.__class__
        # A str never equals another type's value; an int may equal a bool (1 == True), hence the type.
        if kind is str:
            cache_key: tuple[Any, ...] = (number, key, value)
        elif kind in _CACHED_TYPES:
            cache_key = (number, key, kind, value)
        else:  # floats, arrays, mappings (maybe unhashable)
            parts.append(_field(number, _key_value(key, value)))
            continue
        encoded = cache.get(cache_key)
        if encoded is None:
            if len(cache) >= MAX_CACHED_ATTRIBUTES:
                cache.clear()
            encoded = cache[cache_key] = _field(number, _key_value(key, value))
        parts.append(encoded)
    return b"".join(parts)


def _attributes(number: int, attributes: Any) -> bytes:
    return _attribute_fields(number, attributes) if attributes else b""


def _status(code: int, description: str | None) -> bytes:
    key = (code, description)
    cached = _status_cache.get(key)
    if cached is None:
        body = (_text(2, description) if description else b"") + (b"\x18" + _varint(code) if code else b"")
        cached = _field(15, body)
        if len(_status_cache) < 1024:
            _status_cache[key] = cached
    return cached


def _count(number: int, value: int) -> bytes:
    return b"" if not value else _varint(number << 3) + _varint(value)


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _events(events: Sequence[Any]) -> bytes:
    """Span.Event messages: time_unix_nano 1, name 2, attributes 3, dropped_attributes_count 4."""
    return b"".join(
        _field(
            11,
            (b"\x09" + _FIXED64.pack(event.timestamp) if event.timestamp else b"")
            + _text(2, event.name)
            + _attributes(3, event.attributes)
            + _count(4, event.dropped_attributes),
        )
        for event in events
    )


def _links(links: Sequence[Any]) -> bytes:
    """Span.Link messages (as the SDK's encoder: no trace_state): ids 1 and 2, attributes 4, dropped 5, flags 6."""
    return b"".join(
        _field(
            13,
            b"\x0a\x10"
            + link.context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + link.context.span_id.to_bytes(8, "big")
            + _attributes(4, link.attributes)
            + _count(5, link.dropped_attributes)
            + b"\x35"
            + _FIXED32.pack(_flags(link.context)),
        )
        for link in links
    )


def _name(name: str) -> bytes:
    encoded = _name_cache.get(name)
    if encoded is None:
        encoded = _text(5, name)
        if len(_name_cache) < 1024:
            _name_cache[name] = encoded
    return encoded


def encode_span(span: ReadableSpan) -> bytes:
    """Span message bytes (field numbers of opentelemetry/proto/trace/v1/trace.proto)."""
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no context")
    parent = span.parent
    head = b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")
    if context.trace_state:
        head += _text(3, ",".join(f"{key}={value}" for key, value in context.trace_state.items()))
    if parent is not None:
        head += b"\x22\x08" + parent.span_id.to_bytes(8, "big")
    attributes = span.attributes
    status = span.status
    parts = [
        head,
        _name(span.name),
        _KIND_FIELD[span.kind],
        _TIMES.pack(0x39, span.start_time or 0, 0x41, span.end_time or 0),
        _attribute_fields(9, attributes) if attributes else b"",
        _count(10, span.dropped_attributes),
    ]
    if span.events:
        parts.append(_events(span.events))
    parts.append(_count(12, span.dropped_events))
    if span.links:
        parts.append(_links(span.links))
    parts.append(_count(14, span.dropped_links))
    parts.append(_status(status.status_code.value, status.description))
    parts.append(_REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
    return b"".join(parts)


def _resource(resource: Any) -> bytes:
    cached = _resource_cache.get(resource)
    if cached is None:
        cached = _field(1, _attributes(1, resource.attributes))
        _resource_cache[resource] = cached
    return cached


def _scope(scope: Any) -> bytes:
    cached = _scope_cache.get(scope)
    if cached is None:
        body = b""
        if scope is not None:
            version = scope.version
            body = _text(1, scope.name) + (_text(2, version) if version else b"") + _attributes(3, scope.attributes)
        cached = _field(1, body)
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


# What FastOTLPSpanExporter.export reads from the SDK exporter (private there, hence probed).
EXPORTER_INTERNALS = ("_shutdown", "_max_request_size", "_metrics", "_client")


def sample_spans() -> list[ReadableSpan]:
    """Spans of every shape the encoder writes: parents local and remote, trace state, events, links, arrays."""
    resource = Resource({"service.name": "probe", "service.version": "1"}, "https://opentelemetry.io/schemas/1")
    scope = InstrumentationScope("probe", "0.1", "https://opentelemetry.io/schemas/1", {"scope.attr": 1})
    state = TraceState([("vendor", "v1")])
    root = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1), state)
    remote = SpanContext(root.trace_id, 0x00F067AA0BA902B7, True, TraceFlags(1))
    child = SpanContext(root.trace_id, 0x5FB397BE34D26B51, False, TraceFlags(1))
    attributes: dict[str, Any] = {
        "s": "é✓",
        "i": -5,
        "big": 2**62,
        "f": 0.25,
        "b": True,
        "raw": b"\x00",
        "list": ("a", None),
        "map": {"k": [1, 2], "empty": ()},
    }
    event = Event("exception", {"exception.type": "ValueError", "n": 3}, timestamp=3)
    return [
        ReadableSpan(
            "GET /products/<id>", root, remote, resource, attributes, (event,), (), SpanKind.SERVER,
            status=Status(StatusCode.ERROR, "ValueError"), start_time=1, end_time=4, instrumentation_scope=scope,
        ),
        ReadableSpan(
            "SELECT products", child, root, resource, {"db.statement": "SELECT 1"}, (), (Link(remote, {"k": "v"}),),
            SpanKind.CLIENT, status=Status(StatusCode.OK), start_time=2, end_time=3,
        ),
    ]  # fmt: skip


def _dataclass_fields(annotation: Any) -> set[str]:
    """Field names of a dataclass annotation, or of the item type of `Iterator[...]` / `ContextManager[...]`."""
    args = typing.get_args(annotation)
    target = args[0] if args else annotation
    return {field.name for field in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else set()


def fast_path_problem(base: type[OTLPSpanExporter] = OTLPSpanExporter) -> str | None:
    """Why `FastOTLPSpanExporter` cannot run on the installed SDK; None when the internals it uses are as expected
    and `encode_spans` decodes to what the SDK's public encoder produces."""
    try:
        exporter = base(endpoint="http://127.0.0.1:9/v1/traces")  # never sends
        try:
            missing = [name for name in EXPORTER_INTERNALS if not hasattr(exporter, name)]
            if missing:
                return f"{base.__name__} has no {', '.join(missing)}"
            if exporter._shutdown is not False or not isinstance(exporter._max_request_size, int):
                return "_shutdown or _max_request_size changed type"
            client_export, operation = exporter._client.export, exporter._metrics.export_operation
            inspect.signature(client_export).bind(b"")
            inspect.signature(operation).bind(1)
            if not {"success", "status_code", "error"} <= _dataclass_fields(
                typing.get_type_hints(client_export).get("return")
            ):
                return "_client.export returns another result type"
            if not {"error", "error_attrs"} <= _dataclass_fields(typing.get_type_hints(operation).get("return")):
                return "_metrics.export_operation yields another result type"
        finally:
            exporter.shutdown()
        spans = sample_spans()
        if ExportTraceServiceRequest.FromString(encode_spans(spans)) != trace_encoder.encode_spans(spans):
            return "encode_spans differs from the SDK's encoder"
    except Exception as exc:  # a signature that does not bind, hints that do not resolve, ...
        return f"{type(exc).__name__}: {exc}"
    return None


@functools.cache
def exporter_class() -> type[OTLPSpanExporter]:
    """The switch: FastOTLPSpanExporter when the probe passes, else the SDK's exporter (logged once)."""
    problem = fast_path_problem()
    if problem is None:
        return FastOTLPSpanExporter
    report_fallback("opentelemetry-exporter-otlp-proto-http", "FastOTLPSpanExporter", "OTLPSpanExporter", problem)
    return OTLPSpanExporter

"""The trace and span ids of "now", shared by log lines, the X-Trace-Id header and metric exemplars.

Inside a recorded span they are the span's ids. When tracing is off (OTEL_SDK_DISABLED) or the request is not
traced (/metrics), a request still gets a trace id: the one of a valid incoming W3C `traceparent`, else a random
one, so a response and its log lines stay correlated.
"""

from __future__ import annotations

import re
import secrets

from flask import g, has_request_context
from opentelemetry import trace

FALLBACK_ATTRIBUTE = "observability_trace_id"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_INVALID_TRACE_ID = "0" * 32


def current_ids() -> tuple[str, str]:
    """(trace_id, span_id) as lowercase hex; ("", "") outside a span and outside a request."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    if has_request_context():
        fallback: str | None = getattr(g, FALLBACK_ATTRIBUTE, None)
        if fallback:
            return fallback, ""
    return "", ""


def is_sampled() -> bool:
    """True when the current span is recorded and exported (worth an exemplar)."""
    context = trace.get_current_span().get_span_context()
    return context.is_valid and context.trace_flags.sampled


def fallback_trace_id(traceparent: str | None) -> str:
    """The trace id of a valid `traceparent` header, else a fresh random one."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != _INVALID_TRACE_ID:
            return match.group(1)
    return secrets.token_hex(16)

"""Per-request hooks: X-Trace-Id header, HTTP metrics and the access-log line.

Both hooks are moved to the front of the app's hook lists (`install`), so a request stopped by a later
before_request (415 guard, rate limit, auth) is still timed, counted, logged and carries X-Trace-Id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, Response, g, request
from opentelemetry import trace

from backend.observability import metrics
from backend.observability.ids import FALLBACK_ATTRIBUTE, current_ids, fallback_trace_id, is_sampled
from backend.observability.redaction import redact_query

access_logger = logging.getLogger("backend.access")

TRACE_HEADER = "X-Trace-Id"
QUIET_PATHS = frozenset({metrics.METRICS_PATH})  # logged at DEBUG: Prometheus scrapes every few seconds
MAX_FIELD_LENGTH = 2048
_STARTED = "observability_started"


def _clip(value: str) -> str:
    return value if len(value) <= MAX_FIELD_LENGTH else value[:MAX_FIELD_LENGTH] + "...(truncated)"


def before_request() -> None:
    """Start the clock; outside a traced request, pick the trace id the response and logs will carry."""
    setattr(g, _STARTED, time.perf_counter())
    if not trace.get_current_span().get_span_context().is_valid:
        setattr(g, FALLBACK_ATTRIBUTE, fallback_trace_id(request.headers.get("traceparent")))


def _annotate_span(route: str | None, query: str) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if query:
        span.set_attribute("url.query", query)  # already masked when the span opened; the same value again
    if route is None:
        # Semantic conventions: without a route the name is the method alone (paths would make endless names).
        span.update_name(request.method if request.method in metrics.HTTP_METHODS else "HTTP")


def _log_access(response: Response, route: str | None, query: str, duration: float) -> None:
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    if response.status_code >= 500:
        level = logging.ERROR
    if not access_logger.isEnabledFor(level):
        return
    path = _clip(request.path)
    method = request.method
    status = response.status_code
    fields = {
        "event": "http_request",
        "method": method,
        "path": path,
        "query": _clip(query),
        "route": route,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
        "bytes": response.content_length,
        "remote_addr": request.remote_addr,
        "user_agent": _clip(request.user_agent.string),
    }
    # Logger.log without its findCaller stack walk: the caller is known (and the JSON line carries no source line).
    record = access_logger.makeRecord(
        access_logger.name, level, __file__, 0, "%s %s %s", (method, path, status), None, "_log_access", fields
    )
    access_logger.handle(record)


def after_request(response: Response) -> Response:
    """X-Trace-Id header, span touch-ups, metrics and the access-log line of the finished request."""
    started = getattr(g, _STARTED, None)
    duration = time.perf_counter() - started if started is not None else 0.0
    trace_id, _ = current_ids()
    if trace_id:
        response.headers[TRACE_HEADER] = trace_id
    route = request.url_rule.rule if request.url_rule is not None else None
    query = redact_query(request.query_string.decode("latin-1"))
    _annotate_span(route, query)
    if not (getattr(request, "prom_do_not_track", False) or getattr(request, "prom_exclude_all", False)):
        metrics.observe_request(
            request.method,
            route or metrics.UNMATCHED_PATH,
            response.status_code,
            duration,
            request.content_length or 0,
            response.content_length,
            trace_id if is_sampled() else None,
            request.headers.get("Upgrade", "").lower() == "websocket",
        )
    _log_access(response, route, query, duration)
    return response


def install(app: Flask, span_opener: Callable[[], None] | None = None) -> None:
    """Put the hooks first in line: before_request hooks run in list order, after_request hooks in reverse.
    `span_opener` (the tracing hook that opens the request's span) goes before them."""
    app.before_request(before_request)
    app.after_request(after_request)
    befores = app.before_request_funcs[None]
    first = [hook for hook in (span_opener, before_request) if hook is not None and hook in befores]
    befores[:] = first + [hook for hook in befores if hook not in first]
    afters = app.after_request_funcs[None]
    afters[:] = [after_request] + [hook for hook in afters if hook is not after_request]

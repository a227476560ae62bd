"""The server span of each request, as opentelemetry-instrumentation-flask makes it, for half its cost.

Same tracer (instrumentation scope, schema URL), name, kind, parent (the global propagators), start time (WSGI
entry), attributes, status and exception events, built with that package's own helpers. What it also does per
request is left out: collecting the request attributes a second time, rebuilding the request URL three times to
test it against the excluded URLs (here a set of paths), setting every attribute twice, and recording OTel HTTP
metrics that no MeterProvider exports here (Prometheus has them).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from flask.globals import request_ctx
from opentelemetry import context, trace
from opentelemetry.instrumentation import wsgi as otel_wsgi
from opentelemetry.instrumentation.flask import FlaskInstrumentor, get_default_span_name
from opentelemetry.instrumentation.flask.version import __version__ as flask_instrumentation_version
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
)

from backend.observability.internals import report_fallback
from backend.observability.redaction import redact_query

# Private helpers of opentelemetry-instrumentation (docs/private-internals.md): probed by `fast_path_problem`, and
# `instrument_app` falls back to FlaskInstrumentor when they are gone or changed.
try:
    from opentelemetry.instrumentation._semconv import (
        _get_schema_url,
        _OpenTelemetrySemanticConventionStability,
        _OpenTelemetryStabilitySignalType,
    )
    from opentelemetry.instrumentation.utils import _start_internal_or_server_span

    _IMPORT_PROBLEM: str | None = None
except ImportError as exc:  # pragma: no cover (a version without them)
    _IMPORT_PROBLEM = f"ImportError: {exc}"

TRACER_NAME = "opentelemetry.instrumentation.flask"  # the scope FlaskInstrumentor's spans carry
_START = "backend.server_span.start"
_SPAN = "backend.server_span.span"
_ACTIVATION = "backend.server_span.activation"
_TOKEN = "backend.server_span.token"
_REQUEST_CONTEXT = "backend.server_span.request_context"


def _path(environ: dict[str, Any]) -> str:
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


# Attributes that carry the raw query string, per semantic-convention mode: `url.query` (stable), `http.target` and
# `http.url` (old, also sent with OTEL_SEMCONV_STABILITY_OPT_IN=http/dup). A device token may be in the query.
_QUERY_ATTRIBUTES = ("url.query", "http.target", "http.url", "url.full")


def redact_request_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """`attributes` with the values of sensitive query parameters masked wherever the query string was copied."""
    for name in _QUERY_ATTRIBUTES:
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            continue
        if name == "url.query":
            attributes[name] = redact_query(value)
            continue
        head, separator, query = value.partition("?")
        if separator:
            attributes[name] = head + separator + redact_query(query)
    return attributes


def fast_path_problem() -> str | None:
    """Why the server spans cannot be made here with the installed opentelemetry-instrumentation (its private
    `_semconv` helpers and `_start_internal_or_server_span`); None when they are as expected."""
    if _IMPORT_PROBLEM is not None:
        return _IMPORT_PROBLEM
    try:
        stability = _OpenTelemetrySemanticConventionStability
        stability._initialize()
        mode = stability._get_opentelemetry_stability_opt_in_mode(_OpenTelemetryStabilitySignalType.HTTP)
        if not isinstance(_get_schema_url(mode), str):
            return "_get_schema_url does not return a URL"
        inspect.signature(_start_internal_or_server_span).bind(
            tracer=None,
            span_name="",
            start_time=None,
            context_carrier={},
            context_getter=otel_wsgi.wsgi_getter,
            attributes={},
        )
        inspect.signature(otel_wsgi.collect_request_attributes).bind({}, mode)
        inspect.signature(otel_wsgi.add_response_attributes).bind(None, "200 OK", [], None, mode)
    except Exception as exc:  # a renamed member, a signature that does not bind, ...
        return f"{type(exc).__name__}: {exc}"
    return None


@functools.cache
def fast_path_available() -> bool:
    """The probe, once per process (a failure logged once)."""
    problem = fast_path_problem()
    if problem is not None:
        report_fallback("opentelemetry-instrumentation", "server_spans", "FlaskInstrumentor", problem)
    return problem is None


def _mask_current_span() -> None:
    """The query string masked wherever FlaskInstrumentor copied it (its request_hook runs before it sets them)."""
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None)
    if span.is_recording() and attributes:
        masked = redact_request_attributes(dict(attributes))
        span.set_attributes({key: value for key, value in masked.items() if attributes.get(key) != value})


def instrument_app_stock(app: Flask, excluded_paths: Iterable[str]) -> Callable[[], None] | None:
    """The library path: FlaskInstrumentor, its span-opening hook wrapped to mask the query string (None when its
    hook is not found: a masking hook then runs after FlaskInstrumentor's, wherever that is)."""
    excluded = ",".join(rf"^https?://[^/]+{re.escape(path)}(\?.*)?$" for path in excluded_paths)
    FlaskInstrumentor.instrument_app(app, excluded_urls=excluded, enable_commenter=False)
    befores = app.before_request_funcs.setdefault(None, [])
    opener: Callable[[], None] | None = getattr(app, "_before_request", None)  # the hook that opens the span
    if opener is None or opener not in befores:  # another layout: FlaskInstrumentor's order, masked by a later hook
        app.before_request(_mask_current_span)
        return None

    def open_masked_span() -> None:
        opener()
        _mask_current_span()

    befores[befores.index(opener)] = open_masked_span
    return open_masked_span


def instrument_app(app: Flask, excluded_paths: Iterable[str], fast: bool = True) -> Callable[[], None] | None:
    """Trace every request of `app` except those to `excluded_paths`; return the before_request hook opening the
    span (it must run first: `backend.observability.http.install` puts it there; None: see
    `instrument_app_stock`). `fast=False` (FAST_PATHS without server_spans), or a failed probe: FlaskInstrumentor
    does it."""
    if not (fast and fast_path_available()):
        return instrument_app_stock(app, excluded_paths)
    excluded = frozenset(excluded_paths)
    _OpenTelemetrySemanticConventionStability._initialize()
    mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )
    tracer = trace.get_tracer(TRACER_NAME, flask_instrumentation_version, schema_url=_get_schema_url(mode))
    # The instrumentation reads these on every request; they are process settings.
    capture_request = bool(os.environ.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST))
    capture_response = bool(os.environ.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE))
    wsgi_app = app.wsgi_app

    def traced_wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if _path(environ) in excluded:
            return wsgi_app(environ, start_response)
        environ[_START] = time.time_ns()

        def start_traced_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            span = environ.get(_SPAN)
            propagator = get_global_response_propagator()
            if propagator:
                propagator.inject(headers, setter=otel_wsgi.default_response_propagation_setter)
            if span is not None:
                otel_wsgi.add_response_attributes(span, status, headers, None, mode)
                if capture_response and span.is_recording() and span.kind == trace.SpanKind.SERVER:
                    span.set_attributes(otel_wsgi.collect_custom_response_headers_attributes(headers))
            return start_response(status, headers, *args)

        return wsgi_app(environ, start_traced_response)

    def open_server_span() -> None:
        environ = request.environ
        if _path(environ) in excluded:
            return
        attributes = redact_request_attributes(otel_wsgi.collect_request_attributes(environ, mode))
        if request.url_rule is not None:
            attributes[SpanAttributes.HTTP_ROUTE] = request.url_rule.rule
        span, token = _start_internal_or_server_span(
            tracer=tracer,
            span_name=get_default_span_name(),
            start_time=environ.get(_START),  # None in a test_request_context: the hook's own time
            context_carrier=environ,
            context_getter=otel_wsgi.wsgi_getter,
            attributes=attributes,
        )
        if capture_request and span.is_recording() and span.kind == trace.SpanKind.SERVER:
            span.set_attributes(otel_wsgi.collect_custom_request_headers_attributes(environ))
        activation = trace.use_span(span, end_on_exit=True)
        activation.__enter__()
        environ[_ACTIVATION] = activation
        environ[_REQUEST_CONTEXT] = weakref.ref(request_ctx._get_current_object())  # type: ignore[attr-defined]
        environ[_SPAN] = span
        environ[_TOKEN] = token

    def close_server_span(exc: BaseException | None) -> None:
        environ = request.environ
        activation = environ.get(_ACTIVATION)
        opened_in = environ.get(_REQUEST_CONTEXT)
        # A request context pushed inside the request (copy_current_request_context) does not own the span.
        if activation is None or opened_in is None or opened_in() is not request_ctx._get_current_object():  # type: ignore[attr-defined]
            return
        if exc is None:
            activation.__exit__(None, None, None)
        else:
            activation.__exit__(type(exc), exc, exc.__traceback__)
        token = environ.pop(_TOKEN, None)
        environ.pop(_ACTIVATION, None)
        if token:
            context.detach(token)

    app.wsgi_app = traced_wsgi_app  # type: ignore[method-assign]
    setattr(app, "_is_instrumented_by_opentelemetry", True)  # noqa: B010 (FlaskInstrumentor then leaves it alone)
    app.before_request(open_server_span)
    app.teardown_request(close_server_span)
    return open_server_span

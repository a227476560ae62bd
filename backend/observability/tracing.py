"""OpenTelemetry tracing: provider per gunicorn worker, OTLP/HTTP export, Flask/SQLAlchemy/Redis spans.

`configure_provider` runs in each worker after the fork (gunicorn `post_fork`), or from `init_app` outside
gunicorn; `shutdown` flushes on worker exit. Export runs in the batch processor's thread with a bounded queue and
a short timeout, so an unreachable collector costs requests nothing: lost spans are counted in
`otel_spans_dropped_total{reason}` and reported by one warning a minute at most.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from backend.base.config import Settings
from backend.base.config_values import OTLP_HTTP_PORT, parse_resource_attributes
from backend.base.errors import ApiError
from backend.observability import metrics, server_spans, sql_spans
from backend.observability.exceptions import record_on_span
from backend.observability.internals import report_fallback
from backend.observability.otlp_encoding import exporter_class
from backend.observability.sampling import build_sampler

logger = logging.getLogger(__name__)

DEFAULT_EXPORT_TIMEOUT = 2.0
WARNING_INTERVAL = 60.0
# Logs of the export path, replaced by DropReporter's rate-limited warning (they would repeat for every batch).
EXPORT_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk._shared_internal")
GAVE_UP_MESSAGE = "Failed to export spans batch due to timeout"
NOT_TRACED_PATHS = (metrics.METRICS_PATH,)

_lock = threading.Lock()
_provider: TracerProvider | None = None
_deferred = False


def service_name(settings: Settings) -> str:
    """The trace `service.name` (`Settings.trace_service_name`: OTEL_* first, then JAEGER_*, then SERVICE_NAME)."""
    return settings.trace_service_name


def exporter_endpoint(settings: Settings) -> str | None:
    """OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, JAEGER_AGENT_HOST."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    if settings.jaeger_agent_host:
        return f"http://{settings.jaeger_agent_host}:{OTLP_HTTP_PORT}/v1/traces"
    return None


class DropReporter:
    """Counts lost spans and logs at most one warning per `interval` seconds (with the count since the last)."""

    def __init__(
        self, endpoint: str, interval: float = WARNING_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.endpoint = endpoint
        self.last_error = ""
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._unreported = 0
        self._last_warning: float | None = None

    def dropped(self, count: int, reason: str) -> None:
        """Record `count` spans lost for `reason` (queue_full or export_failed)."""
        metrics.spans_dropped.labels(reason).inc(count)
        with self._lock:
            self._unreported += count
            now = self._clock()
            if self._last_warning is not None and now - self._last_warning < self._interval:
                return
            self._last_warning, unreported, self._unreported = now, self._unreported, 0
        logger.warning(
            "%d spans dropped: trace export to %s failing",
            unreported,
            self.endpoint,
            extra={
                "event": "otel_spans_dropped",
                "dropped": unreported,
                "reason": reason,
                "endpoint": self.endpoint,
                "last_error": self.last_error,
            },
        )


class _ExportLogFilter(logging.Filter):
    """Swallows the exporter's per-batch warnings, keeping the last one for DropReporter's message."""

    def __init__(self, reporter: DropReporter) -> None:
        super().__init__()
        self.reporter = reporter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        # The final "gave up" line says less than the retry lines before it (which name the cause).
        if not (message.startswith(GAVE_UP_MESSAGE) and self.reporter.last_error):
            self.reporter.last_error = message[:500]
        return False


class ReportingExporter(SpanExporter):
    """Delegates to the real exporter and reports failed batches as dropped spans."""

    def __init__(self, inner: SpanExporter, reporter: DropReporter) -> None:
        self._inner = inner
        self._reporter = reporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            self._reporter.last_error = repr(exc)[:500]
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._reporter.dropped(len(spans), "export_failed")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that reports the spans its full queue discards.

    The SDK has no public queue length: the count reads its private bounded deque, found at construction. With
    another SDK layout the processor runs unchanged without counting (the SDK logs "Queue full" itself).
    """

    def __init__(self, exporter: SpanExporter, reporter: DropReporter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._reporter = reporter
        self._counted_queue = self._sdk_queue()

    def _sdk_queue(self) -> deque[Any] | None:
        """The SDK's span queue when it is the bounded deque this class expects; None (logged once) otherwise."""
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        if isinstance(queue, deque) and queue.maxlen is not None and queue.maxlen > 0:
            return queue
        report_fallback(
            "opentelemetry-sdk",
            "queue_full span counting",
            "BatchSpanProcessor without counting (the SDK logs queue-full drops)",
            f"BatchSpanProcessor._batch_processor._queue is {type(queue).__name__}, not a bounded deque",
        )
        return None

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._counted_queue
        sampled = span.context is not None and span.context.trace_flags.sampled
        if sampled and queue is not None and len(queue) >= (queue.maxlen or 0):
            self._reporter.dropped(1, "queue_full")
        super().on_end(span)


def _export_timeout() -> float | None:
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
        return None  # the exporter reads them
    return DEFAULT_EXPORT_TIMEOUT


def _span_processor(endpoint: str, fast_paths: Sequence[str]) -> BatchSpanProcessor:
    reporter = DropReporter(endpoint)
    log_filter = _ExportLogFilter(reporter)
    for name in EXPORT_LOGGERS:
        export_logger = logging.getLogger(name)
        for old in [f for f in export_logger.filters if isinstance(f, _ExportLogFilter)]:
            export_logger.removeFilter(old)
        export_logger.addFilter(log_filter)
    exporter_type = exporter_class() if "otlp_encoder" in fast_paths else OTLPSpanExporter
    exporter = ReportingExporter(exporter_type(endpoint=endpoint, timeout=_export_timeout()), reporter)
    if "span_drops" in fast_paths:
        return CountingBatchSpanProcessor(exporter, reporter)
    # The stock processor: queue-full drops are not counted (and its per-span warning stays behind log_filter).
    return BatchSpanProcessor(exporter)


def build_resource(settings: Settings, version: str) -> Resource:
    """The process's resource: defaults, then OTEL_RESOURCE_ATTRIBUTES over them, then the service name."""
    return Resource.create(
        {
            SERVICE_VERSION: version,
            "deployment.environment.name": settings.app_env,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            **parse_resource_attributes(settings.otel_resource_attributes),
            SERVICE_NAME: service_name(settings),
        }
    )


def defer_until_fork() -> None:
    """Called by gunicorn.conf.py: in the master, `init_app` must not start exporter threads (post_fork will)."""
    global _deferred
    _deferred = True


def configure_provider(settings: Settings, version: str = "") -> TracerProvider | None:
    """Install the process's TracerProvider once (None when OTEL_SDK_DISABLED). Call after any fork."""
    global _provider, _deferred
    if settings.otel_sdk_disabled:
        return None
    with _lock:
        _deferred = False
        if _provider is not None:
            return _provider
        provider = TracerProvider(resource=build_resource(settings, version), sampler=build_sampler(settings))
        endpoint = exporter_endpoint(settings)
        if endpoint:
            provider.add_span_processor(_span_processor(endpoint, settings.fast_paths))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def shutdown() -> None:
    """Export what is queued and stop the exporter thread (gunicorn `worker_exit`)."""
    global _provider
    with _lock:
        provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def _is_server_error(exc: BaseException) -> bool:
    if isinstance(exc, HTTPException):
        return (exc.code or 500) >= 500
    if isinstance(exc, ApiError):
        return exc.status >= 500
    if isinstance(exc, HTTPError):
        return exc.status_code >= 500
    return True


def _record_handled_exceptions(app: APIFlask) -> None:
    """Our errorhandler(Exception) turns exceptions into 500 responses before the Flask instrumentation sees them:
    record them on the server span here."""
    handle_user_exception = app.handle_user_exception

    def recording(exc: Exception) -> Any:
        span = trace.get_current_span()
        if span.is_recording() and _is_server_error(exc):
            record_on_span(span, exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        return handle_user_exception(exc)

    setattr(app, "handle_user_exception", recording)  # noqa: B010 (an instance attribute shadows the method)


def _set_propagators() -> None:
    if os.environ.get("OTEL_PROPAGATORS"):
        return  # the API already built them from the variable
    # Extraction runs in order and the last valid header wins: W3C traceparent over uber-trace-id.
    set_global_textmap(
        CompositePropagator([JaegerPropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )


def init_app(app: APIFlask, settings: Settings, engine: Engine) -> Callable[[], None] | None:
    """Trace the app's requests, the engine's statements and Redis commands (nothing when OTEL_SDK_DISABLED); the
    before_request hook that opens the request's span, if any, is returned (`server_spans.instrument_app`)."""
    if settings.otel_sdk_disabled:
        return None
    if not _deferred:
        configure_provider(settings, getattr(app, "version", "") or "")
    # Stable HTTP attribute names (http.request.method, url.path, client.address, ...); read once per process.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    _set_propagators()
    span_opener = server_spans.instrument_app(app, NOT_TRACED_PATHS, fast="server_spans" in settings.fast_paths)
    _record_handled_exceptions(app)
    sql_spans.instrument_engine(engine)
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return span_opener

"""The peer's gunicorn configuration: the app's worker class, workers and threads; multiprocess metrics and
per-worker tracing as prometheus-flask-exporter's and OpenTelemetry's docs show."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

# Before prometheus_client is first imported (it picks multiprocess mode then).
_owned_dir = os.path.join(tempfile.gettempdir(), f"peer-prometheus-{os.getpid()}")
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_dir
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from bench.peer.app import instrumented  # noqa: E402

wsgi_app = "bench.peer.app:create_app()"
bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8001')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "256"))
timeout = 60
keepalive = 5
accesslog = None  # the app writes the access line (JSON, with trace ids)
errorlog = "-"


def post_fork(server: Any, worker: Any) -> None:
    """Tracing threads are started in each worker, never in the master."""
    if not instrumented():
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "peer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def worker_exit(server: Any, worker: Any) -> None:
    if instrumented():
        from opentelemetry import trace

        shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
        if shutdown is not None:
            shutdown()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def on_exit(server: Any) -> None:
    if os.environ["PROMETHEUS_MULTIPROC_DIR"] == _owned_dir:
        shutil.rmtree(_owned_dir, ignore_errors=True)

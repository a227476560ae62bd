"""Fixtures: an OTLP receiver, gunicorn servers exporting to it (or to nothing), span capture in-process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend.base.config import FAST_PATHS
from backend.base.config_values import parse_subset
from scripts.devservices import free_port
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.receiver import OtlpReceiver
from tests.support.server import GunicornServer, session_env

SERVICE_NAME = "sqal-backend-under-test"


def fast_paths_in_use() -> tuple[str, ...]:
    """The FAST_PATHS of this run (`make test` runs this suite once more with none: the stock library paths)."""
    raw = os.environ.get("FAST_PATHS")
    return FAST_PATHS if raw is None else parse_subset(*FAST_PATHS)(raw)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `fast_path("name")` checks what only that replacement does: skipped on the stock paths."""
    for marker in item.iter_markers("fast_path"):
        if marker.args[0] not in fast_paths_in_use():
            pytest.skip(f"FAST_PATHS without {marker.args[0]}: the stock library path does not do this")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as one JSON object (AssertionError naming the first line that is not)."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        records.append(record)
    return records


def access_lines(server: GunicornServer, trace_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The access-log lines carrying `trace_id` (waits for at least one)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            record
            for record in json_lines(server.stdout())
            if record.get("event") == "http_request" and record.get("trace_id") == trace_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def server_env(services: TestServices, **extra: str) -> dict[str, str]:
    """The session's gunicorn environment (`session_env`) with chaos routes, 8 threads and a fast span export."""
    return session_env(
        services, **{"CHAOS_ENABLED": "true", "GUNICORN_THREADS": "8", "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}
    )


@pytest.fixture(scope="module")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def traced_server(
    app: APIFlask, services: TestServices, otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn, 2 workers, exporting traces to the module's receiver."""
    truncate_all(app)
    env = server_env(services, OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint, JAEGER_SERVICE_NAME=SERVICE_NAME)
    server = GunicornServer(env, tmp_path_factory.mktemp("traced"), workers=2).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def untraced_server(
    app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn, 4 workers, whose trace backend is down (nothing listens on the OTLP port)."""
    truncate_all(app)
    env = server_env(services, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}", DB_POOL_SIZE="3")
    server = GunicornServer(env, tmp_path_factory.mktemp("untraced"), workers=4).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def captured_spans(app: APIFlask) -> Iterator[InMemorySpanExporter]:
    """Spans ended in this process during the test (the session app's provider, exported in memory)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # the processor stays registered but exports nothing more

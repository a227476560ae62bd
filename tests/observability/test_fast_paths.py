"""FAST_PATHS: each of our replacements of a library path can be switched back to the stock one (empty: all)."""

from __future__ import annotations

import dataclasses

import pytest
from apiflask import APIFlask
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from backend import create_app
from backend.base.config import FAST_PATHS, ConfigError, Settings
from backend.core import resilience
from backend.extensions import breakers
from backend.observability import otlp_encoding, tracing

ENDPOINT = "http://127.0.0.1:9/v1/traces"  # never reached: the processors are shut down unused


def test_the_setting_lists_known_replacements_only() -> None:
    def read(**env: str) -> tuple[str, ...]:
        return Settings.from_env({"DATABASE_URL": "postgresql://u@db/x", **env}).fast_paths

    assert read() == FAST_PATHS
    assert read(FAST_PATHS="") == ()
    assert read(FAST_PATHS=" Breaker,otlp_encoder ") == ("otlp_encoder", "breaker")
    with pytest.raises(ConfigError, match=r"FAST_PATHS.*unknown sql"):
        read(FAST_PATHS="breaker,sql")


@pytest.mark.parametrize("fast_paths", [FAST_PATHS, ()])
def test_the_span_processor_follows_the_setting(fast_paths: tuple[str, ...]) -> None:
    processor = tracing._span_processor(ENDPOINT, fast_paths)
    try:
        exporter = processor._batch_processor._exporter
        assert isinstance(exporter, tracing.ReportingExporter)
        inner = type(exporter._inner)
        if fast_paths:
            assert isinstance(processor, tracing.CountingBatchSpanProcessor)
            assert inner is otlp_encoding.FastOTLPSpanExporter
        else:
            assert type(processor) is BatchSpanProcessor
            assert inner is OTLPSpanExporter
    finally:
        processor.shutdown()


@pytest.fixture(scope="module")
def stock_app(app: APIFlask, settings: Settings) -> APIFlask:
    """An app on the stock paths, on the session database (`app` migrated it)."""
    return create_app(dataclasses.replace(settings, fast_paths=()))


def test_an_app_on_the_stock_paths_uses_the_libraries(stock_app: APIFlask) -> None:
    assert breakers.of(stock_app)[resilience.POSTGRESQL]._lock_free is False
    hook = stock_app.before_request_funcs[None][0]
    assert hook.__name__ == "open_masked_span"  # FlaskInstrumentor's hook, wrapped to mask the query string
    assert stock_app.before_request_funcs[None][0] is hook


def test_an_app_on_the_stock_paths_serves_and_traces(stock_app: APIFlask) -> None:
    with stock_app.test_client() as client:
        response = client.get("/products")
        assert response.status_code == 200
        assert len(response.headers["X-Trace-Id"]) == 32
        scrape = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="GET",path="/products",status="200"}' in scrape
    assert "app_info" not in scrape  # prometheus-flask-exporter's view: no domain collectors (ours adds them)

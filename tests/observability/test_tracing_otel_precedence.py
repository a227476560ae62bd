"""The real gunicorn given both the OTEL_* variables and the JAEGER_* compatibility ones: the standard ones win,
and the one service name reaches the traces (`service.name`), the logs (`service`) and the metrics (`app_info`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families

from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.conftest import access_lines, server_env
from tests.observability.receiver import SPAN_KIND_SERVER, OtlpReceiver
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.gunicorn]


@pytest.mark.fast_path("metrics_view")  # domain collectors, app_info, the whole process group
def test_otel_variables_win_and_name_every_signal(
    app: APIFlask, services: TestServices, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    truncate_all(app)
    env = server_env(
        services,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME="line-backend",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=staging,service.name=ignored",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="1",
        # The compatibility variables say "another name, sample nothing": they must lose.
        JAEGER_SERVICE_NAME="backend-service",
        JAEGER_SAMPLER_TYPE="const",
        JAEGER_SAMPLER_PARAM="0",
    )
    server = GunicornServer(env, tmp_path, workers=2).start()
    try:
        response = requests.get(server.url("/products"), timeout=5)
        assert response.status_code == 200
        trace_id = response.headers["X-Trace-Id"]
        spans = otlp_receiver.wait_for(trace_id, lambda found: any(s.kind == SPAN_KIND_SERVER for s in found))
        root = next(span for span in spans if span.kind == SPAN_KIND_SERVER)
        assert root.resource["service.name"] == "line-backend"
        assert root.resource["deployment.environment.name"] == "staging"

        [line] = access_lines(server, trace_id)
        assert line["service"] == "line-backend"

        scraped = requests.get(server.url("/metrics"), timeout=5).text
        [info] = [s for f in text_string_to_metric_families(scraped) for s in f.samples if s.name == "app_info"]
        assert info.labels["service_name"] == "line-backend"
        assert info.value == 1
    finally:
        server.stop()

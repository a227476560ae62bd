"""The real gunicorn (2 workers) exports OTLP/HTTP to a receiver in the test; logs carry the same ids."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
import requests
from apiflask import APIFlask

from scripts.services import TestServices
from tests.observability.conftest import SERVICE_NAME, access_lines, json_lines, server_env
from tests.observability.receiver import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, OtlpReceiver, ReceivedSpan
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.gunicorn]

PLACEHOLDER = re.compile(r"%\(\w+\)s")
ROUTE = "/products/<int:product_id>"


def server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    found = [span for span in spans if span.kind == SPAN_KIND_SERVER]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def client_spans(spans: list[ReceivedSpan], system: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.kind == SPAN_KIND_CLIENT and span.attributes.get("db.system") == system]


def sql_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return client_spans(spans, "postgresql")


def has_server_and_sql(spans: list[ReceivedSpan]) -> bool:
    return any(s.kind == SPAN_KIND_SERVER for s in spans) and bool(sql_spans(spans))


def create_product(server: GunicornServer, name: str = "Lobe extra", category: str = "Foie gras") -> int:
    response = requests.post(
        server.url("/products"), json={"name": name, "price": 42.5, "category": category}, timeout=5
    )
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]
    return product_id


def assert_request_trace(receiver: OtlpReceiver, trace_id: str, parent_id: str, product_id: int) -> ReceivedSpan:
    spans = receiver.wait_for(trace_id, has_server_and_sql)
    root = server_span(spans)
    assert root.parent_span_id == parent_id
    assert root.name == f"GET {ROUTE}"
    assert root.resource["service.name"] == SERVICE_NAME
    attributes = root.attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == ROUTE
    assert attributes["url.path"] == f"/products/{product_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["client.address"] == "127.0.0.1"
    assert attributes["user_agent.original"].startswith("python-requests/")
    assert root.status_code != STATUS_ERROR
    for span in sql_spans(spans):
        assert span.parent_span_id == root.span_id
        assert span.attributes["db.system"] == "postgresql"
        assert span.attributes["db.operation"] == "SELECT"
        assert span.attributes["db.sql.table"] == "products"
        assert span.name == "SELECT products"
        assert PLACEHOLDER.search(span.attributes["db.statement"]), span.attributes["db.statement"]
    # the product cache (a miss here: the product was just written) talks to Redis: client spans, arguments masked
    redis_spans = client_spans(spans, "redis")
    assert redis_spans
    for span in redis_spans:
        assert span.parent_span_id == root.span_id
        for command_line in span.attributes["db.statement"].splitlines():  # one line per command of a pipeline
            command, *arguments = command_line.split()
            assert command.isupper()
            if command == "SCRIPT":  # a cache script's first use loads it: "SCRIPT LOAD ?", LOAD is a subcommand
                arguments = arguments[1:]
            assert set(arguments) <= {"?"}
    return root


def test_traceparent_continues_the_callers_trace(traced_server: GunicornServer, otlp_receiver: OtlpReceiver) -> None:
    product_id = create_product(traced_server)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    response = requests.get(
        traced_server.url(f"/products/{product_id}"),
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["X-Trace-Id"] == trace_id
    root = assert_request_trace(otlp_receiver, trace_id, parent_id, product_id)

    [line] = access_lines(traced_server, trace_id)
    assert line["span_id"] == root.span_id
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET",
        f"/products/{product_id}",
        ROUTE,
        200,
    )
    assert line["bytes"] == len(response.content)
    assert line["duration_ms"] > 0
    assert line["remote_addr"] == "127.0.0.1"
    assert line["user_agent"].startswith("python-requests/")
    assert line["level"] == "INFO"
    assert line["service"] == "backend"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])


def test_jaeger_uber_trace_id_header_is_honoured(traced_server: GunicornServer, otlp_receiver: OtlpReceiver) -> None:
    product_id = create_product(traced_server)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    response = requests.get(
        traced_server.url(f"/products/{product_id}"),
        headers={"uber-trace-id": f"{trace_id}:{parent_id}:0:1"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["X-Trace-Id"] == trace_id
    assert_request_trace(otlp_receiver, trace_id, parent_id, product_id)
    assert len(access_lines(traced_server, trace_id)) == 1


def test_sql_spans_never_carry_parameter_values(traced_server: GunicornServer, otlp_receiver: OtlpReceiver) -> None:
    category, name = f"cat-{uuid.uuid4().hex}", f"name-{uuid.uuid4().hex}"
    missing_id = "987654321"
    responses = [
        requests.post(
            traced_server.url("/products"), json={"name": name, "price": 1.5, "category": category}, timeout=5
        ),
        requests.get(traced_server.url("/products"), params={"category": category}, timeout=5),
        requests.get(traced_server.url(f"/products/{missing_id}"), timeout=5),
    ]
    assert [r.status_code for r in responses] == [201, 200, 404]
    statements = []
    for response in responses:
        spans = otlp_receiver.wait_for(response.headers["X-Trace-Id"], has_server_and_sql)
        for span in sql_spans(spans):
            statement = span.attributes["db.statement"]
            statements.append(statement)
            for value in (category, name, missing_id, "1.5"):
                assert value not in statement
                assert all(value not in str(attribute) for attribute in span.attributes.values())
    assert any(s.startswith("INSERT INTO products") for s in statements)
    assert all(PLACEHOLDER.search(s) for s in statements)


def test_unhandled_exception_marks_the_span_and_logs_one_line(
    traced_server: GunicornServer, otlp_receiver: OtlpReceiver
) -> None:
    response = requests.get(traced_server.url("/error?kind=exception"), timeout=5)
    assert response.status_code == 500
    trace_id = response.headers["X-Trace-Id"]
    spans = otlp_receiver.wait_for(trace_id, lambda spans: any(s.kind == SPAN_KIND_SERVER for s in spans))
    root = server_span(spans)
    assert root.status_code == STATUS_ERROR
    assert root.attributes["http.response.status_code"] == 500
    [(_event, attributes)] = [event for event in root.events if event[0] == "exception"]
    assert attributes["exception.type"] == "backend.chaos.ChaosError"
    assert "deliberate" in attributes["exception.message"]
    assert "Traceback" in attributes["exception.stacktrace"]

    records = [r for r in json_lines(traced_server.stdout()) if r["trace_id"] == trace_id]
    [error] = [r for r in records if r.get("event") == "unhandled_exception"]
    assert error["level"] == "ERROR"
    assert error["span_id"] == root.span_id
    assert error["exc_info"]["type"] == "backend.chaos.ChaosError"
    assert "raise ChaosError" in error["exc_info"]["stacktrace"]
    [access] = [r for r in records if r.get("event") == "http_request"]
    assert (access["status"], access["level"]) == (500, "ERROR")


def test_every_output_line_is_json_including_gunicorns_own(traced_server: GunicornServer) -> None:
    assert requests.get(traced_server.url("/health/live"), timeout=5).status_code == 200
    records = json_lines(traced_server.stdout())
    required = {"timestamp", "level", "service", "logger", "message", "trace_id", "span_id"}
    assert all(required <= set(record) for record in records)
    loggers = {record["logger"] for record in records}
    assert {"gunicorn.error", "backend.access"} <= loggers
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Booting worker") for r in records)
    [banner] = [r for r in records if r.get("event") == "startup"]
    assert banner["version"]
    assert banner["workers"] == 2
    assert banner["config"]["DATABASE_URL"] == "set"
    assert banner["endpoints"]["metrics"].endswith("/metrics")
    # gunicorn's own access log is off: the app's line is the only one per request
    assert "gunicorn.access" not in loggers
    json_lines(traced_server.stderr())


def test_user_input_cannot_break_or_forge_a_log_line(
    traced_server: GunicornServer, otlp_receiver: OtlpReceiver
) -> None:
    evil = '"}\n{"level":"CRITICAL","message":"forged"}\r\x1b[31m\\\u2028end'
    agent = 'agent "quoted" {"level":"CRITICAL","message":"forged"} \\ caf\xe9'  # HTTP allows no control chars
    response = requests.get(
        traced_server.url("/products/" + quote(evil, safe="")),
        params={"q": evil},
        headers={"User-Agent": agent},
        timeout=5,
    )
    assert response.status_code == 404
    output = traced_server.stdout()
    records = json_lines(output)  # no extra line, no broken line
    [line] = access_lines(traced_server, response.headers["X-Trace-Id"])
    assert line["path"] == "/products/" + evil
    assert line["route"] is None
    spans = otlp_receiver.wait_for(response.headers["X-Trace-Id"], lambda found: bool(found))
    assert [span.name for span in spans if span.kind == SPAN_KIND_SERVER] == ["GET"]
    assert parse_qs(line["query"])["q"] == [evil]
    assert line["user_agent"] == agent
    assert not [r for r in records if r["message"] == "forged" or r["level"] == "CRITICAL"]
    assert "\x1b" not in output
    assert "\u2028" not in output
    # A control character in a header is refused by gunicorn itself, which logs the refusal in JSON too.
    refused = requests.get(traced_server.url("/health/live"), headers={"User-Agent": "a\x1b[31m"}, timeout=5)
    assert refused.status_code == 400
    records = json_lines(traced_server.stdout())
    assert any(r["logger"] == "gunicorn.error" and "Invalid HTTP Header" in r["message"] for r in records)


def test_credentials_never_reach_logs_or_spans(traced_server: GunicornServer, otlp_receiver: OtlpReceiver) -> None:
    secrets_sent = [f"{kind}-{secrets.token_hex(12)}" for kind in ("bearer", "query", "password", "apikey", "cookie")]
    bearer, query_token, password, api_key, cookie = secrets_sent
    headers = {"Authorization": f"Bearer {bearer}", "X-Api-Key": api_key, "Cookie": f"session={cookie}"}
    trace_ids = []
    for path in (f"/products?token={query_token}&password={password}&limit=5", "/error?kind=exception"):
        response = requests.get(traced_server.url(path), headers=headers, timeout=5)
        trace_ids.append(response.headers["X-Trace-Id"])
    [line] = access_lines(traced_server, trace_ids[0])
    assert line["query"] == "token=[REDACTED]&password=[REDACTED]&limit=5"
    spans = otlp_receiver.wait_for(trace_ids[0], lambda spans: any(s.kind == SPAN_KIND_SERVER for s in spans))
    assert server_span(spans).attributes["url.query"] == "token=[REDACTED]&password=[REDACTED]&limit=5"
    otlp_receiver.wait_for(trace_ids[1], lambda spans: any(s.kind == SPAN_KIND_SERVER for s in spans))
    output = traced_server.stdout() + traced_server.stderr()
    exported = repr([span for trace_id in trace_ids for span in otlp_receiver.trace(trace_id)])
    for secret in secrets_sent:
        assert secret not in output
        assert secret not in exported


def test_spans_still_queued_are_flushed_when_a_worker_exits(
    app: APIFlask, services: TestServices, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = server_env(services, OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000")
    server = GunicornServer(env, tmp_path, workers=1).start()
    try:
        trace_id = requests.get(server.url("/health/live"), timeout=5).headers["X-Trace-Id"]
        time.sleep(0.5)
        assert otlp_receiver.trace(trace_id) == []  # still in the worker's queue (next export in 60 s)
    finally:
        assert server.stop() == 0
    [span] = otlp_receiver.trace(trace_id)
    assert span.name == "GET /health/live"

"""Log injection: newlines, ANSI escapes and JSON fragments sent anywhere never add or break a log line.

Against the real gunicorn, hostile text goes into paths, query strings, headers (User-Agent, X-Request-Id,
traceparent, tracestate, uber-trace-id, baggage, Referer, X-Forwarded-For) and body fields; requests are written
byte for byte on a socket, so header values really hold bare CR/LF. Afterwards every stdout line must be one JSON
object, no forged or ERROR line may exist, raw control characters never reach the stream, and each injected value
reads back from its JSON field exactly as the server received it.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from apiflask import APIFlask

from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.conftest import json_lines
from tests.support.server import GunicornServer, session_server

pytestmark = [pytest.mark.gunicorn]

FORGED = "forged"
FRAGMENT = '"}, {"level":"ERROR","message":"' + FORGED
INJECTIONS = {
    "lf": 'a\n{"level":"ERROR","message":"' + FORGED + '-lf"}',
    "crlf": 'a\r\n{"level":"ERROR","message":"' + FORGED + '-crlf"}',
    "cr": "a\r" + FORGED + "-cr",
    "line_separator": "a\u2028" + FORGED + "-ls\u2029",
    "next_line": "a\u0085" + FORGED + "-nel",
    "ansi": "\x1b[31m" + FORGED + "-ansi\x1b[0m\x1b[2K",
    "json_fragment": FRAGMENT,
    "json_fragment_lf": FRAGMENT + '"}\n{"level":"ERROR","message":"' + FORGED + "-2",
}
HEADERS = ("User-Agent", "X-Request-Id", "traceparent", "tracestate", "uber-trace-id", "baggage", "Referer",
           "X-Forwarded-For")  # fmt: skip
BASE_FIELDS = {"timestamp", "level", "service", "logger", "message", "trace_id", "span_id", "pid"}
LEVELS = {"DEBUG", "INFO", "WARNING"}  # nothing sent here is a server error
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\uffff]")  # ensure_ascii JSON: no control or non-ASCII character


@dataclass
class Exchange:
    """One raw request and what came back."""

    what: str
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(port: int, method: str, target: bytes, headers: dict[str, bytes], body: bytes = b"") -> Exchange:
    """Write the request bytes exactly as given (no client-side validation) and read the whole response."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body:
        lines += [b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return Exchange(f"{method} {target[:80]!r}", int(status_line.split()[1]), response_headers, payload)


def as_received(value: str) -> str:
    """A header value as the WSGI server hands it over: the UTF-8 bytes read as latin-1."""
    return value.encode("utf-8").decode("latin-1")


@dataclass
class Run:
    stdout: str
    stderr: str
    exchanges: list[Exchange]
    expected_fields: list[tuple[str, str, str]]  # (trace id, access-log field, value it must hold)


def send_everything(server: GunicornServer) -> Run:
    exchanges: list[Exchange] = []
    expected: list[tuple[str, str, str]] = []

    def send(method: str, target: str, headers: dict[str, bytes] | None = None, body: Any = None) -> Exchange:
        data = json.dumps(body).encode() if body is not None else b""
        exchange = raw_request(server.port, method, target.encode("latin-1"), headers or {}, data)
        exchanges.append(exchange)
        return exchange

    for name, text in INJECTIONS.items():
        encoded = quote(text, safe="")
        for path in (f"/products/{encoded}", f"/api/sqal/samples/{encoded}", f"/{encoded}"):
            exchange = send("GET", path)
            assert exchange.status == 404, (name, exchange)
            expected.append((exchange.headers["x-trace-id"], "path", path.replace(encoded, text)))
        query = f"category={encoded}&{encoded}={encoded}"
        exchange = send("GET", f"/api/sqal/devices?{query}")
        assert exchange.status == 200, (name, exchange)
        expected.append((exchange.headers["x-trace-id"], "query", query))
        exchange = send("POST", "/api/bugs/", body={"title": text, "description": text, "reporter": text})
        assert exchange.status == 201, (name, exchange.body[:300])
        send("POST", "/api/bugs/", body={text: text, "title": "extra field named after the payload"})
        send("POST", "/products", headers={}, body=None)  # 415, no body
        for header in HEADERS:
            exchange = send("GET", "/health/live", {header: text.encode("utf-8")})
            if header == "User-Agent" and exchange.status == 200:
                expected.append((exchange.headers["x-trace-id"], "user_agent", as_received(text)))
    return Run(server.stdout(), server.stderr(), exchanges, expected)


@pytest.fixture(scope="module")
def run(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Run:
    truncate_all(app)
    # LOG_LEVEL=DEBUG: gunicorn's own notes on refused requests too.
    env = {"GUNICORN_THREADS": "8", "LOG_LEVEL": "DEBUG", "AUTH_MODE": "off"}
    server = session_server(services, tmp_path_factory.mktemp("log-injection"), **env).start()
    try:
        result = send_everything(server)
    finally:
        server.stop()
    return Run(server.stdout(), server.stderr(), result.exchanges, result.expected_fields)


def test_every_line_is_one_json_object_and_nothing_is_forged(run: Run) -> None:
    records = json_lines(run.stdout)
    assert len(records) >= len(run.expected_fields)
    for number, record in enumerate(records, 1):
        assert set(record) >= BASE_FIELDS, f"line {number} lacks base fields: {record}"
        assert record["level"] in LEVELS, f"line {number}: {record}"
        assert not str(record["message"]).startswith(FORGED), f"line {number}: {record}"
        assert not any(str(key).startswith(FORGED) for key in record), f"line {number}: {record}"
    assert FORGED not in run.stderr, run.stderr[-2000:]
    for number, line in enumerate(run.stdout.splitlines(), 1):
        control = RAW_CONTROL.search(line)
        assert control is None, f"line {number}: raw {control.group()!r} at {control.start()}: {line[:300]!r}"


def test_injected_text_stays_inside_its_json_field(run: Run) -> None:
    """Each injected value reads back whole, from the field it was sent in, on exactly one access line."""
    access = [record for record in json_lines(run.stdout) if record.get("event") == "http_request"]
    for trace_id, field, value in run.expected_fields:
        lines = [record for record in access if record["trace_id"] == trace_id]
        assert len(lines) == 1, (trace_id, field, value, len(lines))
        assert lines[0][field] == value, (field, lines[0][field], value)
    user_agents = [field for _, field, _ in run.expected_fields if field == "user_agent"]
    assert user_agents, "no injected User-Agent reached the app: the header checks would be vacuous"


def test_responses_never_echo_injected_text_raw(run: Run) -> None:
    for exchange in run.exchanges:
        trace_id = exchange.headers.get("x-trace-id")
        if trace_id is not None:
            assert re.fullmatch(r"[0-9a-f]{32}", trace_id), exchange
        for name, value in exchange.headers.items():
            assert FORGED not in name + value, (exchange.what, name, value)
            assert RAW_CONTROL.search(name + value) is None, (exchange.what, name, value)
        if exchange.headers.get("content-type", "").startswith("application/json"):
            text = exchange.body.decode("utf-8").removesuffix("\n")
            json.loads(text)  # the error or resource document stays one valid JSON value
            assert RAW_CONTROL.search(text) is None, (exchange.what, text[:300])

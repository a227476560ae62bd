"""Who may hold `/ws/dashboard/` and for how much: the Origin check, the socket budget shared with devices, the
inbound limits, and probes that still answer when every socket slot is taken. Over the real gunicorn (1 worker)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from apiflask import APIFlask
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from backend.sqal.live.guards import (
    DASHBOARD_FRAME_BURST,
    DASHBOARD_MAX_MESSAGE_BYTES,
    InboundLimit,
    origin_allowed,
)
from backend.sqal.websocket import RESERVED_HTTP_THREADS
from scripts.services import TestServices
from tests.sqal.helpers import make_device, start_server
from tests.support.server import GunicornServer

PROBE_TIMEOUT = 3.0  # the Kubernetes probes' timeoutSeconds (deploy/k8s/base/deployment.yaml)
ALLOWED = "http://dashboards.plant.example"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "api.example:8000", (), True),  # not a browser
        ("http://api.example:8000", "api.example:8000", (), True),
        ("HTTPS://API.example", "api.example", (), True),
        ("https://api.example", "api.example:443", (), True),
        ("http://api.example", "api.example:80", (), True),
        ("http://api.example:8001", "api.example:8000", (), False),
        ("https://api.example", "api.example:80", (), False),
        ("http://evil.example", "api.example", (), False),
        ("http://api.example.evil.example", "api.example", (), False),
        ("null", "api.example", (), False),
        ("", "api.example", (), False),
        ("file://api.example", "api.example", (), False),
        ("http://api.example:99999", "api.example", (), False),
        ("http://[::1]:8000", "[::1]:8000", (), True),
        (ALLOWED, "api.example", (ALLOWED + "/",), True),
        ("http://evil.example", "api.example", (ALLOWED,), False),
        ("http://evil.example", "api.example", ("*",), True),
    ],
)
def test_origin_rules(origin: str | None, host: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert origin_allowed(origin, host, allowed) is expected


def test_inbound_limit_cuts_oversized_messages_and_floods() -> None:
    now = [0.0]
    limit = InboundLimit(max_bytes=10, per_second=2, burst=3, clock=lambda: now[0])
    assert limit.check("x" * 10) is None
    assert limit.check("é" * 6) == (1009, "message exceeds 10 bytes")  # 6 characters, 12 bytes
    assert limit.check(b"12345678901") == (1009, "message exceeds 10 bytes")
    assert [limit.check("p") for _ in range(2)] == [None, None]  # the burst of 3 is spent
    assert limit.check("p") == (1008, "too many messages")
    now[0] = 1.0  # two more a second later
    assert [limit.check("p") for _ in range(3)] == [None, None, (1008, "too many messages")]


def dashboard(server: GunicornServer, origin: str | None = None, timeout: float = 10) -> ClientConnection:
    url = f"ws://127.0.0.1:{server.port}/ws/dashboard/"
    return connect(url, origin=origin, open_timeout=timeout, max_queue=None)  # type: ignore[arg-type]


def device(server: GunicornServer, token: str) -> ClientConnection:
    url = f"ws://127.0.0.1:{server.port}/ws/sensors/"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)


def first_frame(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return frame


def refused_with(ws: ClientConnection) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes: its close code and the frames before."""
    frames: list[dict[str, Any]] = []

    deadline = time.monotonic() + 10  # a dashboard left open gets `metrics` every 5 s: give up on time, not silence

    def read_until_closed() -> None:
        while True:
            frames.append(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))

    with pytest.raises(ConnectionClosed) as closed:
        read_until_closed()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, frames


@pytest.fixture
def one_worker(services: TestServices, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GunicornServer]:
    env: dict[str, str] = getattr(request, "param", {})
    server = start_server(services, tmp_path, WEB_CONCURRENCY="1", CORS_ORIGINS=ALLOWED, **env)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.gunicorn
def test_a_foreign_origin_gets_403_before_any_socket(one_worker: GunicornServer) -> None:
    for origin in ("http://evil.example", "null", f"http://localhost:{one_worker.port}"):
        with pytest.raises(InvalidStatus) as refused:
            dashboard(one_worker, origin)
        assert refused.value.response.status_code == 403
        body = json.loads(refused.value.response.body or b"{}")
        assert body["error"]["code"] == "forbidden_origin"
        assert body["error"]["details"] == {"origin": origin}
    for origin in (f"http://127.0.0.1:{one_worker.port}", ALLOWED, None):  # its own page, CORS_ORIGINS, no browser
        with dashboard(one_worker, origin) as ws:
            assert first_frame(ws)["type"] == "hello"


@pytest.mark.gunicorn
@pytest.mark.parametrize(
    "one_worker", [{"GUNICORN_THREADS": str(RESERVED_HTTP_THREADS + 3), "WS_DASHBOARD_MAX_SOCKETS": "2"}], indirect=True
)
def test_dashboards_have_their_own_budget_counted_with_device_sockets(
    app: APIFlask, one_worker: GunicornServer
) -> None:
    _, token = make_device(app)
    with ExitStack() as stack:
        first = stack.enter_context(dashboard(one_worker))
        second = stack.enter_context(dashboard(one_worker))
        assert (first_frame(first)["type"], first_frame(second)["type"]) == ("hello", "hello")
        with dashboard(one_worker) as third:  # over the dashboards' own budget
            code, frames = refused_with(third)
        assert (code, [frame.get("code") for frame in frames]) == (1013, ["server_busy"])
        sensor = stack.enter_context(device(one_worker, token))  # the third and last slot
        sensor.send(json.dumps({"type": "ping"}))
        assert first_frame(sensor)["type"] == "pong"
        with device(one_worker, token) as beyond:
            code, frames = refused_with(beyond)
        assert (code, [frame.get("code") for frame in frames]) == (1013, ["server_busy"])
        first.close()
        deadline = time.monotonic() + 10
        while True:  # the slot is given back once the server has seen the close
            with dashboard(one_worker) as again:
                frame = first_frame(again)
            if frame["type"] == "hello" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert frame["type"] == "hello"


@pytest.mark.gunicorn
@pytest.mark.parametrize("one_worker", [{"GUNICORN_THREADS": str(RESERVED_HTTP_THREADS + 2)}], indirect=True)
def test_probes_answer_while_every_socket_slot_is_taken(app: APIFlask, one_worker: GunicornServer) -> None:
    _, token = make_device(app)
    outcomes: list[str] = []
    with ExitStack() as stack:
        sensor = stack.enter_context(device(one_worker, token))
        sensor.send(json.dumps({"type": "ping"}))
        assert first_frame(sensor)["type"] == "pong"
        for _ in range(2 * (RESERVED_HTTP_THREADS + 2)):  # one IP opening dashboards as fast as it can
            try:
                ws = stack.enter_context(dashboard(one_worker, timeout=PROBE_TIMEOUT))
            except TimeoutError:
                outcomes.append("no answer")
                continue
            outcomes.append(first_frame(ws).get("code") or "admitted")
        for path in ("/health/live", "/health/ready"):
            response = requests.get(one_worker.url(path), timeout=PROBE_TIMEOUT)
            assert response.status_code == 200, path
    assert outcomes.count("admitted") == 1  # the device holds the other slot
    assert set(outcomes) == {"admitted", "server_busy"}


@pytest.mark.gunicorn
def test_dashboard_messages_are_limited_in_size_and_rate(one_worker: GunicornServer) -> None:
    with dashboard(one_worker) as ws:
        assert first_frame(ws)["type"] == "hello"
        ws.send(json.dumps({"type": "ping", "ts": 1}))
        deadline = time.monotonic() + 10
        while (frame := first_frame(ws))["type"] != "pong":
            assert time.monotonic() < deadline
        assert frame["ts"] == 1
        ws.send(json.dumps({"type": "ping", "ts": "x" * DASHBOARD_MAX_MESSAGE_BYTES}))
        code, _ = refused_with(ws)
    assert code == 1009
    with dashboard(one_worker) as ws:
        assert first_frame(ws)["type"] == "hello"
        for n in range(5 * DASHBOARD_FRAME_BURST):
            try:
                ws.send(json.dumps({"type": "ping", "ts": n}))
            except ConnectionClosed:
                break
        code, frames = refused_with(ws)
    assert code == 1008
    assert len([frame for frame in frames if frame["type"] == "pong"]) <= DASHBOARD_FRAME_BURST

"""Graceful shutdown under the real gunicorn: SIGTERM drains then refuses without cutting a response, SIGHUP
replaces the workers under load without a failed request; tracked WebSockets are closed with 1001."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import requests
from apiflask import APIFlask
from flask_sock import Sock
from simple_websocket import Server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from werkzeug.serving import BaseWSGIServer, make_server

from backend.extensions import shutdown
from tests.core.load import SteadyLoad


def refused_or_503(url: str) -> str:
    """`503 close` or `refused`; anything else (a reset, a timeout, a 200) is returned as is for the assertion."""
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError as exc:
        return "refused" if "Connection refused" in str(exc) else f"error: {exc}"
    return f"{response.status_code} {response.headers.get('Connection')}"


def test_sigterm_finishes_the_slow_request_and_refuses_after_the_drain(server_factory: Callable[..., Any]) -> None:
    server = server_factory(workers=2, SHUTDOWN_DRAIN_DELAY="1.2", SHUTDOWN_TIMEOUT="10")
    slow: dict[str, Any] = {}

    def call_slow() -> None:
        try:
            response = requests.get(server.url("/slow?delay=3"), timeout=20)
            slow.update(status=response.status_code, body=response.json())
        except requests.RequestException as exc:
            slow["error"] = repr(exc)

    thread = threading.Thread(target=call_slow)
    thread.start()
    time.sleep(0.3)  # the slow request is in flight; it ends 2.7 s after SIGTERM
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.1)

    ready = [requests.get(server.url("/health/ready"), timeout=5) for _ in range(4)]
    assert {response.status_code for response in ready} == {503}
    assert {response.json()["checks"]["shutdown"]["phase"] for response in ready} == {"draining"}
    assert requests.get(server.url("/products/1"), timeout=5).status_code == 200  # served during the drain

    time.sleep(max(0.0, signalled + 1.4 - time.monotonic()))
    after_drain = [refused_or_503(server.url("/products/1")) for _ in range(5)]
    assert set(after_drain) <= {"503 close", "refused"}, after_drain

    thread.join(20)
    assert slow.get("status") == 200, slow
    assert slow["body"]["delay_seconds"] == 3
    assert server.process is not None
    assert server.process.wait(20) == 0, server.stdout()[-3000:]
    assert refused_or_503(server.url("/products/1")) == "refused"


def test_sighup_replaces_workers_under_load_without_a_failure(server_factory: Callable[..., Any]) -> None:
    server = server_factory(workers=2, RATE_LIMIT_READ="100000/minute", SHUTDOWN_DRAIN_DELAY="2")
    assert server.process is not None
    master = psutil.Process(server.process.pid)
    before = {child.pid for child in master.children()}
    assert len(before) == 2
    with SteadyLoad(lambda n: server.url(f"/products/{n % 10 + 1}"), rate=100, threads=8) as load:
        time.sleep(1.5)
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while {child.pid for child in master.children()} & before:
            assert time.monotonic() < deadline, "old workers still running"
            time.sleep(0.1)
        time.sleep(1.5)  # the new workers carry the load alone
    after = {child.pid for child in master.children()}
    assert len(after) == 2
    assert not after & before
    assert load.count() >= 300
    assert load.failures() == []


@pytest.fixture
def websocket_server(make_app: Callable[..., APIFlask]) -> Iterator[tuple[APIFlask, int]]:
    """The app with an echo WebSocket tracked for shutdown, served by werkzeug in a thread."""
    app = make_app(shutdown_drain_delay=0.1, shutdown_timeout=10)
    sock = Sock(app)

    @sock.route("/ws/echo")
    def echo(ws: Server) -> None:
        with shutdown.track_websocket(ws):
            while True:
                message = ws.receive(timeout=1)
                if message is not None:
                    ws.send(message)

    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_shutdown_closes_tracked_websockets_with_1001(websocket_server: tuple[APIFlask, int]) -> None:
    app, port = websocket_server
    with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=5) as websocket:
        websocket.send("ping")
        assert websocket.recv(timeout=5) == "ping"
        shutdown.of(app).begin()
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert closed.value.rcvd.reason == "server shutting down"

"""Live fan-out: the per-process hub (bounded queues, slow clients dropped); /ws/dashboard/ across gunicorn workers."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from apiflask import APIFlask
from websockets.sync.client import ClientConnection, connect

from backend import create_app
from backend.base.config import Settings
from backend.sqal.live.service import DashboardClient, DashboardHub
from backend.sqal.reads.routes import register_reads
from scripts.services import TestServices
from tests.sqal.helpers import make_device, receive, sample_frame
from tests.support.server import GunicornServer

FIGURES = {"samples_today": 0}


@pytest.fixture
def channel() -> str:
    return f"test:sqal:samples:{uuid.uuid4().hex}"


@pytest.fixture
def hub(services: TestServices, channel: str) -> Iterator[DashboardHub]:
    hub = DashboardHub(services.redis_url, lambda: FIGURES, channel=channel, snapshot_interval=0.2, queue_size=8)
    yield hub
    hub.stop()


def next_frame(client: DashboardClient, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of type `kind` in a hub client's queue (other types skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame_kind, text = client.queue.get(timeout=max(0.0, deadline - time.monotonic()))
        frame: dict[str, Any] = json.loads(text)
        assert frame["type"] == frame_kind
        if frame_kind == kind:
            return frame


def hub_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("sqal-dashboard-")}


def test_building_the_app_starts_no_thread(settings: Settings) -> None:
    before = hub_threads()
    register_reads(create_app(settings))
    assert hub_threads() - before == set()


def test_every_client_gets_each_sample_and_a_slow_one_is_dropped(
    hub: DashboardHub, services: TestServices, channel: str
) -> None:
    aborted: list[str] = []
    fast = hub.connect(abort=lambda: aborted.append("fast"))
    slow = hub.connect(abort=lambda: aborted.append("slow"))
    assert hub.wait_live(5)
    assert next_frame(fast, "metrics")["metrics"] == FIGURES
    publisher = redis.Redis.from_url(services.redis_url)
    publisher.publish(channel, b"not json")  # ignored
    for index in range(20):
        summary = {"device_id": "D1", "sample_id": f"S-{index}", "grade": "A", "score": 0.9}
        assert publisher.publish(channel, json.dumps(summary)) == 1  # one subscriber: the hub
        assert next_frame(fast, "sample") == {"type": "sample", "sample": summary}
    assert slow.dropped.is_set()
    assert aborted == ["slow"]
    assert not fast.dropped.is_set()
    assert hub.client_count == 1


def test_without_redis_the_hub_still_sends_figures(channel: str) -> None:
    hub = DashboardHub("redis://127.0.0.1:9/0", lambda: FIGURES, channel=channel, snapshot_interval=0.1)
    try:
        client = hub.connect(abort=lambda: None)
        assert not hub.wait_live(0.5)
        assert json.loads(hub.hello_frame())["live"] is False
        assert next_frame(client, "metrics")["metrics"] == FIGURES
    finally:
        hub.stop()


def dashboard(url: str) -> ClientConnection:
    """A dashboard client that buffers without limit, like a browser: never slow enough to be dropped."""
    return connect(url, open_timeout=10, max_queue=None)


def dashboards_on_every_worker(
    server: GunicornServer, stack: ExitStack, workers: int = 2
) -> dict[str, ClientConnection]:
    """Dashboard connections until one is held by each worker (told apart by the hub instance in `hello`)."""
    url = f"ws://127.0.0.1:{server.port}/ws/dashboard/"
    by_instance: dict[str, ClientConnection] = {}
    for _ in range(40):
        ws = stack.enter_context(dashboard(url))
        hello = receive(ws, "hello")
        assert hello["live"] is True
        if hello["instance"] in by_instance:
            ws.close()
        else:
            by_instance[hello["instance"]] = ws
        if len(by_instance) == workers:
            return by_instance
        time.sleep(0.05)
    raise AssertionError(f"40 connections all reached {len(by_instance)} worker(s)")


def sample_of(frame: dict[str, Any], sample_id: str) -> dict[str, Any] | None:
    return frame["sample"] if frame["type"] == "sample" and frame["sample"]["sample_id"] == sample_id else None


def wait_for_sample(ws: ClientConnection, sample_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        found = sample_of(frame, sample_id)
        if found is not None:
            return found


def ingest(server: GunicornServer, token: str, frame: dict[str, Any]) -> dict[str, Any]:
    """Send one `sensor_data` frame through /ws/sensors/ and return its ack."""
    url = f"ws://127.0.0.1:{server.port}/ws/sensors/"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as sensor:
        sensor.send(json.dumps(frame))
        ack: dict[str, Any] = json.loads(sensor.recv(timeout=10))
    return ack


@pytest.mark.gunicorn
def test_a_sample_stored_by_one_worker_reaches_dashboards_on_both(
    reads_server: GunicornServer, reads_app: APIFlask
) -> None:
    device_id, token = make_device(reads_app)
    frame = sample_frame(device_id, seq=1)
    with ExitStack() as stack:
        dashboards = dashboards_on_every_worker(reads_server, stack)
        first = next(iter(dashboards.values()))
        metrics = receive(first, "metrics")["metrics"]
        assert metrics["samples_today"] == 0
        ack = ingest(reads_server, token, frame)
        assert (ack["type"], ack["status"]) == ("ack", "stored")
        for ws in dashboards.values():
            sample = wait_for_sample(ws, frame["sample_id"])
            assert sample["device_id"] == device_id
            assert (sample["grade"], sample["score"]) == (
                frame["fusion"]["final_grade"],
                frame["fusion"]["final_score"],
            )
            assert sample["defects"] == frame["fusion"]["defects"]
        # The next snapshot (every few seconds) counts it.
        deadline = time.monotonic() + 15
        while receive(first, "metrics", timeout=15)["metrics"]["samples_today"] != 1:
            assert time.monotonic() < deadline


@pytest.mark.gunicorn
def test_dashboard_socket_answers_pings(reads_server: GunicornServer) -> None:
    with dashboard(f"ws://127.0.0.1:{reads_server.port}/ws/dashboard/") as ws:
        receive(ws, "hello")
        ws.send('{"type": "ping", "ts": NaN}')  # a ts JSON cannot echo: no pong, and the socket stays open
        ws.send(json.dumps({"type": "ping", "ts": 42}))
        ws.send("not json")  # ignored
        assert receive(ws, "pong")["ts"] == 42

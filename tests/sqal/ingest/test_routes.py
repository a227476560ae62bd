"""`/ws/sensors/` against the real gunicorn (2 gthread workers): auth, errors, acks after commit, limits."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from apiflask import APIFlask
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from backend.extensions import db
from backend.sqal.devices import service
from backend.sqal.vocabulary import channel_for
from scripts.services import TestServices
from tests.sqal.helpers import SERVER_MAX_MESSAGE_BYTES, make_device, sample_frame, start_server, stored_sample_ids

pytestmark = pytest.mark.gunicorn


def open_socket(url: str, token: str | None = None, query: bool = False) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token and not query else {}
    target = f"{url}?token={token}" if token and query else url
    return connect(target, additional_headers=headers, max_size=None, open_timeout=10, close_timeout=2)


def exchange(ws: ClientConnection, message: Any) -> dict[str, Any]:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    return json.loads(ws.recv(timeout=15))


def closed_with(ws: ClientConnection) -> tuple[int, dict[str, Any] | None]:
    """Read until the server closes; return the close code and the last frame received before it."""
    frames: list[dict[str, Any]] = []

    def read_until_closed() -> None:
        while True:
            frames.append(json.loads(ws.recv(timeout=15)))

    with pytest.raises(ConnectionClosed) as closed:
        read_until_closed()
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd.code, frames[-1] if frames else None


@pytest.fixture
def ws(sqal_server: str, device: tuple[str, str]) -> Iterator[ClientConnection]:
    with open_socket(sqal_server, device[1]) as socket:
        yield socket


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "unauthorized"), ("sqal_dev_unknown", "unauthorized"), ("disabled", "device_disabled")],
    ids=["missing", "unknown", "disabled"],
)
def test_auth_failure_sends_error_then_closes_1008(
    app: APIFlask, sqal_server: str, token: str | None, code: str
) -> None:
    if token == "disabled":
        token = make_device(app, enabled=False)[1]
    with open_socket(sqal_server, token) as socket:
        close_code, last = closed_with(socket)
    assert close_code == 1008
    assert last is not None
    assert (last["type"], last["code"]) == ("error", code)


def test_token_in_query_and_header_wins(app: APIFlask, sqal_server: str, device: tuple[str, str]) -> None:
    with open_socket(sqal_server, device[1], query=True) as socket:
        assert exchange(socket, {"type": "ping", "ts": 1})["type"] == "pong"
    headers = {"Authorization": f"bearer {device[1]}"}
    with connect(f"{sqal_server}?token=wrong", additional_headers=headers, open_timeout=10) as socket:
        assert exchange(socket, {"type": "ping"})["type"] == "pong"
    with app.app_context():
        seen = db.session.execute(
            text("SELECT last_seen_at IS NOT NULL FROM devices WHERE device_id = :d"), {"d": device[0]}
        )
        assert seen.scalar() is True
        db.session.remove()


def test_each_bad_frame_gets_its_error_and_good_frames_are_still_acked(
    app: APIFlask, ws: ClientConnection, device: tuple[str, str]
) -> None:
    device_id = device[0]
    goods = [sample_frame(device_id, seq) for seq in range(1, 6)]
    wrong_matrix = sample_frame(device_id, 90)
    wrong_matrix["vl53l8ch"]["distance_matrix"].append([250] * 8)
    other_device = sample_frame("ESP32_SOMEONE_ELSE", 91)
    nan_frame = sample_frame(device_id, 92)
    nan_frame["fusion"]["final_score"] = math.nan
    nan_text = json.dumps(nan_frame)  # NaN literal: not JSON, but Python's parser accepts it
    script: list[tuple[Any, tuple[str, str | None]]] = [
        (goods[0], ("ack", None)),
        ("{not json", ("error", "invalid_json")),
        (goods[1], ("ack", None)),
        ({"type": "calibrate"}, ("error", "unknown_type")),
        (b"\x00\x01binary", ("error", "invalid_json")),
        (wrong_matrix, ("error", "validation_error")),
        (goods[2], ("ack", None)),
        (nan_text, ("error", "validation_error")),
        (other_device, ("error", "validation_error")),
        ({"type": "sensor_batch", "samples": []}, ("error", "validation_error")),
        ({"type": "ping", "ts": "t1"}, ("pong", None)),
        (goods[3], ("ack", None)),
        ({"type": "sensor_batch", "batch_id": "B1", "samples": [goods[4], {"seq": 1}]}, ("batch_ack", None)),
    ]
    replies = [exchange(ws, message) for message, _ in script]
    assert [(reply["type"], reply.get("code")) for reply in replies] == [expected for _, expected in script]
    assert replies[5]["sample_id"] == wrong_matrix["sample_id"]
    assert replies[5]["details"][0]["loc"] == ["vl53l8ch", "distance_matrix"]
    assert replies[7]["details"][0]["loc"] == ["fusion", "final_score"]
    assert replies[8]["details"][0]["loc"] == ["device_id"]
    assert replies[12]["acks"] == [{"sample_id": goods[4]["sample_id"], "seq": 5, "status": "stored"}]
    assert replies[12]["errors"][0]["index"] == 1
    assert sorted(stored_sample_ids(app, device_id)) == sorted(frame["sample_id"] for frame in goods)


def test_duplicates_are_acked_as_duplicate_across_connections(
    app: APIFlask, sqal_server: str, ws: ClientConnection, device: tuple[str, str]
) -> None:
    frame = sample_frame(device[0], 7)
    assert exchange(ws, frame)["status"] == "stored"
    assert exchange(ws, frame) == {"type": "ack", "sample_id": frame["sample_id"], "seq": 7, "status": "duplicate"}
    with open_socket(sqal_server, device[1]) as again:
        assert exchange(again, frame)["status"] == "duplicate"
    assert stored_sample_ids(app, device[0]) == [frame["sample_id"]]


def test_ack_is_sent_only_after_the_commit(app: APIFlask, ws: ClientConnection, device: tuple[str, str]) -> None:
    with app.app_context(), db.engine.connect() as observer:
        for seq in range(20):
            frame = sample_frame(device[0], seq)
            assert exchange(ws, frame)["status"] == "stored"
            visible = observer.execute(
                text("SELECT count(*) FROM sensor_samples WHERE device_id = :d AND sample_id = :s"),
                {"d": device[0], "s": frame["sample_id"]},
            ).scalar()
            observer.rollback()
            assert visible == 1, f"ack for seq {seq} arrived before its row was visible"


def test_batch_of_500(app: APIFlask, ws: ClientConnection, device: tuple[str, str]) -> None:
    frames = [sample_frame(device[0], seq) for seq in range(500)]
    for frame in frames:
        frame.pop("type")  # optional inside a batch
    reply = exchange(ws, {"type": "sensor_batch", "batch_id": "big", "samples": frames})
    assert reply["type"] == "batch_ack"
    assert reply["errors"] == []
    assert [(ack["seq"], ack["status"]) for ack in reply["acks"]] == [(seq, "stored") for seq in range(500)]
    assert len(stored_sample_ids(app, device[0])) == 500
    too_many = exchange(ws, {"type": "sensor_batch", "samples": frames[:1] * 501})
    assert too_many["code"] == "validation_error"


def test_oversize_message_gets_an_error_then_1009(ws: ClientConnection) -> None:
    # Within the cap in characters (what the transport counts), over it in UTF-8 bytes: the handler refuses it.
    padding = "é" * (SERVER_MAX_MESSAGE_BYTES // 2)
    ws.send(json.dumps({"type": "ping", "ts": padding}, ensure_ascii=False))
    close_code, last = closed_with(ws)
    assert close_code == 1009
    assert last is not None
    assert last["code"] == "message_too_large"


def test_huge_message_is_cut_by_the_transport_with_1009(sqal_server: str, device: tuple[str, str]) -> None:
    with open_socket(sqal_server, device[1]) as socket:
        socket.send("x" * (3 * SERVER_MAX_MESSAGE_BYTES))
        close_code, _ = closed_with(socket)
    assert close_code == 1009


def test_disabling_a_device_closes_its_connection_at_the_next_frame(
    app: APIFlask, ws: ClientConnection, device: tuple[str, str]
) -> None:
    assert exchange(ws, sample_frame(device[0], 1))["status"] == "stored"
    with app.app_context():
        service.set_device_enabled(device[0], False)
        db.session.remove()
    ws.send(json.dumps(sample_frame(device[0], 2)))
    close_code, last = closed_with(ws)
    assert close_code == 1008
    assert last is not None
    assert last["code"] == "device_disabled"
    assert len(stored_sample_ids(app, device[0])) == 1


def test_rate_limit_is_per_device_across_connections_then_shutdown_closes_1001(
    app: APIFlask, services: TestServices, tmp_path: Path
) -> None:
    server = start_server(services, tmp_path, WS_DEVICE_RATE_LIMIT="5/minute", WS_DEVICE_MAX_SOCKETS="2")
    try:
        url = f"ws://127.0.0.1:{server.port}/ws/sensors/"
        device_id, token = make_device(app)
        other_id, other_token = make_device(app)
        with (
            open_socket(url, token) as first,
            open_socket(url, token) as second,
            open_socket(url, other_token) as other,
        ):
            replies = [exchange(socket, {"type": "ping"}) for socket in (first, second, first, second, first)]
            assert [reply["type"] for reply in replies] == ["pong"] * 5
            limited = exchange(second, sample_frame(device_id, 1))
            assert limited["code"] == "rate_limited"
            assert 0 < limited["retry_after"] <= 60
            assert not math.isnan(limited["retry_after"])
            assert exchange(first, {"type": "ping"})["code"] == "rate_limited"  # still open, still limited
            assert exchange(other, sample_frame(other_id, 1))["status"] == "stored"
            assert stored_sample_ids(app, device_id) == []
            server.signal(15)
            assert closed_with(first)[0] == 1001
            assert closed_with(other)[0] == 1001
        assert server.process is not None
        assert server.process.wait(15) == 0
    finally:
        server.stop()


def test_sockets_beyond_the_thread_budget_are_refused_with_1013(
    app: APIFlask, services: TestServices, tmp_path: Path
) -> None:
    # 1 worker, 5 threads: 4 stay for HTTP, so one device socket at a time.
    server = start_server(services, tmp_path, WEB_CONCURRENCY="1", GUNICORN_THREADS="5")
    try:
        url = f"ws://127.0.0.1:{server.port}/ws/sensors/"
        _, token = make_device(app)
        with open_socket(url, token) as first:
            assert exchange(first, {"type": "ping"})["type"] == "pong"
            with open_socket(url, token) as second:
                close_code, last = closed_with(second)
            assert close_code == 1013
            assert last is not None
            assert last["code"] == "server_busy"
            assert requests.get(server.url("/health/live"), timeout=5).status_code == 200
            assert exchange(first, {"type": "ping"})["type"] == "pong"
        deadline = time.monotonic() + 5  # the slot is free again once the first socket's thread has cleaned up
        while True:
            with open_socket(url, token) as third:
                if exchange(third, {"type": "ping"})["type"] == "pong":
                    break
            assert time.monotonic() < deadline, "the slot of the closed socket was not freed"
            time.sleep(0.1)
    finally:
        server.stop()


def test_stored_samples_are_fanned_out_on_redis(
    app: APIFlask, services: TestServices, ws: ClientConnection, device: tuple[str, str]
) -> None:
    pubsub = redis.Redis.from_url(services.redis_url).pubsub()
    pubsub.subscribe(channel_for(app.config["SETTINGS"]))
    try:
        assert pubsub.get_message(timeout=5) is not None  # subscription confirmed
        frame = sample_frame(device[0], 3)
        assert exchange(ws, frame)["status"] == "stored"
        assert exchange(ws, frame)["status"] == "duplicate"
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not received:
            message = pubsub.get_message(timeout=1)
            if message and message["type"] == "message":
                summary = json.loads(message["data"])
                if summary["device_id"] == device[0]:
                    received.append(summary)
        time.sleep(0.5)
        while message := pubsub.get_message(timeout=0.1):
            if message["type"] == "message" and json.loads(message["data"])["device_id"] == device[0]:
                received.append(json.loads(message["data"]))
    finally:
        pubsub.close()
    assert [(s["sample_id"], s["grade"], s["score"]) for s in received] == [
        (frame["sample_id"], frame["fusion"]["final_grade"], frame["fusion"]["final_score"])
    ]  # once: the duplicate is not published again
    assert set(received[0]) == {"device_id", "sample_id", "timestamp", "grade", "score", "defects"}

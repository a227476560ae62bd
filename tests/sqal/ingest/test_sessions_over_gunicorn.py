"""Device sessions over the real gunicorn: the per-device socket cap (take-over) across workers and instances,
rotation and disabling that close open sockets, and `conflict` for a sample_id resent with other content."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from backend.extensions import db
from backend.sqal.devices import service
from scripts.services import TestServices
from tests.sqal.helpers import WS_PATH, make_device, sample_frame, start_server, stored_sample_ids
from tests.sqal.ingest.test_routes import closed_with, exchange, open_socket
from tests.support.server import GunicornServer

pytestmark = pytest.mark.gunicorn

CAP = 3


@pytest.fixture(scope="module")
def instances(services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GunicornServer]]:
    """Two instances (2 workers each) sharing the database and Redis, WS_DEVICE_MAX_SOCKETS=CAP."""
    servers: list[GunicornServer] = []
    try:
        for _ in range(2):
            servers.append(start_server(services, tmp_path_factory.mktemp("instance"), WS_DEVICE_MAX_SOCKETS=str(CAP)))
        yield servers
    finally:
        for server in servers:
            server.stop()


def ws_url(server: GunicornServer) -> str:
    return f"ws://127.0.0.1:{server.port}{WS_PATH}"


def alive(socket: ClientConnection) -> bool:
    return exchange(socket, {"type": "ping"})["type"] == "pong"


def rotate(app: APIFlask, device_id: str) -> str:
    with app.app_context():
        token = service.rotate_device_token(device_id)
        db.session.remove()
    return token


def test_sockets_beyond_the_device_cap_replace_the_oldest_across_instances(
    app: APIFlask, instances: list[GunicornServer]
) -> None:
    _, token = make_device(app)
    urls = [ws_url(server) for server in instances]
    with ExitStack() as stack:
        sockets = [stack.enter_context(open_socket(urls[index % 2], token)) for index in range(CAP)]
        assert all(alive(socket) for socket in sockets)
        for newcomer_index in range(2):  # each newcomer takes over from the oldest, whichever instance holds it
            newcomer = stack.enter_context(open_socket(urls[(CAP + newcomer_index) % 2], token))
            sockets.append(newcomer)
            assert alive(newcomer)
            close_code, last = closed_with(sockets[newcomer_index])  # idle: closed without sending anything
            assert close_code == 4000  # not 1008: a replaced genuine device must reconnect, not give up
            assert last is not None
            assert (last["type"], last["code"]) == ("error", "session_replaced")
        assert all(alive(socket) for socket in sockets[2:])  # the cap's worth of newest sockets stay


def test_a_stolen_token_cannot_take_the_socket_slots_of_other_devices(
    app: APIFlask, services: TestServices, tmp_path: Path
) -> None:
    # 1 worker, 6 threads: 4 stay for HTTP, so two device sockets in the process; the default cap is 1 per device.
    server = start_server(services, tmp_path, WEB_CONCURRENCY="1", GUNICORN_THREADS="6")
    try:
        with ExitStack() as stack:
            url = ws_url(server)
            _, stolen = make_device(app)
            _, genuine = make_device(app)
            previous = admitted(stack, url, stolen)
            for _ in range(4):
                thief = admitted(stack, url, stolen)
                assert closed_with(previous)[0] == 4000  # the older socket of the same token is gone
                previous = thief
            genuine_socket = admitted(stack, url, genuine)
            assert alive(previous)
            assert alive(genuine_socket)
    finally:
        server.stop()


def admitted(stack: ExitStack, url: str, token: str) -> ClientConnection:
    """A socket that answers a ping. A replaced socket's slot is freed just after its close frame is sent, so a
    socket opened at once may still find both slots taken (`server_busy`): retry for a few seconds."""
    deadline = time.monotonic() + 5
    while True:
        socket = stack.enter_context(open_socket(url, token))
        try:
            reply = exchange(socket, {"type": "ping"})
        except ConnectionClosed as closed:  # refused before the ping went out: server_busy, then 1013
            reply = {"type": "closed", "code": "server_busy" if closed.rcvd and closed.rcvd.code == 1013 else None}
        if reply["type"] == "pong":
            return socket
        assert reply["code"] == "server_busy", reply
        assert time.monotonic() < deadline, f"still refused: {reply}"
        time.sleep(0.1)


def test_rotation_and_disabling_close_every_open_socket_of_the_device(
    app: APIFlask, instances: list[GunicornServer]
) -> None:
    device_id, old_token = make_device(app)
    urls = [ws_url(server) for server in instances]
    with ExitStack() as stack:
        sockets = [stack.enter_context(open_socket(urls[index % 2], old_token)) for index in range(CAP)]
        assert all(alive(socket) for socket in sockets)
        rotated_at = time.monotonic()
        new_token = rotate(app, device_id)
        for socket in sockets:  # idle sockets on both instances, whatever worker holds them
            close_code, last = closed_with(socket)
            assert close_code == 1008
            assert last is not None
            assert (last["type"], last["code"]) == ("error", "unauthorized")
        # The notice, not the 30 s periodic re-check, closed them.
        assert time.monotonic() - rotated_at < 5
        with open_socket(urls[0], old_token) as stale:
            assert closed_with(stale)[1] == {
                "type": "error",
                "code": "unauthorized",
                "message": "missing or invalid device token",
            }
        sockets = [stack.enter_context(open_socket(url, new_token)) for url in urls]
        assert all(alive(socket) for socket in sockets)  # the re-check keeps the new credential's sessions
        assert exchange(sockets[1], sample_frame(device_id, 1))["status"] == "stored"
        with app.app_context():
            service.set_device_enabled(device_id, False)
            db.session.remove()
        for socket in sockets:
            close_code, last = closed_with(socket)
            assert close_code == 1008
            assert last is not None
            assert last["code"] == "device_disabled"


def _conflicts_counted(server: GunicornServer) -> float:
    body = requests.get(server.url("/metrics"), timeout=5).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "sqal_sample_conflicts_total":
                return float(sample.value)
    return 0.0  # not exported (yet)


def test_a_resend_with_other_content_gets_conflict_and_is_counted_and_logged(
    app: APIFlask, instances: list[GunicornServer]
) -> None:
    device_id, token = make_device(app)
    server = instances[0]
    before = _conflicts_counted(server)
    original = sample_frame(device_id, 7)
    changed = {**original, "fusion": {**original["fusion"], "final_score": 0.1, "final_grade": "REJECT"}}
    fresh = sample_frame(device_id, 8)
    with open_socket(ws_url(server), token) as socket:
        assert exchange(socket, original)["status"] == "stored"
        assert exchange(socket, original)["status"] == "duplicate"  # a true resend stays a duplicate
        reply = exchange(socket, changed)
        assert reply == {
            "type": "error",
            "code": "conflict",
            "message": reply["message"],
            "sample_id": original["sample_id"],
            "seq": 7,
        }
        batch = exchange(socket, {"type": "sensor_batch", "batch_id": "B", "samples": [original, changed, fresh]})
        assert batch["acks"] == [
            {"sample_id": original["sample_id"], "seq": 7, "status": "duplicate"},
            {"sample_id": fresh["sample_id"], "seq": 8, "status": "stored"},
        ]
        assert [(error["index"], error["code"], error["sample_id"]) for error in batch["errors"]] == [
            (1, "conflict", original["sample_id"])
        ]
        assert alive(socket)  # a conflict does not close the connection
    assert sorted(stored_sample_ids(app, device_id)) == sorted([original["sample_id"], fresh["sample_id"]])
    with app.app_context():
        kept = db.session.execute(
            text("SELECT fusion_final_score FROM sensor_samples WHERE device_id = :d AND seq = 7"), {"d": device_id}
        ).scalar_one()
        db.session.remove()
    assert kept == original["fusion"]["final_score"]  # the stored sample keeps its content
    deadline = time.monotonic() + 10  # /metrics is served by either worker; the counters are summed over both
    while _conflicts_counted(server) < before + 2:
        assert time.monotonic() < deadline, "conflicts not counted"
        time.sleep(0.2)
    logged = [json.loads(line) for line in server.stdout().splitlines() if '"sample_conflict"' in line]
    assert any(entry["device_id"] == device_id and original["sample_id"] in entry["sample_ids"] for entry in logged)

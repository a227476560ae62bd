"""Limits of `/ws/sensors/`: the message cap is the largest valid batch and the transport enforces it exactly; a
device that keeps sending while rate-limited is closed; the socket budget is shared with dashboards."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apiflask import APIFlask
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from backend.base.config import Settings
from backend.sqal.ingest.frames import CLOSE_POLICY_VIOLATION, MAX_RATE_LIMITED_IN_A_ROW, FrameHandler
from backend.sqal.ingest.schemas import MAX_BATCH_SAMPLES, validate_sample
from backend.sqal.vocabulary import ID_MAX_LENGTH
from backend.sqal.websocket import RESERVED_HTTP_THREADS, SocketBudget
from scripts.services import TestServices
from tests.sqal.helpers import SERVER_MAX_MESSAGE_BYTES, make_device, stored_sample_ids, unique_device_id
from tests.sqal.ingest.test_routes import closed_with, exchange, open_socket
from tests.sqal.largest import MAX_DEFECT_CODE, encode, largest_batch, largest_sample
from tests.support.server import session_server

DEFAULT_MAX_BYTES = next(f.default for f in dataclasses.fields(Settings) if f.name == "ws_max_message_bytes")
MOMENT = datetime(2025, 1, 14, 9, 30, 12, 418000, tzinfo=UTC)
DEVICE_ID = "D" * ID_MAX_LENGTH
LARGEST_BATCH_BYTES = len(largest_batch(DEVICE_ID, MOMENT))  # every device id, any time: the same length
CAP = math.ceil(LARGEST_BATCH_BYTES / 1024) * 1024


def test_the_default_message_cap_is_the_largest_valid_batch_rounded_up_to_a_kib() -> None:
    assert len(largest_batch(DEVICE_ID, MOMENT)) == LARGEST_BATCH_BYTES
    assert DEFAULT_MAX_BYTES == CAP


def test_the_largest_sample_is_valid_and_each_bounded_field_is_at_its_longest() -> None:
    sample = largest_sample(DEVICE_ID, 1, datetime.now(UTC))
    validate_sample(sample, DEVICE_ID)
    longer = [
        ("sample_id", lambda s: s.update(sample_id=s["sample_id"] + "S")),
        ("firmware", lambda s: s["meta"].update(firmware_version=s["meta"]["firmware_version"] + "f")),
        ("profile", lambda s: s["meta"].update(config_profile=s["meta"]["config_profile"] + "p")),
        ("defect count", lambda s: s["fusion"]["defects"].append("d")),
        ("defect code", lambda s: s["as7341"]["defects"].__setitem__(0, "d" * (MAX_DEFECT_CODE + 1))),
        ("seq", lambda s: s.update(seq=s["seq"] + 1)),
        ("channel", lambda s: s["as7341"]["channels"].update(NIR=65536)),
        ("status", lambda s: s["vl53l8ch"]["target_status_matrix"][0].__setitem__(0, 256)),
    ]
    for name, lengthen in longer:
        candidate = largest_sample(DEVICE_ID, 1, datetime.now(UTC))
        lengthen(candidate)
        with pytest.raises(ValidationError) as refused:
            validate_sample(candidate, DEVICE_ID)
        assert refused.value.error_count() >= 1, name


def test_a_device_that_keeps_sending_while_rate_limited_is_closed_after_a_bounded_number() -> None:
    waits = iter([None] + [1.5] * (MAX_RATE_LIMITED_IN_A_ROW - 1) + [None] + [1.5] * MAX_RATE_LIMITED_IN_A_ROW)
    handler = FrameHandler(
        "D1", max_message_bytes=4096, store=lambda *_: [], publish=lambda _s: None, retry_after=lambda _d: next(waits)
    )
    ping = json.dumps({"type": "ping"})
    assert handler.handle(ping).reply_type == "pong"
    limited = [handler.handle(ping) for _ in range(MAX_RATE_LIMITED_IN_A_ROW - 1)]
    assert {(o.reply.get("code"), o.close_code) for o in limited} == {("rate_limited", None)}
    assert handler.handle(ping).reply_type == "pong"  # one accepted frame starts the count again
    limited = [handler.handle(ping) for _ in range(MAX_RATE_LIMITED_IN_A_ROW)]
    assert [o.close_code for o in limited] == [None] * (MAX_RATE_LIMITED_IN_A_ROW - 1) + [CLOSE_POLICY_VIOLATION]
    assert limited[-1].reply == {
        "type": "error",
        "code": "rate_limited",
        "message": "device frame budget exceeded",
        "retry_after": 1.5,
    }


def test_the_socket_budget_is_shared_and_each_kind_keeps_to_its_cap() -> None:
    budget = SocketBudget(RESERVED_HTTP_THREADS + 3, {"dashboard": 2})
    with budget.slot("dashboard") as first, budget.slot("dashboard") as second, budget.slot("dashboard") as third:
        assert (first, second, third) == (True, True, False)
        with budget.slot("device") as device, budget.slot("device") as beyond:
            assert (device, beyond) == (True, False)
    with budget.slot("device") as a, budget.slot("device") as b, budget.slot("device") as c:
        assert (a, b, c) == (True, True, True)
        with budget.slot("dashboard") as dashboard:
            assert dashboard is False  # devices hold every slot
    assert SocketBudget(2, {"dashboard": 5}).caps == {"dashboard": 1}


@pytest.fixture(scope="module")
def default_cap_server(
    app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One worker with the default WS_MAX_MESSAGE_BYTES, and the rate limit of a device that must wait."""
    env = {"WS_DEVICE_RATE_LIMIT": "3/minute", "SHUTDOWN_TIMEOUT": "10"}
    server = session_server(services, tmp_path_factory.mktemp("gunicorn"), workers=1, rate_limits=True, **env).start()
    try:
        yield f"ws://127.0.0.1:{server.port}/ws/sensors/"
    finally:
        server.stop()


@pytest.mark.gunicorn
def test_a_batch_of_exactly_the_cap_is_stored_and_one_byte_more_is_refused(
    app: APIFlask, default_cap_server: str
) -> None:
    device_id, token = make_device(app, unique_device_id("D" * (ID_MAX_LENGTH - 11)))
    batch = largest_batch(device_id, datetime.now(UTC) - timedelta(seconds=5))
    exact = batch[:-1] + " " * (CAP - len(batch)) + "}"  # JSON whitespace up to the cap
    assert len(exact.encode()) == CAP
    with open_socket(default_cap_server, token) as ws:
        ws.send(exact)
        reply = json.loads(ws.recv(timeout=120))
        assert (reply["type"], reply["errors"], len(reply["acks"])) == ("batch_ack", [], MAX_BATCH_SAMPLES)
        assert {ack["status"] for ack in reply["acks"]} == {"stored"}
    assert len(stored_sample_ids(app, device_id)) == MAX_BATCH_SAMPLES
    with open_socket(default_cap_server, token) as ws:
        ws.send(exact[:-1] + " }")
        close_code, last = closed_with(ws)
    assert close_code == 1009
    assert last is None  # cut by the transport: nothing of it was handled


@pytest.mark.gunicorn
def test_the_transport_cuts_a_message_as_soon_as_it_passes_the_cap(app: APIFlask, sqal_server: str) -> None:
    """The first fragment already passes the configured cap: the server closes without waiting for (or buffering)
    the rest."""
    _, token = make_device(app)
    finish = threading.Event()

    def fragments() -> Iterator[str]:
        yield "x" * (SERVER_MAX_MESSAGE_BYTES + 1)
        finish.wait(30)  # the message never ends unless the server waits for it
        yield "x"

    with open_socket(sqal_server, token) as ws:
        sender = threading.Thread(target=lambda: _send_quietly(ws, fragments()), daemon=True)
        sender.start()
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
        finish.set()
        sender.join(5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert time.monotonic() - started < 15


def _send_quietly(ws: ClientConnection, message: Iterator[str]) -> None:
    with contextlib.suppress(ConnectionClosed):
        ws.send(message)


@pytest.mark.gunicorn
def test_a_device_ignoring_rate_limited_replies_is_closed_with_1008(app: APIFlask, default_cap_server: str) -> None:
    _, token = make_device(app)
    with open_socket(default_cap_server, token) as ws:
        replies = [exchange(ws, {"type": "ping", "ts": n}) for n in range(3 + MAX_RATE_LIMITED_IN_A_ROW - 1)]
        assert [r["type"] for r in replies[:3]] == ["pong"] * 3
        assert {r.get("code") for r in replies[3:]} == {"rate_limited"}
        ws.send(encode({"type": "ping"}))
        close_code, last = closed_with(ws)
    assert close_code == 1008
    assert last is not None
    assert last["code"] == "rate_limited"
    assert last["retry_after"] > 0

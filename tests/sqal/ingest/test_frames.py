"""The frame protocol without a server: one reply per message, the right code, storage and fan-out order."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from apiflask import APIFlask
from opentelemetry import trace

from backend.sqal.ingest import routes as ws
from backend.sqal.ingest.frames import FrameHandler, Outcome
from backend.sqal.ingest.schemas import SampleIn
from backend.sqal.ingest.service import DeviceRejected, Status, StorageError
from tests.sqal.helpers import EXAMPLE, sample_frame

DEVICE = "ESP32_LL_07"
LIMIT = 64 * 1024


class FakeStore:
    """Remembers stored sample ids like the ledger does; can fail or reject on demand."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.calls: list[list[str]] = []
        self.failure: Exception | None = None

    def __call__(
        self, device_id: str, samples: Sequence[SampleIn], received_at: datetime, *, token_hash: str | None = None
    ) -> list[Status]:
        assert device_id == DEVICE
        self.calls.append([sample.sample_id for sample in samples])
        if self.failure is not None:
            raise self.failure
        statuses: list[Status] = []
        for sample in samples:
            new = sample.sample_id not in self.stored
            if new:
                self.stored.append(sample.sample_id)
            statuses.append("stored" if new else "duplicate")
        return statuses


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def published() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def handler(store: FakeStore, published: list[dict[str, Any]]) -> FrameHandler:
    return FrameHandler(
        DEVICE, max_message_bytes=LIMIT, store=store, publish=published.extend, retry_after=lambda _device: None
    )


def send(handler: FrameHandler, frame: Any) -> Outcome:
    return handler.handle(json.dumps(frame) if not isinstance(frame, str | bytes) else frame)


def test_sensor_data_is_acked_after_storage_and_published(
    handler: FrameHandler, store: FakeStore, published: list[dict[str, Any]]
) -> None:
    frame = sample_frame(DEVICE, 42)
    outcome = send(handler, frame)
    assert outcome.reply == {"type": "ack", "sample_id": frame["sample_id"], "seq": 42, "status": "stored"}
    assert outcome.close_code is None
    assert store.stored == [frame["sample_id"]]
    assert published == [
        {
            "device_id": DEVICE,
            "sample_id": frame["sample_id"],
            "timestamp": SampleIn.model_validate(frame).timestamp.isoformat(),
            "grade": EXAMPLE["fusion"]["final_grade"],
            "score": EXAMPLE["fusion"]["final_score"],
            "defects": [],
        }
    ]
    again = send(handler, frame)
    assert again.reply["status"] == "duplicate"
    assert len(published) == 1  # duplicates are not fanned out again


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"no_type": 1}', "invalid_json"),
        ('{"type": 5}', "invalid_json"),
        ("[" * 10_000 + "]" * 10_000, "invalid_json"),
        (b'{"type": "ping"}', "invalid_json"),
        ('{"type": "hello"}', "unknown_type"),
    ],
    ids=["text", "array", "no type", "type not string", "deep nesting", "binary", "unknown type"],
)
def test_undecodable_frames_get_an_error_and_keep_the_connection(
    handler: FrameHandler, store: FakeStore, message: str | bytes, code: str
) -> None:
    outcome = handler.handle(message)
    assert outcome.reply["type"] == "error"
    assert outcome.reply["code"] == code
    assert outcome.reply["message"]
    assert outcome.close_code is None
    assert store.calls == []


def test_invalid_sample_reports_its_id_seq_and_details(handler: FrameHandler, store: FakeStore) -> None:
    frame = sample_frame(DEVICE, 7)
    frame["vl53l8ch"]["distance_matrix"][3] = [250] * 7
    outcome = send(handler, frame)
    assert outcome.reply["code"] == "validation_error"
    assert outcome.reply["sample_id"] == frame["sample_id"]
    assert outcome.reply["seq"] == 7
    assert outcome.reply["details"] == [
        {
            "loc": ["vl53l8ch", "distance_matrix", 3],
            "msg": "List should have at least 8 items after validation, not 7",
            "type": "too_short",
        }
    ]
    assert outcome.close_code is None
    assert store.calls == []


def test_nan_literal_is_a_validation_error_at_its_cell(handler: FrameHandler) -> None:
    frame = sample_frame(DEVICE, 8)
    frame["vl53l8ch"]["volume_mm3"] = math.nan
    text = json.dumps(frame)
    assert "NaN" in text
    outcome = handler.handle(text)
    assert outcome.reply["code"] == "validation_error"
    assert [detail["loc"] for detail in outcome.reply["details"]] == [["vl53l8ch", "volume_mm3"]]


def test_oversize_message_closes_1009_before_decoding(handler: FrameHandler, store: FakeStore) -> None:
    outcome = handler.handle("x" * (LIMIT + 1))
    assert outcome.reply["code"] == "message_too_large"
    assert outcome.close_code == 1009
    multibyte = "é" * (LIMIT // 2 + 1)  # fewer characters than the limit, more bytes
    assert handler.handle(multibyte).close_code == 1009
    assert handler.handle("é" * (LIMIT // 4)).close_code is None


def test_rate_limited_frame_is_not_processed(store: FakeStore, published: list[dict[str, Any]]) -> None:
    handler = FrameHandler(
        DEVICE, max_message_bytes=LIMIT, store=store, publish=published.extend, retry_after=lambda _device: 1.25
    )
    outcome = send(handler, sample_frame(DEVICE, 1))
    assert outcome.reply == {
        "type": "error",
        "code": "rate_limited",
        "message": "device frame budget exceeded",
        "retry_after": 1.25,
    }
    assert outcome.close_code is None
    assert store.calls == []


def test_ping_echoes_ts_and_gives_server_time(handler: FrameHandler) -> None:
    pong = send(handler, {"type": "ping", "ts": {"t": 12.5}}).reply
    assert pong["type"] == "pong"
    assert pong["ts"] == {"t": 12.5}
    assert datetime.fromisoformat(pong["server_time"]).utcoffset() is not None
    assert send(handler, {"type": "ping"}).reply["ts"] is None


def test_batch_lists_every_sample_once_in_order(
    handler: FrameHandler, store: FakeStore, published: list[dict[str, Any]]
) -> None:
    good = [sample_frame(DEVICE, seq) for seq in (1, 2, 3)]
    bad = sample_frame(DEVICE, 4)
    bad["as7341"]["channels"]["NIR"] = 1.5
    samples = [good[0], bad, good[1], good[0], "not an object", good[2]]
    send(handler, good[2])  # stored before: duplicate in the batch
    outcome = send(handler, {"type": "sensor_batch", "batch_id": "B-1", "samples": samples})
    reply = outcome.reply
    assert reply["type"] == "batch_ack"
    assert reply["batch_id"] == "B-1"
    assert [(ack["sample_id"], ack["status"]) for ack in reply["acks"]] == [
        (good[0]["sample_id"], "stored"),
        (good[1]["sample_id"], "stored"),
        (good[0]["sample_id"], "duplicate"),
        (good[2]["sample_id"], "duplicate"),
    ]
    assert [(error["index"], error["sample_id"], error["seq"]) for error in reply["errors"]] == [
        (1, bad["sample_id"], 4),
        (4, None, None),
    ]
    assert reply["errors"][0]["details"][0]["loc"] == ["as7341", "channels", "NIR"]
    assert store.calls[-1] == [s["sample_id"] for s in (good[0], good[1], good[0], good[2])]
    assert [item["sample_id"] for item in published] == [s["sample_id"] for s in (good[2], good[0], good[1])]


@pytest.mark.parametrize(
    "envelope",
    [
        {"type": "sensor_batch"},
        {"type": "sensor_batch", "samples": []},
        {"type": "sensor_batch", "samples": "x"},
        {"type": "sensor_batch", "batch_id": "B-9", "samples": [{}] * 501},
    ],
    ids=["missing", "empty", "not a list", "501"],
)
def test_batch_envelope_error_stores_nothing(handler: FrameHandler, store: FakeStore, envelope: dict[str, Any]) -> None:
    reply = send(handler, envelope).reply
    assert reply["code"] == "validation_error"
    assert reply["sample_id"] is None
    assert reply["batch_id"] == envelope.get("batch_id")
    assert reply["details"]
    assert store.calls == []


def test_batch_of_only_invalid_samples_is_acked_without_storage(handler: FrameHandler, store: FakeStore) -> None:
    reply = send(handler, {"type": "sensor_batch", "samples": [{"sample_id": "S-1"}]}).reply
    assert reply["acks"] == []
    assert reply["errors"][0]["sample_id"] == "S-1"
    assert store.calls == []


def test_storage_failure_is_internal_error_without_ack_or_fanout(
    handler: FrameHandler, store: FakeStore, published: list[dict[str, Any]]
) -> None:
    store.failure = StorageError("OperationalError")
    frame = sample_frame(DEVICE, 3)
    outcome = send(handler, frame)
    assert outcome.reply["code"] == "internal_error"
    assert outcome.reply["sample_id"] == frame["sample_id"]
    assert outcome.close_code is None
    batch = send(handler, {"type": "sensor_batch", "batch_id": "B-2", "samples": [frame]})
    assert batch.reply["code"] == "internal_error"
    assert batch.reply["batch_id"] == "B-2"
    assert published == []


def test_disabled_device_is_closed_with_1008(handler: FrameHandler, store: FakeStore) -> None:
    store.failure = DeviceRejected("device_disabled", "device is disabled")
    outcome = send(handler, sample_frame(DEVICE, 1))
    assert outcome.reply["code"] == "device_disabled"
    assert outcome.close_code == 1008


def test_an_unexpected_bug_costs_one_frame_not_the_connection(app: APIFlask, store: FakeStore) -> None:
    store.failure = RuntimeError("bug")
    handler = FrameHandler(
        DEVICE, max_message_bytes=LIMIT, store=store, publish=lambda _s: None, retry_after=lambda _device: None
    )
    with app.app_context():
        outcome = ws._handle(handler, json.dumps(sample_frame(DEVICE, 1)), trace.INVALID_SPAN_CONTEXT)
    assert outcome.reply["code"] == "internal_error"
    assert outcome.close_code is None


def test_a_reply_that_cannot_be_encoded_costs_one_frame(app: APIFlask, handler: FrameHandler) -> None:
    handler.handle = lambda message: Outcome("ping", {"type": "pong", "ts": math.nan})  # type: ignore[method-assign]
    with app.app_context():
        outcome = ws._handle(handler, "{}", trace.INVALID_SPAN_CONTEXT)
    assert outcome.reply["code"] == "internal_error"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_ping_ts_that_is_not_json_gets_invalid_json(handler: FrameHandler, literal: str) -> None:
    outcome = handler.handle('{"type":"ping","ts":' + literal + "}")
    assert (outcome.reply["code"], outcome.close_code) == ("invalid_json", None)

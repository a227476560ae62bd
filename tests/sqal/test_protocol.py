"""The protocol's names (backend/sqal/protocol.py): the one contract list of frame types and error codes, and every
other place that lists them — reply models, docs/protocol.md's tables, the simulator's frames — agreeing with it."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from backend.sqal import protocol
from backend.sqal.protocol import ClientFrame, DashboardEvent, ErrorCode, ServerFrame, UnhandledFrame
from scripts.devservices import REPO_ROOT
from scripts.wire_schemas import FRAMES, json_schema
from simulator.link import AUTH_ERRORS
from simulator.outbox import StoredSample
from simulator.wire import Frame, frame_text

PROTOCOL_DOC = REPO_ROOT / "docs" / "protocol.md"


def test_the_wire_names_are_the_contract() -> None:
    # The one literal copy: devices and dashboards depend on these exact strings (docs/protocol.md §2.1, §4.3).
    assert list(ClientFrame) == ["sensor_data", "sensor_batch", "ping"]
    assert list(ServerFrame) == ["ack", "batch_ack", "pong", "error"]
    assert list(DashboardEvent) == ["hello", "metrics", "sample", "status", "pong", "error"]
    assert list(ErrorCode) == [
        "unauthorized",
        "device_disabled",
        "invalid_json",
        "unknown_type",
        "validation_error",
        "message_too_large",
        "rate_limited",
        "internal_error",
        "server_busy",
        "conflict",
        "session_replaced",
    ]
    # Metric labels only (websocket_messages_received_total{type}), never on the wire.
    assert list(UnhandledFrame) == ["invalid", "unknown", "oversize", "rate_limited", "internal"]
    assert not set(UnhandledFrame) & set(ClientFrame)


def test_every_frame_type_has_its_model() -> None:
    assert set(protocol.SENSOR_REPLIES) == set(ServerFrame)
    assert set(protocol.DASHBOARD_EVENTS) == set(DashboardEvent)
    stems = {stem.split(".")[1] for stem in FRAMES}
    assert stems == set(ClientFrame) | set(ServerFrame) | set(DashboardEvent)


def test_error_frames_carry_exactly_the_error_codes() -> None:
    assert json_schema("sensors.error")["properties"]["code"]["enum"] == list(ErrorCode)
    for code in ErrorCode:
        frame = protocol.error_frame(code, "why")
        assert json.loads(json.dumps(frame)) == {"type": "error", "code": code.value, "message": "why"}
        protocol.Error.model_validate(frame)
    with pytest.raises(ValidationError):
        protocol.Error.model_validate(protocol.error_frame("nope", "why"))  # type: ignore[arg-type]


def markdown_table(text: str, *header: str) -> list[list[str]]:
    """The body cells of the Markdown table whose header cells start with `header`."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if [c.strip() for c in line.split("|")[1:-1]][: len(header)] == list(header)
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_error_code_table_of_the_protocol_lists_every_code() -> None:
    rows = markdown_table(PROTOCOL_DOC.read_text(encoding="utf-8"), "`code`", "when", "connection")
    documented = [re.fullmatch(r"`(\w+)`", row[0]) for row in rows]
    assert sorted(match[1] for match in documented if match) == sorted(ErrorCode)


def test_the_frame_table_of_the_protocol_lists_every_type() -> None:
    rows = markdown_table(PROTOCOL_DOC.read_text(encoding="utf-8"), "`type`", "socket", "direction")
    by_socket = {(row[1], row[2], row[0].strip("`")) for row in rows}
    sensors = {("`/ws/sensors/`", "client → server", kind) for kind in ClientFrame}
    sensors |= {("`/ws/sensors/`", "server → client", kind) for kind in ServerFrame}
    dashboard = {("`/ws/dashboard/`", "client → server", ClientFrame.PING)}
    dashboard |= {("`/ws/dashboard/`", "server → client", kind) for kind in DashboardEvent}
    assert by_socket == sensors | dashboard


def test_the_simulator_speaks_the_same_names() -> None:
    # simulator/ imports nothing from backend/: its own spelling of the names must match.
    assert AUTH_ERRORS.issubset(ErrorCode)
    sample = StoredSample("D1", 1, "S1", json.dumps({"type": "sensor_data"}))
    texts = [
        frame_text("D1", Frame("sample", "S1", [sample], 0.0)),
        frame_text("D1", Frame("batch", "b1", [sample], 0.0)),
        frame_text("D1", Frame("ping", 1, [], 0.0)),
    ]
    assert [json.loads(text)["type"] for text in texts] == list(ClientFrame)

"""One fuzz stream over `/ws/sensors/`: send each frame, label the reply (or close) and check it against what
docs/protocol.md requires for that frame (`FuzzFrame.expected`, §4's reply fields)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.sqal.ingest.fuzz_model import Deep, FuzzFrame

RECV_TIMEOUT = 30.0  # a reply slower than this is reported as a hang
CLOSING_CODES = frozenset({"message_too_large", "unauthorized", "device_disabled", "server_busy"})


def open_device_socket(url: str, token: str, **headers: str) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}", **headers}
    return connect(url, additional_headers=headers, max_size=None, open_timeout=10, close_timeout=2)


def close_label(exc: ConnectionClosed) -> str:
    return f"close:{exc.rcvd.code}" if exc.rcvd is not None else "close:none"


def reply_label(reply: Any) -> str:
    if not isinstance(reply, dict) or not isinstance(reply.get("type"), str):
        return "malformed-reply"
    if reply["type"] == "error":
        return f"error:{reply.get('code')}"
    if reply["type"] == "ack":
        return f"ack:{reply.get('status')}"
    return str(reply["type"])


def reply_problems(frame: FuzzFrame, reply: dict[str, Any], raw: str) -> list[str]:
    """What in a reply of the expected type breaks docs/protocol.md §4 for this frame."""
    problems: list[str] = []
    kind = reply["type"]
    if kind == "error":
        if not (isinstance(reply.get("code"), str) and isinstance(reply.get("message"), str)):
            problems.append("error without string code and message")
        for detail in reply.get("details") or []:
            loc = detail.get("loc")
            if not (isinstance(loc, list) and all(isinstance(part, str | int) for part in loc)):
                problems.append(f"bad details loc {loc!r}")
            if not (isinstance(detail.get("msg"), str) and isinstance(detail.get("type"), str)):
                problems.append("details entry without msg/type")
        if reply["code"] == "rate_limited" and not 0 < reply.get("retry_after", 0) <= 60:
            problems.append(f"retry_after {reply.get('retry_after')!r}")
    elif kind == "ack":
        got = (reply.get("sample_id"), reply.get("seq"), reply.get("status"))
        if (got,) != frame.acks:
            problems.append(f"ack {got} != {frame.acks}")
    elif kind == "batch_ack":
        acks = tuple((a.get("sample_id"), a.get("seq"), a.get("status")) for a in reply.get("acks", []))
        errors = reply.get("errors", [])
        if acks != frame.acks:
            problems.append(f"batch acks {acks} != {frame.acks}")
        if tuple(e.get("index") for e in errors) != frame.batch_errors:
            problems.append(f"batch error indexes {[e.get('index') for e in errors]} != {frame.batch_errors}")
        if any(e.get("code") != "validation_error" or not e.get("details") for e in errors):
            problems.append("batch error without validation_error details")
    elif kind == "pong":
        if isinstance(frame.pong_ts, Deep):
            if '"ts":' + frame.pong_ts.text() not in raw:
                problems.append("deep ts not echoed")
        elif reply.get("ts") != frame.pong_ts:
            problems.append("ts not echoed")
    return problems


@dataclass
class Tally:
    """What one stream saw."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    stored: list[tuple[str, str]] = field(default_factory=list)  # (device_id, sample_id) acked "stored"
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    connections: int = 0


def exchange_one(ws: ClientConnection, frame: FuzzFrame) -> tuple[str, dict[str, Any] | None, str, bool]:
    """Send one frame; (outcome label, reply, raw reply, connection closed)."""
    try:
        ws.send(frame.message, text=True if frame.as_text else None)
        raw = ws.recv(timeout=RECV_TIMEOUT)
    except ConnectionClosed as exc:
        return close_label(exc), None, "", True
    except TimeoutError:
        return "timeout", None, "", True
    if isinstance(raw, bytes):
        return "binary-reply", None, "", False
    try:
        reply = json.loads(raw)
    except RecursionError:  # a deep `ts` echoed back: `reply_problems` checks it on the text
        reply = {"type": "pong"} if raw.startswith('{"type":"pong"') else None
    except ValueError:
        reply = None
    if reply is None:
        return "unparseable-reply", None, raw, False
    label, closed = reply_label(reply), False
    if label.startswith("error:") and reply.get("code") in CLOSING_CODES:
        try:
            ws.recv(timeout=RECV_TIMEOUT)
            label += "+frame-after-closing-error"
        except ConnectionClosed as exc:
            label, closed = f"{label}+{close_label(exc)}", True
        except TimeoutError:
            label += "+no-close"
    return label, reply, raw, closed


def run_stream(url: str, segments: list[tuple[str, str, list[FuzzFrame]]], seed: int) -> Tally:
    """Send each device's frames in order on one socket at a time, reconnecting after each close."""
    tally = Tally()
    for device_id, token, frames in segments:
        position, previous = 0, "-"
        while position < len(frames):
            with open_device_socket(url, token) as ws:
                tally.connections += 1
                closed = False
                while position < len(frames) and not closed:
                    frame = frames[position]
                    label, reply, raw, closed = exchange_one(ws, frame)
                    tally.outcomes[(frame.kind, label)] += 1
                    if label not in frame.expected:
                        tally.problems.append(
                            f"seed {seed} {device_id} frame {position} {frame.kind} (after {previous}): got {label}, "
                            f"expected {sorted(frame.expected)}; sent {frame.message[:160]!r}; reply {raw[:300]!r}"
                        )
                    elif reply is not None:
                        for problem in reply_problems(frame, reply, raw):
                            tally.problems.append(f"seed {seed} {device_id} frame {position} {frame.kind}: {problem}")
                        for sample_id, _, status in frame.acks:
                            (tally.stored if status == "stored" else tally.duplicates).append((device_id, sample_id))
                    position, previous = position + 1, frame.kind
    return tally

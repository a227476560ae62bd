"""A tiny `/ws/sensors/` server for the simulator's tests, following docs/protocol.md.

It stores samples in memory, acks after "storing", and can misbehave on purpose: drop the connection before
or after storing, send duplicate acks, rate-limit frames.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve

from tests.simulator.protocol_validator import validate_sample


@dataclass
class Chaos:
    """Misbehaviour probabilities per received frame."""

    drop_before_store: float = 0.0
    drop_after_store: float = 0.0
    duplicate_ack: float = 0.0
    rate_limit: float = 0.0
    silent: bool = False


@dataclass
class FakeSensorServer:
    """In-memory sensor server; `stored[(device_id, sample_id)]` is the parsed sample."""

    tokens: dict[str, str]
    chaos: Chaos = field(default_factory=Chaos)
    disabled: set[str] = field(default_factory=set)
    seed: int = 0
    stored: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    duplicates_received: int = 0
    frames_received: int = 0
    drops: int = 0
    invalid: list[tuple[str, list[str]]] = field(default_factory=list)
    auth_refusals: int = 0
    _server: Server | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/sensors/"

    async def __aenter__(self) -> FakeSensorServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def stored_seqs(self) -> dict[str, list[int]]:
        """Sorted seqs stored per device."""
        seqs: dict[str, list[int]] = {}
        for (device_id, _), sample in self.stored.items():
            seqs.setdefault(device_id, []).append(sample["seq"])
        return {device_id: sorted(values) for device_id, values in seqs.items()}

    def _authenticate(self, ws: ServerConnection) -> tuple[str | None, str]:
        request = ws.request
        assert request is not None
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        if token is None:
            token = (parse_qs(urlsplit(request.path).query).get("token") or [""])[0]
        device_id = self.tokens.get(token or "")
        if device_id is None:
            return None, "unauthorized"
        if device_id in self.disabled:
            return None, "device_disabled"
        return device_id, ""

    async def _handle(self, ws: ServerConnection) -> None:
        device_id, code = self._authenticate(ws)
        if device_id is None:
            self.auth_refusals += 1
            await ws.send(json.dumps({"type": "error", "code": code, "message": "refused"}))
            await ws.close(1008)
            return
        async for message in ws:
            self.frames_received += 1
            if self.chaos.silent:
                continue
            replies = self._process(device_id, message)
            if replies is None:
                self.drops += 1
                ws.transport.abort()
                return
            for reply in replies:
                await ws.send(json.dumps(reply))

    def _roll(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def _process(self, device_id: str, message: str | bytes) -> list[dict[str, Any]] | None:
        """Replies to one frame, or None to drop the connection without replying."""
        try:
            frame = json.loads(message)
        except ValueError:
            return [{"type": "error", "code": "invalid_json", "message": "not JSON"}]
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            return [{"type": "pong", "ts": frame.get("ts"), "server_time": "2025-01-01T00:00:00Z"}]
        if kind not in ("sensor_data", "sensor_batch"):
            return [{"type": "error", "code": "unknown_type", "message": str(kind)}]
        if self._roll(self.chaos.rate_limit):
            return [{"type": "error", "code": "rate_limited", "message": "slow down", "retry_after": 0.05}]
        if self._roll(self.chaos.drop_before_store):
            return None
        samples = [frame] if kind == "sensor_data" else frame.get("samples", [])
        results = [self._store(device_id, sample) for sample in samples]
        if self._roll(self.chaos.drop_after_store):
            return None
        if kind == "sensor_data":
            reply = results[0]
            replies = [reply]
            if reply["type"] == "ack" and self._roll(self.chaos.duplicate_ack):
                replies.append(dict(reply))
            return replies
        acks = [r for r in results if r["type"] == "ack"]
        errors = [
            {k: v for k, v in r.items() if k != "type"} | {"index": i}
            for i, r in enumerate(results)
            if r["type"] == "error"
        ]
        for ack in acks:
            del ack["type"]
        batch_ack = {"type": "batch_ack", "batch_id": frame.get("batch_id"), "acks": acks, "errors": errors}
        replies = [batch_ack]
        if self._roll(self.chaos.duplicate_ack):
            replies.append(json.loads(json.dumps(batch_ack)))
        return replies

    def _store(self, device_id: str, sample: dict[str, Any]) -> dict[str, Any]:
        problems = validate_sample(sample, device_id)
        sample_id = sample.get("sample_id")
        if problems:
            self.invalid.append((str(sample_id), problems))
            return {
                "type": "error",
                "code": "validation_error",
                "message": "invalid sample",
                "sample_id": sample_id,
                "seq": sample.get("seq"),
                "details": [{"loc": p.split("."), "msg": "invalid", "type": "value_error"} for p in problems],
            }
        key = (device_id, str(sample_id))
        if key in self.stored:
            self.duplicates_received += 1
            status = "duplicate"
        else:
            self.stored[key] = sample
            status = "stored"
        return {"type": "ack", "sample_id": sample_id, "seq": sample.get("seq"), "status": status}


class ThreadedServer:
    """Runs a FakeSensorServer in its own thread and event loop (for code that calls asyncio.run itself)."""

    def __init__(self, server: FakeSensorServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeSensorServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

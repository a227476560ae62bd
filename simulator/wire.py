"""Wire-level pieces of a device link: settings, counters, frames in flight and their JSON text."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from simulator.outbox import StoredSample


@dataclass(frozen=True)
class LinkOptions:
    """Delivery settings shared by all devices of a run."""

    url: str
    batch: int = 0
    window: int = 8
    linger_s: float = 1.0
    max_message_bytes: int = 1_048_576
    token_in_query: bool = False
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    open_timeout_s: float = 10.0
    reply_timeout_s: float = 30.0
    heartbeat_s: float = 30.0
    max_auth_failures: int = 3
    drop_probability: float = 0.0


@dataclass
class LinkStats:
    """Counters of one link; `sent` counts sample transmissions, resends included."""

    sent: int = 0
    resent: int = 0
    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    frames: int = 0
    connects: int = 0
    disconnects: int = 0
    rate_limited: int = 0
    stray_acks: int = 0
    dropped: int = 0
    # Every reply (pongs included), from the frame's send to its reply.
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    # Sample frames only, from send to ack: the server's answer time plus the network, nothing client-side.
    ack_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    # Each acked sample, from its generation to its ack: batching linger and queues in the simulator included.
    delivery_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))


@dataclass
class Frame:
    """A frame in flight, waiting for its one reply."""

    kind: str  # "sample" | "batch" | "ping"
    key: Any
    samples: list[StoredSample]
    sent_at: float


def frame_text(device_id: str, frame: Frame) -> str:
    """Wire text of a frame; sample payloads are already-encoded JSON and are spliced in as they are."""
    if frame.kind == "sample":
        return frame.samples[0].payload
    if frame.kind == "ping":
        return json.dumps({"type": "ping", "ts": frame.key})
    body = ",".join(sample.payload for sample in frame.samples)
    return f'{{"type":"sensor_batch","batch_id":{json.dumps(frame.key)},"samples":[{body}]}}'

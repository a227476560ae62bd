"""A minimal SQAL device, for firmware authors: the whole protocol in one file (docs/protocol.md has the rules).

    python clients/device_client.py ws://127.0.0.1:8000/ws/sensors/ TOKEN DEVICE_ID --count 5

1. Connect with the device token in `Authorization: Bearer` (a device that cannot set headers may use `?token=`).
2. Give every sample a `sample_id` that never changes, and keep it in an outbox until the server acknowledges it.
3. Send one `sensor_data` frame, read its one reply:
   - `ack` with `"status": "stored"` or `"duplicate"`: delivered (a duplicate is a resend of a stored sample);
   - `error` `rate_limited`: wait `retry_after` seconds, send again;
   - `error` `validation_error`: the sample can never be stored; log it and drop it;
   - `error` `conflict`: another sample is stored under this sample_id (a counter or clock reset); drop it too;
   - `error` `internal_error` or a lost connection: keep it, reconnect with a back-off, send it again.
4. A close with code 1008 means the credential is refused (unknown, rotated, disabled): stop and alert a human.
   A close with 4000 (`session_replaced`) means a newer connection of this device took over: reconnect as after a
   lost connection (docs/protocol.md §1.1).
Only `websockets` is needed (`pip install websockets`); nothing here imports the backend or the simulator.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

POLICY_VIOLATION = 1008  # refused credential: retrying will not help
CHANNELS = [f"F{n}_{nm}nm" for n, nm in enumerate((415, 445, 480, 515, 555, 590, 630, 680), start=1)] + ["Clear", "NIR"]


class CredentialRefused(Exception):
    """The server closed with 1008: the token is unknown, rotated or the device disabled."""


def make_sample(device_id: str, seq: int) -> dict[str, Any]:
    """One version-2 `sensor_data` frame with plausible readings (a real device fills in its sensors' values)."""
    now = datetime.now(UTC)
    flat = [[250.0] * 8 for _ in range(8)]
    return {
        "type": "sensor_data",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "device_id": device_id,
        "sample_id": f"{device_id}-{now:%Y%m%d-%H%M%S}-{seq:06d}",
        "seq": seq,
        "vl53l8ch": {
            "distance_matrix": flat,
            "reflectance_matrix": [[60.0] * 8 for _ in range(8)],
            "amplitude_matrix": [[1200.0] * 8 for _ in range(8)],
            "target_status_matrix": [[5] * 8 for _ in range(8)],
            "sensor_height_mm": 300.0,
            "volume_mm3": 250000.0,
            "avg_height_mm": 50.0,
            "surface_uniformity": 0.9,
            "height_variation_mm": 2.0,
            "quality_score": 0.9,
            "grade": "A",
            "defects": [],
            "bins_analysis": {},
            "reflectance_analysis": {},
        },
        "as7341": {
            "channels": dict.fromkeys(CHANNELS, 1000),  # raw counts, <= (atime + 1) * (astep + 1)
            "atime": 29,
            "astep": 599,
            "integration_time": 50,  # ms: (atime + 1) * (astep + 1) * 2.78 us
            "gain": 64,
            "freshness_index": 0.9,
            "fat_quality_index": 0.9,
            "oxidation_index": 0.1,
            "color_uniformity": 0.9,
            "quality_score": 0.9,
            "grade": "A",
            "defects": [],
            "spectral_analysis": {},
            "color_analysis": {},
        },
        "fusion": {
            "final_score": 0.9,
            "final_grade": "A",
            "confidence": 0.95,
            "vl53l8ch_score": 0.9,
            "as7341_score": 0.9,
            "defects": [],
        },
        "meta": {
            "firmware_version": "device-client-1",
            "temperature_c": 4.0,
            "humidity_percent": 80.0,
            "config_profile": "minimal",
        },
    }


class Device:
    """An outbox of samples and one connection; `deliver()` sends until the outbox is empty."""

    def __init__(self, url: str, token: str, *, max_backoff: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.max_backoff = max_backoff
        self.outbox: OrderedDict[str, dict[str, Any]] = OrderedDict()  # sample_id -> frame, oldest first
        self.delivered: dict[str, str] = {}  # sample_id -> "stored" | "duplicate"
        self.dropped: dict[str, Any] = {}  # sample_id -> the server's validation details

    def queue(self, frame: dict[str, Any]) -> None:
        """Keep a sample until the server acknowledges it."""
        self.outbox[frame["sample_id"]] = frame

    def deliver(self, deadline: float = 60.0) -> None:
        """Send every queued sample, reconnecting with a back-off after a lost connection."""
        backoff, give_up = 0.5, time.monotonic() + deadline
        while self.outbox:
            if time.monotonic() > give_up:
                raise TimeoutError(f"{len(self.outbox)} samples still unacknowledged")
            headers = {"Authorization": f"Bearer {self.token}"}
            try:
                with connect(self.url, additional_headers=headers, open_timeout=10, close_timeout=2) as ws:
                    backoff = 0.5
                    while self.outbox:
                        self._send_oldest(ws)
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == POLICY_VIOLATION:
                    raise CredentialRefused(closed.rcvd.reason or "credential refused") from closed
            except (OSError, TimeoutError, InvalidHandshake):  # the last: cut during the handshake (no HTTP answer)
                pass
            else:
                continue
            time.sleep(backoff * random.uniform(0.5, 1.0))  # jitter: devices must not reconnect in step
            backoff = min(backoff * 2, self.max_backoff)

    def _send_oldest(self, ws: ClientConnection) -> None:
        sample_id, frame = next(iter(self.outbox.items()))
        ws.send(json.dumps(frame))
        reply = json.loads(ws.recv(timeout=15))
        if reply["type"] == "ack":
            self.delivered[sample_id] = reply["status"]
            del self.outbox[sample_id]
        elif reply.get("code") == "rate_limited":
            time.sleep(float(reply.get("retry_after") or 1.0))
        elif reply.get("code") in ("validation_error", "conflict"):
            self.dropped[sample_id] = reply.get("details") or reply.get("message")
            del self.outbox[sample_id]
        # Any other error (internal_error, ...): the sample stays first in the outbox and is sent again.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws://HOST:PORT/ws/sensors/ (or wss://)")
    parser.add_argument("token", help="the device token printed by `flask sqal create-device`")
    parser.add_argument("device_id")
    parser.add_argument("--count", type=int, default=1, help="samples to send")
    args = parser.parse_args(argv)
    device = Device(args.url, args.token)
    for seq in range(args.count):
        device.queue(make_sample(args.device_id, seq))
    try:
        device.deliver()
    except CredentialRefused as refused:
        print(f"credential refused: {refused}", file=sys.stderr)
        return 2
    for sample_id, status in device.delivered.items():
        print(f"{sample_id} {status}")
    for sample_id, details in device.dropped.items():
        print(f"{sample_id} refused {json.dumps(details)}", file=sys.stderr)
    return 0 if not device.dropped else 1


if __name__ == "__main__":
    sys.exit(main())

"""SQAL test helpers: valid frames (from the protocol document's example), devices, gunicorn servers."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from sqlalchemy import text
from websockets.sync.client import ClientConnection

from backend.extensions import db
from backend.sqal.devices import service
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from tests.support.server import GunicornServer, session_server

PROTOCOL_DOC = REPO_ROOT / "docs" / "protocol.md"
WS_PATH = "/ws/sensors/"
# Room for a 500-sample batch of ~2.7 KB samples, small enough to cut quickly in the oversize tests.
SERVER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024


def _protocol_example() -> dict[str, Any]:
    document = PROTOCOL_DOC.read_text(encoding="utf-8")
    match = re.search(r"## 9\. Complete example.*?```json\n(.*?)```", document, re.S)
    assert match, "docs/protocol.md lost its complete example frame"
    return json.loads(match.group(1))


EXAMPLE = _protocol_example()

# The `sensor_data` frame of the reference deployment guide (sqal-deployment-guide.md, "Format WebSocket"), byte for
# byte: JSON with `//` comments and `...` where the guide elides the raw data.
REFERENCE_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "reference" / "sensor_data_frame.jsonc"
_TRAY, _LIVER = (250, 70.0, 1350), (231, 44.0, 1100)  # distance mm, reflectance %, amplitude kcps/SPAD
_ZONES = [[_LIVER if 2 <= row <= 5 and 2 <= col <= 5 else _TRAY for col in range(8)] for row in range(8)]
_ELIDED_MATRICES = {
    name: [[zone[index] for zone in row] for row in _ZONES]
    for index, name in enumerate(("distance_matrix", "reflectance_matrix", "amplitude_matrix"))
}
_ELIDED_CHANNELS = {"F3_480nm": 1678, "F4_515nm": 1890, "F5_555nm": 2011, "F6_590nm": 2145, "F7_630nm": 2260,
                    "F8_680nm": 1987, "Clear": 5123, "NIR": 876}  # fmt: skip


def reference_frame_text() -> str:
    """The reference frame as a device following the guide sends it: the fixture without its comments, the elided
    matrices, channels and analysis objects filled in; every field the guide writes is kept as written."""
    text = re.sub(r"[ \t]*//[^\n]*", "", REFERENCE_FIXTURE.read_text(encoding="utf-8"))
    text = re.sub(
        r'"(\w+_matrix)": \[\[\.\.\.\], \.\.\.\]', lambda m: f'"{m[1]}": {json.dumps(_ELIDED_MATRICES[m[1]])}', text
    )
    channels = ",\n      ".join(f'"{name}": {count}' for name, count in _ELIDED_CHANNELS.items())
    text = re.sub(r"\n([ ]*)\.\.\.\n", lambda m: f"\n{m[1]}{channels}\n", text)
    text = text.replace("{...}", "{}")
    assert "..." not in text, "the reference fixture has an elision this helper does not fill"
    return text


def reference_frame() -> dict[str, Any]:
    """`reference_frame_text()` decoded."""
    frame: dict[str, Any] = json.loads(reference_frame_text())
    return frame


def sample_frame(device_id: str, seq: int, timestamp: datetime | None = None, **changes: Any) -> dict[str, Any]:
    """A valid `sensor_data` frame for the device: the protocol example with its own id, seq and time."""
    frame = copy.deepcopy(EXAMPLE)
    moment = timestamp or datetime.now(UTC) - timedelta(seconds=1)
    frame.update(
        device_id=device_id,
        seq=seq,
        timestamp=moment.isoformat().replace("+00:00", "Z"),
        sample_id=f"SAMPLE-{moment:%Y%m%d-%H%M%S}-{seq:04d}",
    )
    frame.update(changes)
    return frame


def unique_device_id(prefix: str = "ESP32_T") -> str:
    """A device id no other test (or earlier run sharing the Redis rate-limit keys) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_device(app: APIFlask, device_id: str | None = None, enabled: bool = True) -> tuple[str, str]:
    """Create a device; return (device_id, token)."""
    device_id = device_id or unique_device_id()
    with app.app_context():
        token = service.create_device(device_id, profile="test")
        if not enabled:
            service.set_device_enabled(device_id, False)
        db.session.remove()
    return device_id, token


def stored_sample_ids(app: APIFlask, device_id: str) -> list[str]:
    """The sample ids stored for the device (one entry per row)."""
    with app.app_context():
        rows = db.session.execute(
            text("SELECT sample_id FROM sensor_samples WHERE device_id = :d ORDER BY seq"), {"d": device_id}
        )
        ids = [row[0] for row in rows]
        db.session.remove()
    return ids


def start_server(services: TestServices, log_dir: Path, **env: str) -> GunicornServer:
    """A real gunicorn (2 workers) on the session database with SQAL-friendly settings, overridable."""
    base = {
        "WS_MAX_MESSAGE_BYTES": str(SERVER_MAX_MESSAGE_BYTES),
        "WS_DEVICE_RATE_LIMIT": "100000/minute",
        "SHUTDOWN_TIMEOUT": "10",
    }
    return session_server(services, log_dir, rate_limits=True, **{**base, **env}).start()


def receive(ws: ClientConnection, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
    """The next frame of type `kind` whose fields include `match`, or a `sample` frame whose sample has the matched
    `sample_id` (other frames skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] == kind and all(frame.get(key) == value for key, value in match.items()):
            return frame
        if kind == "sample" and frame["type"] == "sample" and frame["sample"]["sample_id"] == match.get("sample_id"):
            return frame

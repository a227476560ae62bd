"""Write the WebSocket protocol's machine-readable kit from the pydantic models (a test detects drift):

- `docs/wire/*.schema.json`: one JSON Schema (draft 2020-12) per frame, both directions, both protocol versions;
- `docs/asyncapi.yaml`: an AsyncAPI 3 document of `/ws/sensors/` and `/ws/dashboard/` embedding those schemas.

Usage: `python -m scripts.wire_schemas [DOCS_DIR]` (default `docs`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field

from backend import __version__
from backend.sqal import protocol
from backend.sqal.ingest.schemas import MAX_BATCH_SAMPLES, BatchIn, SampleIn, SampleV2
from backend.sqal.protocol import ClientFrame


class SensorDataV1(SampleIn):
    """`sensor_data`, protocol version 1 (the reference frame: no `seq`)."""

    type: Literal[ClientFrame.SENSOR_DATA]


class SensorDataV2(SampleV2):
    """`sensor_data`, protocol version 2 (the simulator's frame)."""

    type: Literal[ClientFrame.SENSOR_DATA]


class SensorBatchV1(BatchIn):
    """`sensor_batch` of version-1 samples (a batch may mix versions: each sample is checked by its own)."""

    samples: Annotated[list[SampleIn], Field(min_length=1, max_length=MAX_BATCH_SAMPLES)]


class SensorBatchV2(BatchIn):
    """`sensor_batch` of version-2 samples."""

    samples: Annotated[list[SampleV2], Field(min_length=1, max_length=MAX_BATCH_SAMPLES)]


# file stem -> (model, channel, direction); "send" is what the client sends, "receive" what it receives.
FRAMES: dict[str, tuple[type[BaseModel], str, str]] = {
    f"sensors.{ClientFrame.SENSOR_DATA}.v1": (SensorDataV1, "sensors", "send"),
    f"sensors.{ClientFrame.SENSOR_DATA}.v2": (SensorDataV2, "sensors", "send"),
    f"sensors.{ClientFrame.SENSOR_BATCH}.v1": (SensorBatchV1, "sensors", "send"),
    f"sensors.{ClientFrame.SENSOR_BATCH}.v2": (SensorBatchV2, "sensors", "send"),
    f"sensors.{ClientFrame.PING}": (protocol.Ping, "sensors", "send"),
    **{f"sensors.{kind}": (model, "sensors", "receive") for kind, model in protocol.SENSOR_REPLIES.items()},
    f"dashboard.{ClientFrame.PING}": (protocol.Ping, "dashboard", "send"),
    **{f"dashboard.{kind}": (model, "dashboard", "receive") for kind, model in protocol.DASHBOARD_EVENTS.items()},
}
CHANNELS = {
    "sensors": ("/ws/sensors/", "Devices stream samples; one reply per frame, in order (docs/protocol.md)."),
    "dashboard": ("/ws/dashboard/", "Live quality view: snapshots, stored samples, subscription status."),
}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(stem: str) -> dict[str, Any]:
    """The JSON Schema of one frame, standalone (its definitions under `$defs`)."""
    model = FRAMES[stem][0]
    schema = model.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, "$id": f"{stem}.schema.json", **schema}


def _message_name(stem: str) -> str:
    return stem.replace(".", "_")


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document: one channel per socket, a send and a receive operation each."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel, (address, description) in CHANNELS.items():
        stems = [stem for stem, (_, ch, _) in FRAMES.items() if ch == channel]
        channels[channel] = {
            "address": address,
            "description": description,
            "messages": {_message_name(s): {"$ref": f"#/components/messages/{_message_name(s)}"} for s in stems},
        }
        for direction in ("send", "receive"):
            chosen = [s for s in stems if FRAMES[s][2] == direction]
            operations[f"{channel}_{direction}"] = {
                "action": direction,
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{_message_name(s)}"} for s in chosen],
            }
    for stem, (model, _, _) in FRAMES.items():
        # A relative reference: the schemas' own `#/$defs/...` pointers stay inside their files.
        messages[_message_name(stem)] = {
            "name": _message_name(stem),
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"wire/{stem}.schema.json"},
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SQAL backend WebSockets",
            "version": __version__,
            "description": "Generated from the pydantic models by `python -m scripts.wire_schemas`; "
            "the prose contract is docs/protocol.md.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered(docs_dir: Path) -> dict[Path, str]:
    """Every generated file (path -> text)."""
    files = {
        docs_dir / "wire" / f"{stem}.schema.json": json.dumps(json_schema(stem), indent=2, sort_keys=True) + "\n"
        for stem in FRAMES
    }
    files[docs_dir / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=120)
    return files


def main(argv: list[str]) -> None:
    docs_dir = Path(argv[0]) if argv else Path("docs")
    for path, text in rendered(docs_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The wire vocabulary of both SQAL sockets (docs/protocol.md): frame types, error codes, reply statuses and the
pydantic models of the frames the server sends. The frames devices send are validated by `sqal.ingest.schemas`; both
sets are exported as JSON Schema and AsyncAPI (`python -m scripts.wire_schemas`), so the models are the one source of
the protocol, and the enums here the one list of its names: the handlers, the metrics' known label sets, the schemas
and the tables of docs/protocol.md read them.

The reply models document what the handlers build; a test validates real replies of a real server against them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


class ClientFrame(StrEnum):
    """The `type` of a frame a client sends: a device any of them, a dashboard `ping` only."""

    SENSOR_DATA = "sensor_data"
    SENSOR_BATCH = "sensor_batch"
    PING = "ping"


class ServerFrame(StrEnum):
    """The `type` of a reply on /ws/sensors/ (and of the `error` a dashboard gets when no slot is free)."""

    ACK = "ack"
    BATCH_ACK = "batch_ack"
    PONG = "pong"
    ERROR = "error"


class DashboardEvent(StrEnum):
    """The `type` of a frame the server sends on /ws/dashboard/."""

    HELLO = "hello"
    METRICS = "metrics"
    SAMPLE = "sample"
    STATUS = "status"
    PONG = "pong"
    ERROR = "error"  # `server_busy` only, before the socket closes with 1013


class UnhandledFrame(StrEnum):
    """How a received message not handled as a `ClientFrame` is counted (`websocket_messages_received_total{type}`)."""

    INVALID = "invalid"  # binary, not JSON, not an object, no string `type`
    UNKNOWN = "unknown"  # a `type` that is not a ClientFrame
    OVERSIZE = "oversize"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"  # handling it failed: a bug


class ErrorCode(StrEnum):
    """The `code` of an `error` frame (docs/protocol.md §4.3), also the `websocket_errors_total` label."""

    UNAUTHORIZED = "unauthorized"
    DEVICE_DISABLED = "device_disabled"
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    VALIDATION_ERROR = "validation_error"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVER_BUSY = "server_busy"
    CONFLICT = "conflict"
    SESSION_REPLACED = "session_replaced"


ReceivedType = ClientFrame | UnhandledFrame
AckStatus = Literal["stored", "duplicate"]
# An enum field's schema would be a `$defs` reference; the published schemas list the codes in place instead.
_CODES_IN_PLACE = WithJsonSchema({"enum": list(ErrorCode), "title": "Code", "type": "string"})


def error_frame(code: ErrorCode, message: str, **fields: Any) -> dict[str, Any]:
    """An `error` frame: its code, a message for people, then `fields` (sample_id, seq, batch_id, details...)."""
    return {"type": ServerFrame.ERROR, "code": code, "message": message, **fields}


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ack(_Frame):
    """Reply to `sensor_data`: the sample is stored (`stored`) or was already (`duplicate`)."""

    type: Literal[ServerFrame.ACK]
    sample_id: str
    seq: int | None = Field(description="the sample's seq; null for a version-1 sample")
    status: AckStatus


class BatchAckEntry(_Frame):
    """One stored (or already stored) sample of a batch."""

    sample_id: str
    seq: int | None
    status: AckStatus


class ValidationDetail(_Frame):
    """One broken rule, as pydantic reports it (location, message, error type)."""

    loc: list[str | int]
    msg: str
    type: str


class BatchSampleError(_Frame):
    """One refused sample of a batch (the others are stored): invalid (`validation_error`, with `details`), or its
    sample_id is already stored with other content (`conflict`, with a `message`)."""

    index: int = Field(ge=0)
    sample_id: str | None
    seq: int | None
    code: Literal[ErrorCode.VALIDATION_ERROR, ErrorCode.CONFLICT]
    details: list[ValidationDetail] | None = Field(default=None, description="validation_error only")
    message: str | None = Field(default=None, description="conflict only")


class BatchAck(_Frame):
    """Reply to `sensor_batch`: one entry per valid sample in `acks`, one per refused sample in `errors`."""

    type: Literal[ServerFrame.BATCH_ACK]
    batch_id: str | None
    acks: list[BatchAckEntry]
    errors: list[BatchSampleError]


class Pong(_Frame):
    """Reply to `ping`: its `ts` echoed as sent; `server_time` on /ws/sensors/ only."""

    type: Literal[ServerFrame.PONG]
    ts: Any = None
    server_time: str | None = Field(default=None, description="ISO 8601 time the server received the ping")


class Error(_Frame):
    """Error frame; the fields after `message` are present where the refused frame had them."""

    type: Literal[ServerFrame.ERROR]
    code: Annotated[ErrorCode, _CODES_IN_PLACE]
    message: str
    sample_id: str | None = None
    seq: int | None = None
    batch_id: str | None = None
    retry_after: float | None = Field(default=None, description="rate_limited: seconds before the next frame")
    details: list[ValidationDetail] | None = None


def frame_type(model: type[BaseModel]) -> str:
    """The `type` a frame model admits (its one Literal value)."""
    (value,) = get_args(model.model_fields["type"].annotation)
    return str(value)


# Each reply of /ws/sensors/ by its type (a test checks they are every ServerFrame).
SENSOR_REPLIES: dict[str, type[BaseModel]] = {frame_type(model): model for model in (Ack, BatchAck, Pong, Error)}


class SampleSummary(_Frame):
    """What a dashboard receives of each stored sample."""

    device_id: str
    sample_id: str
    timestamp: str
    grade: str
    score: float
    defects: list[str]


class Hello(_Frame):
    """First dashboard frame: the worker hub's id, whether it is subscribed to Redis, the snapshot period."""

    type: Literal[DashboardEvent.HELLO]
    instance: str
    live: bool
    snapshot_interval: float


class Metrics(_Frame):
    """A snapshot of the `/api/dashboard/metrics/` body, at once and every `snapshot_interval` seconds."""

    type: Literal[DashboardEvent.METRICS]
    metrics: dict[str, Any]


class SampleEvent(_Frame):
    """A sample stored by any worker of any instance (fan-out over Redis)."""

    type: Literal[DashboardEvent.SAMPLE]
    sample: SampleSummary


class Status(_Frame):
    """The Redis subscription was lost (`live: false`) or is back."""

    type: Literal[DashboardEvent.STATUS]
    live: bool


class Ping(BaseModel):
    """`ping` from a device or a dashboard, answered by a `pong` echoing `ts` (other dashboard frames are ignored)."""

    model_config = ConfigDict(extra="allow")
    type: Literal[ClientFrame.PING]
    ts: Any = None


# Each frame of /ws/dashboard/ by its type (a test checks they are every DashboardEvent).
DASHBOARD_EVENTS: dict[str, type[BaseModel]] = {
    frame_type(model): model for model in (Hello, Metrics, SampleEvent, Status, Pong, Error)
}

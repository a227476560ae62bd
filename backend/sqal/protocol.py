"""The wire vocabulary of both SQAL sockets (docs/protocol.md): error codes, reply statuses and the pydantic models of
the frames the server sends. The frames devices send are validated by `sqal.ingest.schemas`; both sets are exported
as JSON Schema and AsyncAPI (`python -m scripts.wire_schemas`), so the models are the one source of the protocol.

The reply models document what the handlers build; a test validates real replies of a real server against them.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# Error frame codes of /ws/sensors/ (docs/protocol.md §5): the error metric's known label set reads them too.
ErrorCode = Literal[
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
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)
AckStatus = Literal["stored", "duplicate"]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ack(_Frame):
    """Reply to `sensor_data`: the sample is stored (`stored`) or was already (`duplicate`)."""

    type: Literal["ack"]
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
    code: Literal["validation_error", "conflict"]
    details: list[ValidationDetail] | None = Field(default=None, description="validation_error only")
    message: str | None = Field(default=None, description="conflict only")


class BatchAck(_Frame):
    """Reply to `sensor_batch`: one entry per valid sample in `acks`, one per refused sample in `errors`."""

    type: Literal["batch_ack"]
    batch_id: str | None
    acks: list[BatchAckEntry]
    errors: list[BatchSampleError]


class Pong(_Frame):
    """Reply to `ping`: its `ts` echoed as sent; `server_time` on /ws/sensors/ only."""

    type: Literal["pong"]
    ts: Any = None
    server_time: str | None = Field(default=None, description="ISO 8601 time the server received the ping")


class Error(_Frame):
    """Error frame; the fields after `message` are present where the refused frame had them."""

    type: Literal["error"]
    code: ErrorCode
    message: str
    sample_id: str | None = None
    seq: int | None = None
    batch_id: str | None = None
    retry_after: float | None = Field(default=None, description="rate_limited: seconds before the next frame")
    details: list[ValidationDetail] | None = None


SENSOR_REPLIES: tuple[type[BaseModel], ...] = (Ack, BatchAck, Pong, Error)


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

    type: Literal["hello"]
    instance: str
    live: bool
    snapshot_interval: float


class Metrics(_Frame):
    """A snapshot of the `/api/dashboard/metrics/` body, at once and every `snapshot_interval` seconds."""

    type: Literal["metrics"]
    metrics: dict[str, Any]


class SampleEvent(_Frame):
    """A sample stored by any worker of any instance (fan-out over Redis)."""

    type: Literal["sample"]
    sample: SampleSummary


class Status(_Frame):
    """The Redis subscription was lost (`live: false`) or is back."""

    type: Literal["status"]
    live: bool


class Ping(BaseModel):
    """`ping` from a device or a dashboard, answered by a `pong` echoing `ts` (other dashboard frames are ignored)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["ping"]
    ts: Any = None


DASHBOARD_EVENTS: tuple[type[BaseModel], ...] = (Hello, Metrics, SampleEvent, Status, Pong)

"""Pydantic schemas of the SQAL read API: query strings, the opaque keyset cursor, and the response bodies.

Field names are snake_case like the sensor protocol. Timestamps in responses are UTC ISO 8601 with a `Z`; query
timestamps must carry a zone (`Z` or `±HH:MM`). The list cursor is base64url JSON holding the last item's
(timestamp, id) and a digest of the filters it was issued for, so it cannot be replayed with other filters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from backend.core.validation import UtcDatetime, comma_list_pattern, split_comma_list
from backend.sqal.sample_fields import SAMPLE_FIELDS
from backend.sqal.vocabulary import GRADES, DeviceId, Grade

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

# Timeseries buckets: width, default span (when `from` is omitted) and the widest range one request may ask for.
BUCKETS: dict[str, tuple[timedelta, timedelta, timedelta]] = {
    "1m": (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)),
    "5m": (timedelta(minutes=5), timedelta(hours=6), timedelta(days=7)),
    "15m": (timedelta(minutes=15), timedelta(hours=24), timedelta(days=14)),
    "1h": (timedelta(hours=1), timedelta(hours=24), timedelta(days=31)),
    "1d": (timedelta(days=1), timedelta(days=30), timedelta(days=366)),
}
Bucket = Literal["1m", "5m", "15m", "1h", "1d"]


# Query timestamps: RFC 3339 with a zone (what `format: date-time` documents; pydantic alone would also take Unix
# times and naive values) in years 1970-2999, far enough from datetime's limits for any default range around them.
QUERY_DATETIME_PATTERN = (
    r"^(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _query_datetime(value: Any) -> Any:
    if not isinstance(value, str) or not re.match(QUERY_DATETIME_PATTERN, value):
        raise ValueError("expected an RFC 3339 date-time with a zone in years 1970-2999, e.g. 2025-01-01T00:00:00Z")
    return value


def _as_utc(value: datetime) -> datetime:
    # Any RFC 3339 offset (up to ±23:59) is valid; PostgreSQL takes at most ±15:59, and UTC is what the rows hold.
    return value.astimezone(UTC)


QueryDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_query_datetime),
    AfterValidator(_as_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": QUERY_DATETIME_PATTERN}),
]
GradeList = Annotated[
    list[Grade],
    BeforeValidator(split_comma_list),
    WithJsonSchema(
        {"type": "string", "pattern": comma_list_pattern(GRADES), "description": "grade or comma-separated grades"}
    ),
]


_FILTERS_DIGEST = re.compile(r"[0-9a-f]{16}")


class CursorError(ValueError):
    """The cursor is not one this API issued (or was issued for other filters)."""


@dataclass(frozen=True)
class Cursor:
    """Position after the last item of a page: its (timestamp, id) and the filters' digest."""

    timestamp: datetime
    id: uuid.UUID
    filters: str

    def encode(self) -> str:
        """The opaque `?cursor=` value."""
        raw = json.dumps({"t": self.timestamp.isoformat(), "i": str(self.id), "f": self.filters}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor and check every field, or raise CursorError.

        The cursor is client input: a well-formed one may still hold what no page ever issued (an offset
        PostgreSQL refuses such as +20:00, a number for the id). Each field is checked against what `encode`
        writes (a UTC timestamp, a UUID, a filters digest), so nothing the database could refuse reaches it.
        """
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if not isinstance(raw, dict) or set(raw) != {"t", "i", "f"}:
                raise ValueError("unexpected fields")
            stamp, identifier, filters = raw["t"], raw["i"], raw["f"]
            if not all(isinstance(value, str) for value in (stamp, identifier, filters)):
                raise ValueError("every field is a string")
            timestamp = datetime.fromisoformat(stamp)
            if timestamp.utcoffset() != timedelta(0) or not _FILTERS_DIGEST.fullmatch(filters):
                raise ValueError("not a UTC timestamp, or not a digest")
            cursor = cls(timestamp, uuid.UUID(hex=identifier), filters)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CursorError("not a cursor returned by this endpoint") from None
        return cursor


class SampleFilters(BaseModel):
    """The filters of GET /api/sqal/samples and of its export. They combine with AND."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device_id: DeviceId | None = None
    grade: GradeList | None = None
    from_: QueryDatetime | None = Field(None, alias="from", description="samples at or after (ISO 8601 with zone)")
    to: QueryDatetime | None = Field(None, description="samples strictly before (ISO 8601 with zone)")
    min_score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SampleFilters:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("`from` must be before `to`")
        return self

    def filters(self) -> dict[str, Any]:
        """The filters as keyword arguments of the read services."""
        return {
            "device_id": self.device_id,
            "grades": self.grade,
            "start": self.from_,
            "end": self.to,
            "min_score": self.min_score,
        }


class SampleQuery(SampleFilters):
    """Query string of GET /api/sqal/samples."""

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        None, description="`next_cursor` of the previous page"
    )

    @field_validator("cursor")
    @classmethod
    def _decodable(cls, value: str | None) -> str | None:
        if value is not None:
            Cursor.decode(value)  # CursorError is a ValueError: reported on the `cursor` field
        return value

    @model_validator(mode="after")
    def _check(self) -> SampleQuery:
        position = self.position()
        if position is not None and position.filters != self.filters_digest():
            raise ValueError("the cursor was issued for other filters; restart without a cursor")
        return self

    def filters_digest(self) -> str:
        """Short digest of the filters (not limit/cursor): a cursor only continues the listing it came from."""
        filters = self.model_dump(mode="json", exclude={"limit", "cursor"})
        if filters["grade"]:
            filters["grade"] = sorted(set(filters["grade"]))
        return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]

    def position(self) -> Cursor | None:
        """The decoded cursor (already validated)."""
        return Cursor.decode(self.cursor) if self.cursor else None

    def link_args(self) -> dict[str, Any]:
        """The filters and limit as they go back into a `Link` URL."""
        args = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"cursor"})
        if "grade" in args:
            args["grade"] = ",".join(args["grade"])
        return args


ExportFormat = Literal["csv", "ndjson"]


class ExportQuery(SampleFilters):
    """Query string of GET /api/sqal/samples/export: the filters of /api/sqal/samples and the format."""

    format: ExportFormat = Field("csv", description="csv (a header line, then one line per sample) or ndjson")


class SampleLookupQuery(BaseModel):
    """Query string of GET /api/sqal/samples/<sample_id>."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId | None = Field(None, description="needed when several devices used the same sample_id")


class TimeseriesQuery(BaseModel):
    """Query string of GET /api/sqal/stats/timeseries."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bucket: Bucket = "1h"
    from_: QueryDatetime | None = Field(None, alias="from", description="default: `to` minus the bucket's span")
    to: QueryDatetime | None = Field(None, description="default: now")
    device_id: DeviceId | None = None

    @model_validator(mode="after")
    def _bounds(self) -> TimeseriesQuery:
        """Fill the defaults, then refuse an empty range or one wider than the bucket allows."""
        _width, span, widest = BUCKETS[self.bucket]
        self.to = self.to or datetime.now(UTC)
        self.from_ = self.from_ or self.to - span
        if self.from_ >= self.to:
            raise ValueError("`from` must be before `to`")
        if self.to - self.from_ > widest:
            raise ValueError(f"range too wide for bucket {self.bucket}: at most {widest.days} day(s)")
        return self


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _model(name: str, fields: dict[str, Any]) -> type[_Out]:
    return create_model(name, __base__=_Out, __module__=__name__, **fields)


def _block_fields(block: str, *, detail: bool) -> dict[str, Any]:
    """The read fields of a sensor block, from the map (sample_fields.py): summary ones, or all with `detail`."""
    return {
        field.name: (field.annotation, ...)
        for field in SAMPLE_FIELDS
        if field.block == block and (detail or not field.detail)
    }


TofSummary = _model("TofSummary", _block_fields("vl53l8ch", detail=False))
TofDetail = _model("TofDetail", _block_fields("vl53l8ch", detail=True))
SpectralSummary = _model("SpectralSummary", _block_fields("as7341", detail=False))
SpectralDetail = _model("SpectralDetail", _block_fields("as7341", detail=True))
_BLOCK_MODELS = {"vl53l8ch": (TofSummary, TofDetail), "as7341": (SpectralSummary, SpectralDetail)}


def _sample_fields(*, detail: bool) -> dict[str, Any]:
    """The sample's read fields, from the map: each sensor block where its first field is, as its block model."""
    fields: dict[str, Any] = {}
    for field in SAMPLE_FIELDS:
        if field.detail and not detail:
            continue
        if field.block is None:
            fields[field.name] = (field.annotation, ...)
        elif field.block not in fields:
            fields[field.block] = (_BLOCK_MODELS[field.block][detail], ...)
    return fields


class SampleOut(_model("SampleOutFields", _sample_fields(detail=False))):  # type: ignore[misc]
    """One stored sample without its matrices and channels; `grade`/`score` are the fused verdict."""


class SampleDetail(_model("SampleDetailFields", _sample_fields(detail=True))):  # type: ignore[misc]
    """The full sample: matrices and channels included."""


class SamplePage(BaseModel):
    """A page of samples, newest first; `next_cursor` is null on the last page."""

    items: list[SampleOut]
    next_cursor: str | None


class DeviceOut(_Out):
    """A device with its liveness and today's production."""

    device_id: str
    profile: str | None
    firmware_version: str | None
    enabled: bool
    created_at: UtcDatetime
    last_seen_at: UtcDatetime | None
    online: bool = Field(description="enabled and seen within 2 × SQAL_GENERATION_INTERVAL")
    samples_today: int = Field(description="samples timestamped since 00:00 UTC")
    latest_grade: Grade | None
    latest_score: float | None
    latest_sample_at: UtcDatetime | None


class DeviceList(BaseModel):
    items: list[DeviceOut]


class GradeCounts(BaseModel):
    A: int = 0
    B: int = 0
    C: int = 0
    REJECT: int = 0


class TimeseriesPoint(BaseModel):
    start: UtcDatetime
    count: int
    average_score: float | None
    grades: GradeCounts


class Timeseries(BaseModel):
    """Buckets aligned on 2000-01-01T00:00Z, every bucket of [from, to) present (count 0 when empty)."""

    model_config = ConfigDict(populate_by_name=True)

    bucket: Bucket
    from_: UtcDatetime = Field(alias="from")
    to: UtcDatetime
    device_id: str | None
    points: list[TimeseriesPoint]


class DefectCount(BaseModel):
    code: str
    count: int


class DashboardMetrics(BaseModel):
    """Line figures. "Today" is the UTC day; rates are null when there is no sample to divide by."""

    generated_at: UtcDatetime
    day_start: UtcDatetime
    samples_last_hour: int
    samples_today: int
    samples_per_hour: float = Field(description="samples today / hours elapsed since 00:00 UTC")
    average_quality_score: float | None = Field(description="mean fused score of today's samples")
    grade_distribution: GradeCounts = Field(description="today's samples per fused grade")
    reject_rate_percent: float | None = Field(description="share of today's samples graded REJECT")
    conformity_rate_percent: float | None = Field(description="share of today's samples graded A or B")
    active_devices: int = Field(description="enabled devices seen within 2 × SQAL_GENERATION_INTERVAL")
    devices_total: int = Field(description="enabled devices")
    throughput_per_second: float = Field(description="samples per second over the throughput window")
    throughput_window_seconds: int
    top_defects: list[DefectCount] = Field(description="most frequent defect codes today (samples carrying them)")

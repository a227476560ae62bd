"""Pydantic models of the sensor WebSocket frames (docs/protocol.md §3), validated from decoded JSON.

Numbers are strict (no strings, no booleans; integers accepted where a number is expected) and finite; text holds
no NUL and no lone surrogate (PostgreSQL could not store it). Unknown keys are ignored at every level.
Two protocol versions (docs/protocol.md §0): `SampleIn` is version 1, the reference frame, whose version-2 fields
are optional (validated when present); `SampleV2` requires them. `validate_sample(obj, device_id)` picks the version
(a sample with `seq` is version 2) and checks that the frame's device_id is the authenticated one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backend.core.validation import no_nul
from backend.sqal.protocol import ClientFrame
from backend.sqal.vocabulary import ID_MAX_LENGTH, ID_PATTERN, Grade

MAX_BATCH_SAMPLES = 500
MAX_FUTURE = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
VALID_GAINS = frozenset({0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512})
ATIME_STEP_US = 2.78


def _storable(value: str) -> str:
    """Text that PostgreSQL can store: JSON can escape NUL and lone surrogates, text and JSONB columns refuse them
    (the commit would fail on every resend), so they are a validation error like any other broken rule."""
    no_nul(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must not contain lone UTF-16 surrogates") from None
    return value


def _finite(low: float, high: float) -> Any:
    return Field(strict=True, ge=low, le=high, allow_inf_nan=False)


_EIGHT = Field(min_length=8, max_length=8)
Score = Annotated[float, _finite(0, 1)]
Millimetres = Annotated[float, _finite(0, 4000)]
Reflectance = Annotated[float, _finite(0, 100)]
Amplitude = Annotated[float, _finite(0, 100000)]
TargetStatus = Annotated[int, Field(strict=True, ge=0, le=255)]
Count = Annotated[int, Field(strict=True, ge=0, le=65535)]
DistanceMatrix = Annotated[list[Annotated[list[Millimetres], _EIGHT]], _EIGHT]
ReflectanceMatrix = Annotated[list[Annotated[list[Reflectance], _EIGHT]], _EIGHT]
AmplitudeMatrix = Annotated[list[Annotated[list[Amplitude], _EIGHT]], _EIGHT]
StatusMatrix = Annotated[list[Annotated[list[TargetStatus], _EIGHT]], _EIGHT]
Storable = AfterValidator(_storable)
Text = Annotated[str, Field(strict=True, min_length=1, max_length=100), Storable]
FirmwareVersion = Annotated[str, Field(strict=True, min_length=1, max_length=32), Storable]
DefectCode = Annotated[str, Field(strict=True, min_length=1, max_length=64), Storable]
Defects = Annotated[list[DefectCode], Field(max_length=32)]
SampleId = Annotated[str, Field(strict=True, min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]

Detail = dict[str, Any]


def _aware_iso_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a time zone (Z or ±HH:MM)")
    if parsed < EARLIEST:
        raise ValueError("must not be before 2000-01-01T00:00:00Z (device clock not set?)")
    if parsed > datetime.now(UTC) + MAX_FUTURE:
        raise ValueError("must not be more than 5 minutes in the future")
    return parsed


def _gain(value: float) -> float:
    if value not in VALID_GAINS:
        raise ValueError("must be one of 0.5, 1, 2, 4, ..., 512")
    return value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


SensorHeight = Annotated[float, _finite(1, 4000)]
Atime = Annotated[int, Field(strict=True, ge=0, le=255)]
Astep = Annotated[int, Field(strict=True, ge=0, le=65534)]
Seq = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]


class Vl53l8chIn(_Lenient):
    """Time-of-flight sensor block (version 1: no target statuses, no mounting height)."""

    distance_matrix: DistanceMatrix
    reflectance_matrix: ReflectanceMatrix
    amplitude_matrix: AmplitudeMatrix
    target_status_matrix: StatusMatrix | None = None
    sensor_height_mm: SensorHeight | None = None
    volume_mm3: Annotated[float, _finite(0, 1e9)]
    avg_height_mm: Millimetres
    surface_uniformity: Score
    height_variation_mm: Millimetres
    quality_score: Score
    grade: Grade
    defects: Defects
    bins_analysis: Detail
    reflectance_analysis: Detail


class ChannelsIn(_Lenient):
    """The ten AS7341 channels, raw ADC counts."""

    f1_415nm: Count = Field(alias="F1_415nm")
    f2_445nm: Count = Field(alias="F2_445nm")
    f3_480nm: Count = Field(alias="F3_480nm")
    f4_515nm: Count = Field(alias="F4_515nm")
    f5_555nm: Count = Field(alias="F5_555nm")
    f6_590nm: Count = Field(alias="F6_590nm")
    f7_630nm: Count = Field(alias="F7_630nm")
    f8_680nm: Count = Field(alias="F8_680nm")
    clear: Count = Field(alias="Clear")
    nir: Count = Field(alias="NIR")

    def as_dict(self) -> dict[str, int]:
        """The channels under their wire names, in wavelength order."""
        return self.model_dump(by_alias=True)


class As7341In(_Lenient):
    """Spectral sensor block; with the ATIME/ASTEP registers (version 2), counts must fit their full scale."""

    channels: ChannelsIn
    atime: Atime | None = None
    astep: Astep | None = None
    integration_time: Annotated[int, Field(strict=True, ge=0, le=10_000_000)]
    gain: Annotated[float, _finite(0.5, 512), AfterValidator(_gain)]
    freshness_index: Score
    fat_quality_index: Score
    oxidation_index: Score
    color_uniformity: Score
    quality_score: Score
    grade: Grade
    defects: Defects
    spectral_analysis: Detail
    color_analysis: Detail

    @field_validator("integration_time")
    @classmethod
    def _integration_matches_registers(cls, value: int, info: ValidationInfo) -> int:
        atime, astep = info.data.get("atime"), info.data.get("astep")
        if atime is None or astep is None:
            return value
        expected = round((atime + 1) * (astep + 1) * ATIME_STEP_US / 1000)
        if abs(value - expected) > 1:
            raise ValueError(f"must be {expected} ms ± 1 for atime={atime}, astep={astep}")
        return value

    @model_validator(mode="after")
    def _counts_within_full_scale(self) -> As7341In:
        if (self.atime is None) != (self.astep is None):
            raise ValueError("atime and astep go together: send both or neither")
        if self.atime is None or self.astep is None:
            return self
        full_scale = min(65535, (self.atime + 1) * (self.astep + 1))
        over = [name for name, count in self.channels.as_dict().items() if count > full_scale]
        if over:
            raise ValueError(f"channels {', '.join(over)} exceed the full scale {full_scale}")
        return self


class FusionIn(_Lenient):
    """Fused verdict of both sensors (version 1: no confidence)."""

    final_score: Score
    final_grade: Grade
    confidence: Score | None = None
    vl53l8ch_score: Score
    as7341_score: Score
    defects: Defects


class MetaIn(_Lenient):
    """Device metadata."""

    firmware_version: FirmwareVersion
    temperature_c: Annotated[float, _finite(-40, 125)]
    humidity_percent: Annotated[float, _finite(0, 100)]
    config_profile: Text
    processing_time_ms: Annotated[float, _finite(0, 60000)] | None = None


class SampleIn(_Lenient):
    """One sample: a `sensor_data` frame, or an entry of a `sensor_batch`; as such, a version-1 sample."""

    type: Literal[ClientFrame.SENSOR_DATA] = ClientFrame.SENSOR_DATA
    timestamp: Annotated[datetime, BeforeValidator(_aware_iso_datetime)]
    device_id: Text
    sample_id: SampleId
    seq: Seq | None = None
    vl53l8ch: Vl53l8chIn
    as7341: As7341In
    fusion: FusionIn
    meta: MetaIn

    @field_validator("device_id")
    @classmethod
    def _is_authenticated_device(cls, value: str, info: ValidationInfo) -> str:
        expected = (info.context or {}).get("device_id")
        if expected is not None and value != expected:
            raise ValueError("does not match the authenticated device")
        return value


class Vl53l8chV2(Vl53l8chIn):
    """Version 2: target statuses and mounting height required."""

    target_status_matrix: StatusMatrix
    sensor_height_mm: SensorHeight


class As7341V2(As7341In):
    """Version 2: the ATIME/ASTEP registers required."""

    atime: Atime
    astep: Astep


class FusionV2(FusionIn):
    """Version 2: confidence required."""

    confidence: Score


class SampleV2(SampleIn):
    """A version-2 sample (the simulator's): `seq`, the target statuses, mounting height, registers, confidence."""

    seq: Seq
    vl53l8ch: Vl53l8chV2
    as7341: As7341V2
    fusion: FusionV2


def protocol_version(obj: Any) -> int:
    """2 for a sample object carrying `seq` (whatever its value), else 1."""
    return 2 if isinstance(obj, dict) and "seq" in obj else 1


def validate_sample(obj: Any, device_id: str | None = None) -> SampleIn:
    """Validate a decoded sample against the rules of its protocol version (and the authenticated device)."""
    model = SampleV2 if protocol_version(obj) == 2 else SampleIn
    return model.model_validate(obj, context={"device_id": device_id})


class BatchIn(_Lenient):
    """`sensor_batch` envelope; each entry of `samples` is validated on its own."""

    type: Literal[ClientFrame.SENSOR_BATCH]
    batch_id: Annotated[str, Field(strict=True, max_length=100)] | None = None
    samples: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH_SAMPLES)]

"""Frame validation (docs/protocol.md §3): the example is valid, each broken rule is reported where it is."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from backend.sqal.ingest.schemas import BatchIn, SampleIn, validate_sample
from tests.sqal.helpers import EXAMPLE, sample_frame

DEVICE = "ESP32_LL_01"
FULL_SCALE = min(65535, (EXAMPLE["as7341"]["atime"] + 1) * (EXAMPLE["as7341"]["astep"] + 1))


def validate(frame: dict[str, Any]) -> SampleIn:
    return validate_sample(frame, DEVICE)


def error_locs(frame: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        validate(frame)
    return [tuple(error["loc"]) for error in caught.value.errors()]


def changed(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    frame = copy.deepcopy(EXAMPLE)
    mutate(frame)
    return frame


def test_protocol_example_is_valid() -> None:
    sample = validate(EXAMPLE)
    assert sample.timestamp == datetime.fromisoformat(EXAMPLE["timestamp"].replace("Z", "+00:00"))
    assert sample.timestamp.utcoffset() == timedelta(0)
    assert sample.as7341.channels.as_dict() == EXAMPLE["as7341"]["channels"]
    assert sample.meta.processing_time_ms == EXAMPLE["meta"].get("processing_time_ms")


def test_unknown_keys_are_ignored_and_optional_fields_default() -> None:
    def mutate(frame: dict[str, Any]) -> None:
        frame["future_field"] = {"x": 1}
        frame["vl53l8ch"]["new_metric"] = 3
        frame["as7341"]["channels"]["F9_900nm"] = 12
        del frame["meta"]["processing_time_ms"]

    sample = validate(changed(mutate))
    assert sample.meta.processing_time_ms is None
    assert "F9_900nm" not in sample.as7341.channels.as_dict()


def test_integers_are_accepted_as_numbers_and_saturation_is_valid() -> None:
    def mutate(frame: dict[str, Any]) -> None:
        frame["fusion"]["final_score"] = 1
        frame["as7341"]["channels"]["Clear"] = FULL_SCALE

    assert validate(changed(mutate)).fusion.final_score == 1.0


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(frame: dict[str, Any]) -> None:
        target = frame
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(frame: dict[str, Any]) -> None:
        target = frame
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


NOW = datetime.now(UTC)
BAD_FIELDS = [
    ("9 rows", _set(("vl53l8ch", "distance_matrix"), [[250] * 8] * 9), ("vl53l8ch", "distance_matrix")),
    ("7 rows", _set(("vl53l8ch", "distance_matrix"), [[250] * 8] * 7), ("vl53l8ch", "distance_matrix")),
    ("row of 9", _set(("vl53l8ch", "reflectance_matrix", 2), [50.0] * 9), ("vl53l8ch", "reflectance_matrix", 2)),
    ("NaN cell", _set(("vl53l8ch", "distance_matrix", 0, 0), math.nan), ("vl53l8ch", "distance_matrix", 0, 0)),
    ("inf cell", _set(("vl53l8ch", "amplitude_matrix", 7, 7), math.inf), ("vl53l8ch", "amplitude_matrix", 7, 7)),
    ("bool cell", _set(("vl53l8ch", "distance_matrix", 1, 1), True), ("vl53l8ch", "distance_matrix", 1, 1)),
    ("string cell", _set(("vl53l8ch", "distance_matrix", 1, 1), "250"), ("vl53l8ch", "distance_matrix", 1, 1)),
    ("distance > 4000", _set(("vl53l8ch", "distance_matrix", 2, 3), 4000.5), ("vl53l8ch", "distance_matrix", 2, 3)),
    ("reflectance < 0", _set(("vl53l8ch", "reflectance_matrix", 0, 0), -1), ("vl53l8ch", "reflectance_matrix", 0, 0)),
    ("status 256", _set(("vl53l8ch", "target_status_matrix", 0, 0), 256), ("vl53l8ch", "target_status_matrix", 0, 0)),
    ("status float", _set(("vl53l8ch", "target_status_matrix", 0, 0), 5.0), ("vl53l8ch", "target_status_matrix", 0, 0)),
    ("score > 1", _set(("vl53l8ch", "quality_score"), 1.01), ("vl53l8ch", "quality_score")),
    ("grade D", _set(("vl53l8ch", "grade"), "D"), ("vl53l8ch", "grade")),
    ("grade lower", _set(("fusion", "final_grade"), "a"), ("fusion", "final_grade")),
    ("channel float", _set(("as7341", "channels", "F1_415nm"), 1205.0), ("as7341", "channels", "F1_415nm")),
    ("channel > 65535", _set(("as7341", "channels", "NIR"), 65536), ("as7341", "channels", "NIR")),
    ("channel < 0", _set(("as7341", "channels", "F3_480nm"), -1), ("as7341", "channels", "F3_480nm")),
    ("channel missing", _delete(("as7341", "channels", "Clear")), ("as7341", "channels", "Clear")),
    ("over full scale", _set(("as7341", "channels", "Clear"), FULL_SCALE + 1), ("as7341",)),
    ("integration time", _set(("as7341", "integration_time"), 100), ("as7341", "integration_time")),
    ("gain 3", _set(("as7341", "gain"), 3), ("as7341", "gain")),
    ("defect too long", _set(("fusion", "defects"), ["x" * 65]), ("fusion", "defects", 0)),
    ("33 defects", _set(("fusion", "defects"), ["d"] * 33), ("fusion", "defects")),
    ("humidity 101", _set(("meta", "humidity_percent"), 101), ("meta", "humidity_percent")),
    ("no timestamp", _delete(("timestamp",)), ("timestamp",)),
    ("naive timestamp", _set(("timestamp",), "2025-01-14T09:30:12"), ("timestamp",)),
    ("date only", _set(("timestamp",), "2025-01-14"), ("timestamp",)),
    ("epoch number", _set(("timestamp",), 1736847012), ("timestamp",)),
    ("not a date", _set(("timestamp",), "yesterday"), ("timestamp",)),
    ("1970 clock", _set(("timestamp",), "1970-01-01T00:00:05Z"), ("timestamp",)),
    ("2 h ahead", _set(("timestamp",), (NOW + timedelta(hours=2)).isoformat()), ("timestamp",)),
    ("other device", _set(("device_id",), "ESP32_LL_02"), ("device_id",)),
    ("sample_id spaces", _set(("sample_id",), "SAMPLE 1"), ("sample_id",)),
    ("sample_id 101", _set(("sample_id",), "S" * 101), ("sample_id",)),
    ("seq negative", _set(("seq",), -1), ("seq",)),
    ("seq 2^63", _set(("seq",), 2**63), ("seq",)),
    ("seq string", _set(("seq",), "42"), ("seq",)),
    ("wrong type", _set(("type",), "sensor_batch"), ("type",)),
    ("meta missing", _delete(("meta",)), ("meta",)),
    # A sample with `seq` is version 2: the fields version 1 lacks are required.
    ("v2 no statuses", _delete(("vl53l8ch", "target_status_matrix")), ("vl53l8ch", "target_status_matrix")),
    ("v2 no height", _delete(("vl53l8ch", "sensor_height_mm")), ("vl53l8ch", "sensor_height_mm")),
    ("v2 no atime", _delete(("as7341", "atime")), ("as7341", "atime")),
    ("v2 no astep", _delete(("as7341", "astep")), ("as7341", "astep")),
    ("v2 no confidence", _delete(("fusion", "confidence")), ("fusion", "confidence")),
    ("v2 seq null", _set(("seq",), None), ("seq",)),
]


@pytest.mark.parametrize(("mutate", "loc"), [case[1:] for case in BAD_FIELDS], ids=[case[0] for case in BAD_FIELDS])
def test_each_broken_rule_is_reported_at_its_location(
    mutate: Callable[[dict[str, Any]], None], loc: tuple[Any, ...]
) -> None:
    assert error_locs(changed(mutate)) == [loc]


def test_timestamp_with_offset_and_just_inside_the_future_bound() -> None:
    soon = datetime.now(UTC) + timedelta(minutes=4)
    frame = sample_frame(DEVICE, 1)
    frame["timestamp"] = soon.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert validate(frame).timestamp == soon


def test_batch_envelope_limits() -> None:
    assert BatchIn.model_validate({"type": "sensor_batch", "samples": [1]}).batch_id is None
    bad_samples: list[Any] = [[], [{}] * 501, {"a": 1}, None]
    for samples in bad_samples:
        with pytest.raises(ValidationError):
            BatchIn.model_validate({"type": "sensor_batch", "samples": samples})
    with pytest.raises(ValidationError):
        BatchIn.model_validate({"type": "sensor_batch", "samples": [{}], "batch_id": "b" * 101})

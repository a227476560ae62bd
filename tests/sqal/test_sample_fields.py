"""The sample field map against what it maps: the frame models, the `sensor_samples` table and the read models.

A field added to one of them and not to the map (or mapped to a path that does not exist) fails here.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from backend.sqal.ingest import service
from backend.sqal.ingest.schemas import SampleIn, SampleV2, validate_sample
from backend.sqal.models import SensorSample
from backend.sqal.reads.schemas import SampleDetail, SampleOut
from backend.sqal.sample_fields import FIELDS_BY_COLUMN, SAMPLE_FIELDS, SampleField, frame_reader, item_builder
from simulator.generator import SampleGenerator, device_rng
from simulator.profile import load_profile
from tests.sqal.helpers import EXAMPLE, reference_frame

TABLE = SensorSample.__table__
FRAME_FIELDS = [field for field in SAMPLE_FIELDS if field.frame is not None]
# blake2b-128 of the stored row of two fixed frames (`content_digest(row_json(...))`): the ledger keeps these hashes,
# so a change to the row's keys, order or encoding would turn every resend across an upgrade into a conflict.
STORED_DIGESTS = {"reference": "51d7f190d0e0427bed9ca4d4237cf8cd", "example": "c0a53faa3fe12dcf1d13706147abac8b"}


def model_field(model: type[BaseModel], path: str) -> FieldInfo:
    """The field at dotted `path` of `model`, through its nested models; KeyError when a step is missing."""
    *blocks, name = path.split(".")
    for block in blocks:
        nested = model.model_fields[block].annotation
        assert isinstance(nested, type), f"{path}: {block} is not a model"
        assert issubclass(nested, BaseModel), f"{path}: {block} is not a model"
        model = nested
    return model.model_fields[name]


def allows_none(annotation: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(None)
    except ValidationError:
        return False
    return True


def simulator_samples(count: int) -> list[SampleIn]:
    generator = SampleGenerator("ESP32_MAP_01", load_profile(), device_rng(5, "ESP32_MAP_01"))
    moment = datetime(2025, 3, 1, 12, tzinfo=UTC)
    return [validate_sample(generator.frame(seq, moment)) for seq in range(1, count + 1)]


def test_every_column_without_a_server_default_is_mapped_exactly_once() -> None:
    mapped = Counter(field.column for field in SAMPLE_FIELDS)
    assert [column for column, count in mapped.items() if count > 1] == []
    assert sorted(set(mapped) - set(TABLE.columns.keys())) == [], "mapped columns missing from sensor_samples"
    unmapped = [column.name for column in TABLE.columns if column.server_default is None and column.name not in mapped]
    assert unmapped == [], "sensor_samples columns missing from sample_fields.py"


@pytest.mark.parametrize("model", [SampleIn, SampleV2], ids=["version 1", "version 2"])
@pytest.mark.parametrize("field", FRAME_FIELDS, ids=lambda field: field.column)
def test_the_frame_path_exists_in_both_protocol_versions(model: type[BaseModel], field: SampleField) -> None:
    assert field.frame is not None
    frame_type = model_field(model, field.frame).annotation
    if field.frame_method is not None:
        assert callable(getattr(frame_type, field.frame_method, None))


@pytest.mark.parametrize("field", FRAME_FIELDS, ids=lambda field: field.column)
def test_a_field_optional_in_version_1_frames_is_a_nullable_column(field: SampleField) -> None:
    assert field.frame is not None
    assert TABLE.c[field.column].nullable == (not model_field(SampleIn, field.frame).is_required())


@pytest.mark.parametrize("field", SAMPLE_FIELDS, ids=lambda field: field.column)
def test_the_read_path_exists_in_the_read_models(field: SampleField) -> None:
    assert allows_none(field.annotation) == TABLE.c[field.column].nullable, "a nullable column reads as null"
    model_field(SampleDetail, field.read)
    if field.detail:
        with pytest.raises(KeyError):
            model_field(SampleOut, field.read)
    else:
        model_field(SampleOut, field.read)


def read_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            paths += read_paths(nested, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_the_read_models_hold_the_mapped_fields_in_the_maps_order() -> None:
    in_order = [field.read for field in SAMPLE_FIELDS]
    assert sorted(read_paths(SampleDetail), key=in_order.index) == in_order
    assert sorted(read_paths(SampleOut), key=in_order.index) == [f.read for f in SAMPLE_FIELDS if not f.detail]


def test_the_row_holds_the_inserted_columns_in_the_tables_order() -> None:
    row = service.sample_row(validate_sample(reference_frame()))
    assert list(row) == [name for name, _ in service._SAMPLE_COLUMNS]


def frame_value(sample: SampleIn, path: str) -> Any:
    value: Any = sample
    for part in path.split("."):
        value = getattr(value, part)
    return value


def test_the_row_holds_each_mapped_frame_value() -> None:
    for sample in [validate_sample(reference_frame()), *simulator_samples(20)]:
        row = service.sample_row(sample)
        for column, value in row.items():
            field = FIELDS_BY_COLUMN[column]
            assert field.frame is not None
            expected = frame_value(sample, field.frame)
            assert value == (getattr(expected, field.frame_method)() if field.frame_method else expected), column
        assert row["as7341_channels"]["F1_415nm"] == sample.as7341.channels.f1_415nm  # under the wire names


@pytest.mark.parametrize(("name", "frame"), [("reference", reference_frame()), ("example", EXAMPLE)])
def test_the_stored_content_hash_of_a_frame_does_not_change(name: str, frame: dict[str, Any]) -> None:
    assert service.content_digest(service.row_json(validate_sample(frame))) == STORED_DIGESTS[name]


def test_the_frame_reader_refuses_a_stored_column_missing_from_the_map() -> None:
    with pytest.raises(ValueError, match=r"sensor_samples\.vl53l8ch_new_field is stored per sample"):
        frame_reader(["timestamp", "vl53l8ch_new_field"])


def test_the_frame_reader_reads_one_column_as_it_reads_many() -> None:
    sample = validate_sample(reference_frame())
    assert frame_reader(["vl53l8ch_grade"])(sample) == {"vl53l8ch_grade": "A"}
    assert frame_reader(["as7341_channels"])(sample) == {"as7341_channels": sample.as7341.channels.as_dict()}


def test_the_read_item_nests_each_column_at_its_read_path() -> None:
    row = {field.column: f"value of {field.column}" for field in SAMPLE_FIELDS}
    for fields in (SAMPLE_FIELDS, [field for field in SAMPLE_FIELDS if not field.detail]):
        item = item_builder(fields)(row)
        for field in fields:
            assert (item[field.block][field.name] if field.block else item[field.name]) == row[field.column]
        assert sum(len(value) if isinstance(value, dict) else 1 for value in item.values()) == len(fields)


def test_the_simulator_fills_every_mapped_frame_field() -> None:
    sample = simulator_samples(1)[0]
    assert [field.column for field in FRAME_FIELDS if frame_value(sample, field.frame or "") is None] == []

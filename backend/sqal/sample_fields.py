"""The one map of a stored sample's fields: its `sensor_samples` column, its path in a sensor frame, its path in
the read API.

Derived from `SAMPLE_FIELDS`: the row stored for each validated sample (`ingest.service.sample_row`), the columns
the read API selects and the nested items it returns (`reads.service`), and the read API's response models
(`reads.schemas`: `SampleOut`, `SampleDetail` and their per-sensor blocks). The export (`reads.export`) takes every
column of the table by itself. The frame models (`ingest.schemas`) keep their own validators and two protocol
versions; tests/sqal/test_sample_fields.py checks that every frame path here exists in both versions and every read
path in `SampleDetail`, and that every column of `sensor_samples` is here exactly once.

Adding a sensor field touches three places:
1. the frame: a field of the sensor's block in `ingest/schemas.py`, optional in the version-1 models (frames of the
   reference protocol lack it), required in the version-2 ones if every version-2 device sends it; docs/protocol.md
   documents it and the simulator sends it;
2. the column: `SensorSample` in `models.py` and a migration adding it, nullable when the frame field is optional
   (docs/migrations.md: code older than the migration keeps inserting without it);
3. one `SampleField` below, at the place of its read field in the read API's order: its column, frame path, read
   path and read type, and `detail=True` if only the full sample shows it.
Then regenerate docs/openapi.json and docs/wire (CONTRIBUTING.md). Rows written by hand rather than from frames
(tests/sqal/rows.py, bench/dashboard.py's LOAD_SQL) only need it when the column is NOT NULL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, methodcaller
from typing import Any

from backend.core.validation import UtcDatetime
from backend.sqal.vocabulary import Grade

Matrix = list[list[float]]


@dataclass(frozen=True)
class SampleField:
    """One `sensor_samples` column and where its value lives in a frame and in the read API."""

    column: str
    # Attribute path in a validated sample (`ingest.schemas.SampleIn`); None: the server sets the column.
    frame: str | None
    # Path in the read API: a field of the sample ("grade"), or "<sensor>.<name>", a field of a sensor's block.
    read: str
    # Its type in the read API (an `Annotated[..., Field(description=...)]` documents it in the OpenAPI).
    annotation: Any
    # True: only in the full sample (GET /api/sqal/samples/<id>), not in the listing.
    detail: bool = False
    # The method of the frame value that returns the column's JSON value, when the value is not already that.
    frame_method: str | None = None

    @property
    def block(self) -> str | None:
        """The sensor block holding the read field (`vl53l8ch`, `as7341`), None for a field of the sample."""
        block, dot, _name = self.read.partition(".")
        return block if dot else None

    @property
    def name(self) -> str:
        """The read field's name within the sample or its block."""
        return self.read.rpartition(".")[2]


_F = SampleField
# In the order of the read API's fields: the sample's, then each block's (summary fields before detail ones).
SAMPLE_FIELDS: tuple[SampleField, ...] = (
    _F("id", None, "id", uuid.UUID),
    _F("device_id", "device_id", "device_id", str),
    _F("sample_id", "sample_id", "sample_id", str),
    _F("seq", "seq", "seq", int | None),
    _F("timestamp", "timestamp", "timestamp", UtcDatetime),
    _F("received_at", None, "received_at", UtcDatetime),
    _F("fusion_final_grade", "fusion.final_grade", "grade", Grade),
    _F("fusion_final_score", "fusion.final_score", "score", float),
    _F("fusion_confidence", "fusion.confidence", "confidence", float | None),
    _F("fusion_defects", "fusion.defects", "defects", list[str]),
    _F("processing_time_ms", "meta.processing_time_ms", "processing_time_ms", float | None),
    _F("vl53l8ch_grade", "vl53l8ch.grade", "vl53l8ch.grade", Grade),
    _F("vl53l8ch_quality_score", "vl53l8ch.quality_score", "vl53l8ch.quality_score", float),
    _F("vl53l8ch_volume_mm3", "vl53l8ch.volume_mm3", "vl53l8ch.volume_mm3", float),
    _F("vl53l8ch_avg_height_mm", "vl53l8ch.avg_height_mm", "vl53l8ch.avg_height_mm", float),
    _F("vl53l8ch_surface_uniformity", "vl53l8ch.surface_uniformity", "vl53l8ch.surface_uniformity", float),
    _F("vl53l8ch_distance_matrix", "vl53l8ch.distance_matrix", "vl53l8ch.distance_matrix", Matrix, detail=True),
    _F(
        "vl53l8ch_reflectance_matrix", "vl53l8ch.reflectance_matrix", "vl53l8ch.reflectance_matrix", Matrix, detail=True
    ),
    _F("vl53l8ch_amplitude_matrix", "vl53l8ch.amplitude_matrix", "vl53l8ch.amplitude_matrix", Matrix, detail=True),
    _F("as7341_grade", "as7341.grade", "as7341.grade", Grade),
    _F("as7341_quality_score", "as7341.quality_score", "as7341.quality_score", float),
    _F("as7341_color_score", "as7341.color_uniformity", "as7341.color_score", float),
    _F("as7341_freshness_score", "as7341.freshness_index", "as7341.freshness_score", float),
    _F("as7341_integration_time", "as7341.integration_time", "as7341.integration_time", int),
    _F("as7341_gain", "as7341.gain", "as7341.gain", float),
    # Stored under the wire names (F1_415nm...), as sent.
    _F("as7341_channels", "as7341.channels", "as7341.channels", dict[str, int], detail=True, frame_method="as_dict"),
    _F("created_at", None, "created_at", UtcDatetime, detail=True),
)
FIELDS_BY_COLUMN: dict[str, SampleField] = {field.column: field for field in SAMPLE_FIELDS}


def frame_reader(columns: Sequence[str]) -> Callable[[Any], dict[str, Any]]:
    """A function reading the values of `columns` from a validated sample, as a dict in that order.

    Plain getters: code generated from the map (as `dataclasses` generates `__init__`) saved 1.4 µs of a stored
    sample's 700 µs and 0.6 ms of a 500-row page's ~20 ms, under the 5 % that would pay for it (docs/decisions/0009).
    """
    fields = []
    for column in columns:
        field = FIELDS_BY_COLUMN.get(column)
        if field is None or field.frame is None:
            raise ValueError(f"sensor_samples.{column} is stored per sample but sample_fields.py has no frame path")
        fields.append(field)
    paths = [field.frame for field in fields if field.frame is not None]
    read_paths = attrgetter(*paths) if len(paths) > 1 else lambda sample: (attrgetter(paths[0])(sample),)
    conversions = [(field.column, methodcaller(field.frame_method)) for field in fields if field.frame_method]
    names = tuple(columns)

    def read(sample: Any) -> dict[str, Any]:
        row = dict(zip(names, read_paths(sample), strict=True))
        for column, convert in conversions:
            row[column] = convert(row[column])
        return row

    return read


def item_builder(fields: Sequence[SampleField]) -> Callable[[Mapping[Any, Any]], dict[str, Any]]:
    """A function nesting a row holding the columns of `fields` as the read API's item: the sample's own fields,
    then one dict per sensor block (`{"grade": row["fusion_final_grade"], ..., "vl53l8ch": {"grade": ...}}`)."""
    own = [(field.name, field.column) for field in fields if field.block is None]
    blocks: dict[str, list[tuple[str, str]]] = {}
    for field in fields:
        if field.block is not None:
            blocks.setdefault(field.block, []).append((field.name, field.column))

    def build(row: Mapping[Any, Any]) -> dict[str, Any]:
        item = {name: row[column] for name, column in own}
        for block, pairs in blocks.items():
            item[block] = {name: row[column] for name, column in pairs}
        return item

    return build

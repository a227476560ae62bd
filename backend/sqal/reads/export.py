"""Sample export for audits: CSV or NDJSON, every column, streamed in batches with flat memory.

Columns carry the reference table's names, in its order (`sensor_samples` of the reference deployment guide),
then this service's own columns in the table's order (`seq`, `received_at`, then any column added since). Rows
come oldest first (timestamp, then id) in keyset batches of BATCH_SIZE, each batch its own short transaction: an
export of millions of rows holds no connection, snapshot or lock between batches (rows stored during the export
after its position are included), and the worker only ever holds one batch. PostgreSQL renders every value as
text (timestamps ISO 8601 UTC with `Z`, JSON columns as JSON); NDJSON lines are built by PostgreSQL, CSV lines by
the csv module (RFC 4180 quoting).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Float, Integer, String, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB

from backend.extensions import db
from backend.sqal.models import SensorSample
from backend.sqal.reads.service import sample_conditions

S = SensorSample
BATCH_SIZE = 2000
REFERENCE_COLUMNS = (
    "id",
    "timestamp",
    "device_id",
    "sample_id",
    "vl53l8ch_distance_matrix",
    "vl53l8ch_reflectance_matrix",
    "vl53l8ch_amplitude_matrix",
    "vl53l8ch_volume_mm3",
    "vl53l8ch_avg_height_mm",
    "vl53l8ch_surface_uniformity",
    "vl53l8ch_quality_score",
    "vl53l8ch_grade",
    "as7341_channels",
    "as7341_integration_time",
    "as7341_gain",
    "as7341_color_score",
    "as7341_freshness_score",
    "as7341_quality_score",
    "as7341_grade",
    "fusion_final_score",
    "fusion_final_grade",
    "fusion_confidence",
    "fusion_defects",
    "processing_time_ms",
    "created_at",
)
COLUMNS = (*REFERENCE_COLUMNS, *(column.name for column in S.__table__.columns if column.name not in REFERENCE_COLUMNS))
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


def _as_text(name: str) -> str:
    """SQL of column `name` as the export's text (NULL stays NULL)."""
    column = S.__table__.c[name]
    if isinstance(column.type, DateTime):
        return f"to_char(\"{name}\" AT TIME ZONE 'UTC', {_ISO})"
    if isinstance(column.type, String):
        return f'"{name}"'
    return f'CAST("{name}" AS text)'


def _json_value(name: str) -> str:
    """SQL of column `name` as a JSON value: numbers and JSON columns as themselves, the rest as strings."""
    column = S.__table__.c[name]
    if isinstance(column.type, (JSONB, Float, Integer)):  # BigInteger (`seq`) is an Integer
        return f'"{name}"'
    return _as_text(name)


_CSV_VALUES: list[ColumnElement[Any]] = [literal_column(_as_text(name)) for name in COLUMNS]
_NDJSON_LINE: ColumnElement[Any] = literal_column(
    "CAST(json_build_object(" + ", ".join(f"'{name}', {_json_value(name)}" for name in COLUMNS) + ") AS text)"
)


def count_samples(**filters: Any) -> int:
    """How many samples the filters select (for a progress bar)."""
    total = db.session.execute(select(func.count()).select_from(S).where(*sample_conditions(**filters))).scalar()
    db.session.rollback()
    return int(total or 0)


def _batches(values: list[ColumnElement[Any]], filters: dict[str, Any], batch_size: int) -> Iterator[Sequence[Any]]:
    """Rows (timestamp, id, *values) oldest first, `batch_size` per transaction."""
    conditions = sample_conditions(**filters)
    after: tuple[Any, Any] | None = None
    while True:
        statement = select(S.timestamp, S.id, *values).where(*conditions)
        if after is not None:
            statement = statement.where(S.timestamp >= after[0], tuple_(S.timestamp, S.id) > tuple_(*after))
        rows = db.session.execute(statement.order_by(S.timestamp, S.id).limit(batch_size)).all()
        db.session.rollback()  # read-only: end the transaction, give the connection back between batches
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        after = (rows[-1][0], rows[-1][1])


def export_chunks(export_format: str, batch_size: int | None = None, **filters: Any) -> Iterator[bytes]:
    """The export as byte chunks (one per batch of `batch_size`, default BATCH_SIZE; CSV starts with its header)."""
    batch_size = batch_size or BATCH_SIZE
    if export_format == "ndjson":
        for rows in _batches([_NDJSON_LINE], filters, batch_size):
            yield ("\n".join(row[2] for row in rows) + "\n").encode()
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue().encode()
    for rows in _batches(_CSV_VALUES, filters, batch_size):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(row[2:] for row in rows)
        yield buffer.getvalue().encode()

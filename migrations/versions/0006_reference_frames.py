"""SQAL version-1 (reference) frames: `seq` and `fusion_confidence` become nullable

Revision ID: 0006_reference_frames
Revises: 0005_sqal_reads
Create Date: 2026-11-24

The reference deployment guide's `sensor_data` frame (protocol version 1, docs/protocol.md §0) has no `seq` and no
`fusion.confidence`; their columns hold NULL for such samples, as in the reference table where every column but
`timestamp` is nullable. Dropping NOT NULL rewrites nothing.

TimescaleDB before 2.18 refuses `ALTER COLUMN … DROP NOT NULL` (before 2.19 `SET NOT NULL`) while the hypertable
has compressed chunks: there the compressed chunks are decompressed first (the compression policy compresses them
again on its next run); later versions alter compressed chunks in place.

Downgrade restores NOT NULL, which PostgreSQL refuses while version-1 samples are stored: it stops with a message
saying so instead of deleting or inventing data.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0006_reference_frames"
down_revision = "0005_sqal_reads"
branch_labels = None
depends_on = None

COLUMNS = ("seq", "fusion_confidence")
DROP_NOT_NULL_IN_PLACE_SINCE = (2, 18)
SET_NOT_NULL_IN_PLACE_SINCE = (2, 19)


def _timescaledb_version(connection: Connection) -> tuple[int, ...] | None:
    """The installed TimescaleDB version when `sensor_samples` is a hypertable, else None."""
    version = connection.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).scalar()
    if version is None:
        return None
    is_hypertable = connection.execute(
        sa.text("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'sensor_samples'")
    ).scalar()
    return tuple(int(part) for part in str(version).split("-")[0].split(".")[:2]) if is_hypertable else None


def _decompress_before(connection: Connection, in_place_since: tuple[int, int]) -> None:
    """Decompress the hypertable's chunks when TimescaleDB is older than `in_place_since`."""
    version = _timescaledb_version(connection)
    if version is not None and version < in_place_since:
        connection.execute(
            sa.text("SELECT decompress_chunk(c, if_compressed => TRUE) FROM show_chunks('sensor_samples') c")
        )


def upgrade() -> None:
    _decompress_before(op.get_bind(), DROP_NOT_NULL_IN_PLACE_SINCE)
    for column in COLUMNS:
        op.alter_column("sensor_samples", column, nullable=True)


def downgrade() -> None:
    connection = op.get_bind()
    missing = " OR ".join(f"{column} IS NULL" for column in COLUMNS)
    if connection.execute(sa.text(f"SELECT 1 FROM sensor_samples WHERE {missing} LIMIT 1")).scalar():
        raise RuntimeError(
            "sensor_samples holds version-1 samples (seq or fusion_confidence NULL): "
            "0005 cannot store them; delete or export them before downgrading"
        )
    _decompress_before(connection, SET_NOT_NULL_IN_PLACE_SINCE)
    for column in COLUMNS:
        op.alter_column("sensor_samples", column, nullable=False)

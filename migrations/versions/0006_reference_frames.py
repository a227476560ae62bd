"""SQAL version-1 (reference) frames: `seq` and `fusion_confidence` become nullable

Revision ID: 0006_reference_frames
Revises: 0005_sqal_reads
Create Date: 2026-11-24

The reference deployment guide's `sensor_data` frame (protocol version 1, docs/protocol.md §0) has no `seq` and no
`fusion.confidence`; their columns hold NULL for such samples, as in the reference table where every column but
`timestamp` is nullable. Dropping NOT NULL rewrites nothing.

TimescaleDB before 2.18 refuses `ALTER COLUMN … DROP NOT NULL` (before 2.19 `SET NOT NULL`) on a hypertable with
compression enabled, even with every chunk decompressed (2.17.2, the image compose pinned, died here: issue 20).
There `migrations.hypertables.compression_suspended` turns compression off around the change and back on with the
same settings and policy, recompressing the chunks that were compressed, all in this migration's transaction (on a
large table that is every compressed chunk decompressed and compressed again: plan the time, or update the
extension to 2.18+ first). Later versions alter compressed chunks in place, and plain PostgreSQL has nothing to do.

Downgrade restores NOT NULL, which PostgreSQL refuses while version-1 samples are stored: it stops with a message
saying so instead of deleting or inventing data.
"""

import sqlalchemy as sa
from alembic import op

from migrations.hypertables import compression_suspended

revision = "0006_reference_frames"
down_revision = "0005_sqal_reads"
branch_labels = None
depends_on = None

COLUMNS = ("seq", "fusion_confidence")
DROP_NOT_NULL_IN_PLACE_SINCE = (2, 18)
SET_NOT_NULL_IN_PLACE_SINCE = (2, 19)


def upgrade() -> None:
    with compression_suspended(op.get_bind(), "sensor_samples", unless_since=DROP_NOT_NULL_IN_PLACE_SINCE):
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
    with compression_suspended(connection, "sensor_samples", unless_since=SET_NOT_NULL_IN_PLACE_SINCE):
        for column in COLUMNS:
            op.alter_column("sensor_samples", column, nullable=False)

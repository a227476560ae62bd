"""SQAL reads: an index for the `min_score` filter of GET /api/sqal/samples

Revision ID: 0009_sqal_score_index
Revises: 0008_api_key_expiry
Create Date: 2026-12-06

`?min_score=` alone walked the timestamp index newest first and read every row until 50 passed: a threshold that
few or no samples reach read the whole table (about 10 s on 1M samples, the statement timeout). With
`(fusion_final_score, "timestamp")` the planner reads only the samples at or above the threshold when they are
few (measured in bench/costly_reads.py). Built without blocking ingestion (docs/migrations.md): `CONCURRENTLY` on a
plain table, one transaction per chunk on a hypertable.
"""

from alembic import op

from migrations.hypertables import create_index_concurrently

revision = "0009_sqal_score_index"
down_revision = "0008_api_key_expiry"
branch_labels = None
depends_on = None

SCORE_INDEX = "ix_sensor_samples_score_time"


def upgrade() -> None:
    create_index_concurrently(SCORE_INDEX, "sensor_samples", ["fusion_final_score", '"timestamp"'])


def downgrade() -> None:
    op.drop_index(SCORE_INDEX, table_name="sensor_samples")

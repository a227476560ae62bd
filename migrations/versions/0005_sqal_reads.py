"""SQAL reads: covering indexes for the dashboard figures, and prompt vacuuming of sensor_samples

Revision ID: 0005_sqal_reads
Revises: 0004_api_keys
Create Date: 2026-11-23

Every dashboard figure is an index-only scan that never reads the wide rows (three JSONB matrices each):
- `ix_sensor_samples_grade_time` `(fusion_final_grade, "timestamp") INCLUDE (fusion_final_score)`: today's count
  and score sum per grade, as four range scans aggregated without hashing; the time series. ("Last hour" and the
  throughput window are counts over `ix_sensor_samples_timestamp` of 0002.)
- `ix_sensor_samples_defects` `("timestamp") INCLUDE (fusion_defects) WHERE fusion_defects <> '[]'`: top defects,
  reading only the samples that have some (a minority on a healthy line).
Both are declared on the model side (`SensorSample.__table_args__` in `backend/sqal/models.py`), so models and
migrations agree.

An index-only scan only skips the heap for pages the visibility map marks all-visible, and on an insert-only table
autovacuum would by default wait for 20 % of the table in new rows before setting those bits: the freshest rows,
the ones the dashboard reads, would always cost a heap visit. Vacuuming after every 10,000 inserts keeps that
tail short; an insert-only vacuum only visits the new pages.

Both are built without blocking ingestion (`migrations.hypertables.create_index_concurrently`: `CONCURRENTLY` on a
plain table, one transaction per chunk on a TimescaleDB hypertable), outside the migration's transaction; an
interrupted build is dropped and done again when the migration is retried (docs/migrations.md).
"""

import sqlalchemy as sa
from alembic import op

from migrations.hypertables import create_index_concurrently

revision = "0005_sqal_reads"
down_revision = "0004_api_keys"
branch_labels = None
depends_on = None

GRADE_TIME_INDEX = "ix_sensor_samples_grade_time"
DEFECTS_INDEX = "ix_sensor_samples_defects"
VACUUM_OPTIONS = ("autovacuum_vacuum_insert_threshold", "autovacuum_vacuum_insert_scale_factor")


def upgrade() -> None:
    create_index_concurrently(
        GRADE_TIME_INDEX, "sensor_samples", ["fusion_final_grade", '"timestamp"'], include=["fusion_final_score"]
    )
    create_index_concurrently(
        DEFECTS_INDEX,
        "sensor_samples",
        ['"timestamp"'],
        include=["fusion_defects"],
        where="fusion_defects <> '[]'::jsonb",
    )
    op.execute(sa.text(f"ALTER TABLE sensor_samples SET ({VACUUM_OPTIONS[0]} = 10000, {VACUUM_OPTIONS[1]} = 0)"))


def downgrade() -> None:
    op.execute(sa.text(f"ALTER TABLE sensor_samples RESET ({', '.join(VACUUM_OPTIONS)})"))
    op.drop_index(DEFECTS_INDEX, table_name="sensor_samples")
    op.drop_index(GRADE_TIME_INDEX, table_name="sensor_samples")

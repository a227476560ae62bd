"""Data lifecycle: the dedup ledger's `stored_at`, and continuous aggregates of `sensor_samples` on TimescaleDB

Revision ID: 0010_sample_aggregates
Revises: 0009_sqal_score_index
Create Date: 2026-11-25

`sensor_sample_keys.stored_at` is when a key entered the ledger; the ledger is pruned on it
(SAMPLE_LEDGER_RETENTION_DAYS, README "Data lifecycle"). `ADD COLUMN … DEFAULT now()` stores the default once in
the catalog (no rewrite): keys from before this migration count from the migration, which keeps them longer, never
shorter. Its index is built `CONCURRENTLY` (the ledger is as long as the samples table), outside a transaction.

On TimescaleDB (`sensor_samples` a hypertable) it also creates the two real-time continuous aggregates of
`backend/sqal/aggregates.py`, `WITH NO DATA` (no long refresh in the migration: the refresh policies that
`flask sqal lifecycle apply` / init_db set fill them; until then queries compute them from the raw rows), and the
job procedure pruning the ledger in batches. `CREATE MATERIALIZED VIEW … WITH (timescaledb.continuous)` cannot run
inside a transaction: those statements run in an autocommit block, each made idempotent (`IF NOT EXISTS`, `OR
REPLACE`) so a migration interrupted there can simply be run again.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0010_sample_aggregates"
down_revision = "0009_sqal_score_index"
branch_labels = None
depends_on = None

VIEWS = (("sensor_samples_1m", "1 minute"), ("sensor_samples_1h", "1 hour"))
PROCEDURE = "sqal_prune_sample_keys"

CREATE_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '{width}', "timestamp") AS bucket, device_id, fusion_final_grade AS grade,
       fusion_defects AS defects, count(*) AS samples, sum(fusion_final_score) AS score_sum
FROM sensor_samples
GROUP BY 1, 2, 3, 4
WITH NO DATA
"""
# A TimescaleDB job (`add_job`): config {"days": N, "batch_size": M}; commits after every batch.
CREATE_PROCEDURE = f"""
CREATE OR REPLACE PROCEDURE {PROCEDURE}(job_id integer, config jsonb) LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(days => (config->>'days')::integer);
    batch integer := coalesce((config->>'batch_size')::integer, 10000);
    deleted integer;
BEGIN
    LOOP
        DELETE FROM sensor_sample_keys WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM sensor_sample_keys WHERE stored_at < cutoff LIMIT batch));
        GET DIAGNOSTICS deleted = ROW_COUNT;
        COMMIT;
        EXIT WHEN deleted < batch;
    END LOOP;
END
$$
"""


def _is_hypertable(connection: Connection) -> bool:
    if connection.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar() is None:
        return False
    query = "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'sensor_samples'"
    return connection.execute(sa.text(query)).scalar() is not None


def upgrade() -> None:
    op.add_column(
        "sensor_sample_keys",
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_sensor_sample_keys_stored_at",
            "sensor_sample_keys",
            ["stored_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        connection = op.get_bind()
        if not _is_hypertable(connection):
            return
        for name, width in VIEWS:
            connection.execute(sa.text(CREATE_VIEW.format(name=name, width=width)))
            connection.execute(sa.text(f"CREATE INDEX IF NOT EXISTS ix_{name}_device ON {name} (device_id, bucket)"))
        connection.execute(sa.text(CREATE_PROCEDURE))


def downgrade() -> None:
    connection = op.get_bind()
    if _is_hypertable(connection):
        connection.execute(
            sa.text(f"SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE proc_name = '{PROCEDURE}'")
        )
        connection.execute(sa.text(f"DROP PROCEDURE IF EXISTS {PROCEDURE}(integer, jsonb)"))
        for name, _width in VIEWS:  # their refresh policies go with them
            connection.execute(sa.text(f"DROP MATERIALIZED VIEW IF EXISTS {name}"))
    op.drop_index("ix_sensor_sample_keys_stored_at", table_name="sensor_sample_keys")
    op.drop_column("sensor_sample_keys", "stored_at")

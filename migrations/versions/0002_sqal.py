"""SQAL devices, sensor_samples (TimescaleDB hypertable when available) and the dedup ledger

Revision ID: 0002_sqal
Revises: 0001_products
Create Date: 2026-11-23

Uniqueness of (device_id, sample_id). A TimescaleDB hypertable only accepts unique indexes that include its
partition column (`timestamp`), so `UNIQUE (device_id, sample_id)` cannot live on `sensor_samples` itself, and
`UNIQUE (device_id, sample_id, timestamp)` would let a resend with a different timestamp through. Instead a
narrow plain table `sensor_sample_keys (device_id, sample_id)` (primary key on both) is the ledger of stored
samples: ingestion inserts the keys with `INSERT … ON CONFLICT DO NOTHING RETURNING`, then inserts into
`sensor_samples` only the rows whose key came back, in the same transaction. Concurrent writers of one key
serialise on the ledger's primary key, so a sample is stored at most once whatever the table's partitioning,
and the code path is identical with and without TimescaleDB. For the same reason the primary key of
`sensor_samples` is (id, timestamp) rather than id alone; ids are random UUIDs.

TimescaleDB. When `pg_available_extensions` lists `timescaledb`, `make_hypertable` turns the table into a
hypertable (1-day chunks, default indexes off because ours are created here) with compression segmented by
device and a 7-day compression policy. If the extension is listed but cannot be created (e.g. missing from
`shared_preload_libraries`), the table stays a plain table and a warning is logged; everything else works the
same. Indexes: `timestamp DESC` (time ranges, sliding-window metrics), `(device_id, timestamp DESC)` (latest
per device), `sample_id` (look-ups by sample id).
"""

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

revision = "0002_sqal"
down_revision = "0001_products"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

GRADES = "'A', 'B', 'C', 'REJECT'"
COMPRESS_AFTER = "7 days"
CHUNK_INTERVAL = "1 day"


def timescaledb_available(connection: Connection) -> bool:
    """True when the server can install TimescaleDB."""
    query = sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return connection.execute(query).scalar() is not None


def make_hypertable(connection: Connection) -> None:
    """Turn `sensor_samples` into a compressed hypertable (requires the timescaledb extension)."""
    connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    connection.execute(
        sa.text(
            "SELECT create_hypertable('sensor_samples', 'timestamp', "
            f"chunk_time_interval => INTERVAL '{CHUNK_INTERVAL}', "
            "create_default_indexes => FALSE, migrate_data => TRUE, if_not_exists => TRUE)"
        )
    )
    connection.execute(
        sa.text(
            "ALTER TABLE sensor_samples SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id', "
            "timescaledb.compress_orderby = '\"timestamp\" DESC')"
        )
    )
    connection.execute(
        sa.text(f"SELECT add_compression_policy('sensor_samples', INTERVAL '{COMPRESS_AFTER}', if_not_exists => TRUE)")
    )


def _grade_check(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({GRADES})", name=op.f(f"ck_sensor_samples_{column}"))


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(100), nullable=True),
        sa.Column("firmware_version", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    op.create_table(
        "sensor_sample_keys",
        sa.Column("device_id", sa.String(100), nullable=False),
        sa.Column("sample_id", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "sample_id", name=op.f("pk_sensor_sample_keys")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name=op.f("fk_sensor_sample_keys_device_id_devices")
        ),
    )
    jsonb = postgresql.JSONB()
    op.create_table(
        "sensor_samples",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.String(100), nullable=False),
        sa.Column("sample_id", sa.String(100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("vl53l8ch_distance_matrix", jsonb, nullable=False),
        sa.Column("vl53l8ch_reflectance_matrix", jsonb, nullable=False),
        sa.Column("vl53l8ch_amplitude_matrix", jsonb, nullable=False),
        sa.Column("vl53l8ch_volume_mm3", sa.Float(), nullable=False),
        sa.Column("vl53l8ch_avg_height_mm", sa.Float(), nullable=False),
        sa.Column("vl53l8ch_surface_uniformity", sa.Float(), nullable=False),
        sa.Column("vl53l8ch_quality_score", sa.Float(), nullable=False),
        sa.Column("vl53l8ch_grade", sa.String(50), nullable=False),
        sa.Column("as7341_channels", jsonb, nullable=False),
        sa.Column("as7341_integration_time", sa.Integer(), nullable=False),
        sa.Column("as7341_gain", sa.Float(), nullable=False),
        sa.Column("as7341_color_score", sa.Float(), nullable=False),
        sa.Column("as7341_freshness_score", sa.Float(), nullable=False),
        sa.Column("as7341_quality_score", sa.Float(), nullable=False),
        sa.Column("as7341_grade", sa.String(50), nullable=False),
        sa.Column("fusion_final_score", sa.Float(), nullable=False),
        sa.Column("fusion_final_grade", sa.String(50), nullable=False),
        sa.Column("fusion_confidence", sa.Float(), nullable=False),
        sa.Column("fusion_defects", jsonb, nullable=False),
        sa.Column("processing_time_ms", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", "timestamp", name=op.f("pk_sensor_samples")),
        _grade_check("vl53l8ch_grade"),
        _grade_check("as7341_grade"),
        _grade_check("fusion_final_grade"),
    )
    op.create_index("ix_sensor_samples_timestamp", "sensor_samples", [sa.text('"timestamp" DESC')])
    op.create_index(
        "ix_sensor_samples_device_id_timestamp", "sensor_samples", ["device_id", sa.text('"timestamp" DESC')]
    )
    op.create_index("ix_sensor_samples_sample_id", "sensor_samples", ["sample_id"])

    connection = op.get_bind()
    if not timescaledb_available(connection):
        logger.info("timescaledb not available: sensor_samples is a plain table")
        return
    savepoint = connection.begin_nested()
    try:
        make_hypertable(connection)
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        logger.warning("timescaledb listed but unusable (%s): sensor_samples stays a plain table", exc.orig)
    else:
        savepoint.commit()


def downgrade() -> None:
    # Dropping a hypertable also drops its chunks and its compression policy job.
    op.drop_table("sensor_samples")
    op.drop_table("sensor_sample_keys")
    op.drop_table("devices")

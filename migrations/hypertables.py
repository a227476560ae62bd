"""Helpers for migrations that alter a TimescaleDB hypertable (`sensor_samples`) or build indexes on big tables.

Import them from a revision script (`from migrations.hypertables import compression_suspended`); env.py makes the
repository root importable. The rules they implement are in docs/migrations.md.

- `compression_suspended(connection, table, unless_since=(2, 18))`: TimescaleDB before some version refuses a DDL
  statement on a hypertable with compression enabled, and decompressing the chunks is not enough. Around the
  statement this records the compression settings, the policy and which chunks are compressed, removes the policy,
  decompresses, turns compression off; afterwards turns it on again with the same settings, puts the policy back
  (same `compress_after`, schedule and on/off state) and recompresses the chunks that were compressed. Everything
  happens in the migration's transaction: a failure leaves the table as it was. On plain PostgreSQL, on a table that
  is not a hypertable, without compression, or on a version that alters in place, it does nothing.
- `create_index_concurrently(...)`: an index built without blocking writes. Plain table: `CREATE INDEX
  CONCURRENTLY`; hypertable: `WITH (timescaledb.transaction_per_chunk)` (CONCURRENTLY is refused there). Both run
  outside the migration's transaction and leave an INVALID index behind when interrupted: it is dropped first, so a
  retried migration builds it again.
- `run_in_batches(statement, ...)`: a data backfill as many short transactions of at most `batch_size` rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

logger = logging.getLogger("alembic.runtime.migration")

Version = tuple[int, ...]


def timescaledb_version(connection: Connection) -> Version | None:
    """The installed TimescaleDB extension's (major, minor, patch), or None without it."""
    query = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    version = connection.execute(query).scalar()
    if version is None:
        return None
    return tuple(int(part) for part in str(version).split("-")[0].split("."))


def is_hypertable(connection: Connection, table: str) -> bool:
    """True when TimescaleDB is installed and `table` (in the search path's first schema) is a hypertable."""
    if timescaledb_version(connection) is None:
        return False
    query = sa.text(
        "SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = :table"
    )
    return connection.execute(query, {"table": table}).scalar() is not None


@dataclass(frozen=True)
class Compression:
    """A hypertable's compression as `compression_suspended` puts it back."""

    segmentby: str | None
    orderby: str | None
    chunk_time_interval: Any
    policy: dict[str, Any] | None
    compressed_chunks: tuple[str, ...]


def _compression(connection: Connection, table: str) -> Compression | None:
    """The table's compression settings, policy and compressed chunks; None when compression is off."""
    enabled = connection.execute(
        sa.text(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = :table"
        ),
        {"table": table},
    ).scalar()
    if not enabled:
        return None
    settings = connection.execute(
        sa.text(
            "SELECT segmentby, orderby, compress_interval_length "
            "FROM timescaledb_information.hypertable_compression_settings WHERE hypertable = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).one()
    policy = connection.execute(
        sa.text(
            "SELECT config->>'compress_after' AS compress_after, "
            "config->>'compress_created_before' AS compress_created_before, schedule_interval, scheduled "
            "FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = :table "
            "AND proc_name = 'policy_compression'"
        ),
        {"table": table},
    ).one_or_none()
    chunks = connection.execute(
        sa.text(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = :table AND is_compressed "
            "ORDER BY range_start"
        ),
        {"table": table},
    ).scalars()
    return Compression(
        segmentby=settings.segmentby,
        orderby=settings.orderby,
        chunk_time_interval=settings.compress_interval_length,
        policy=dict(policy._mapping) if policy is not None else None,
        compressed_chunks=tuple(chunks),
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _turn_off(connection: Connection, table: str, compression: Compression) -> None:
    if compression.policy is not None:
        connection.execute(sa.text("SELECT remove_compression_policy(CAST(:table AS regclass))"), {"table": table})
    for chunk in compression.compressed_chunks:
        connection.execute(sa.text("SELECT decompress_chunk(CAST(:chunk AS regclass))"), {"chunk": chunk})
    connection.execute(sa.text(f'ALTER TABLE "{table}" SET (timescaledb.compress = false)'))


def _turn_on(connection: Connection, table: str, compression: Compression) -> None:
    options = ["timescaledb.compress"]
    if compression.segmentby:
        options.append(f"timescaledb.compress_segmentby = {_quote(compression.segmentby)}")
    if compression.orderby:
        options.append(f"timescaledb.compress_orderby = {_quote(compression.orderby)}")
    if compression.chunk_time_interval is not None:
        options.append(f"timescaledb.compress_chunk_time_interval = {_quote(str(compression.chunk_time_interval))}")
    connection.execute(sa.text(f'ALTER TABLE "{table}" SET ({", ".join(options)})'))
    policy = compression.policy
    if policy is not None:
        # A policy has either threshold (by chunk range or by creation time); the other one stays NULL.
        job_id = connection.execute(
            sa.text(
                "SELECT add_compression_policy(CAST(:table AS regclass), "
                "compress_after => CAST(:after AS interval), schedule_interval => :schedule, "
                "compress_created_before => CAST(:created_before AS interval))"
            ),
            {
                "table": table,
                "after": policy["compress_after"],
                "created_before": policy["compress_created_before"],
                "schedule": policy["schedule_interval"],
            },
        ).scalar()
        if not policy["scheduled"]:
            connection.execute(sa.text("SELECT alter_job(:job, scheduled => false)"), {"job": job_id})
    for chunk in compression.compressed_chunks:
        connection.execute(sa.text("SELECT compress_chunk(CAST(:chunk AS regclass))"), {"chunk": chunk})


@contextmanager
def compression_suspended(
    connection: Connection, table: str = "sensor_samples", *, unless_since: Version | None = None
) -> Iterator[bool]:
    """Run the block with `table`'s compression off when TimescaleDB is older than `unless_since` (any version if
    None); restore settings, policy and compressed chunks afterwards. Yields whether compression was suspended."""
    version = timescaledb_version(connection)
    needed = version is not None and (unless_since is None or version < unless_since)
    compression = _compression(connection, table) if needed and is_hypertable(connection, table) else None
    if compression is None:
        yield False
        return
    logger.info(
        "TimescaleDB %s: compression of %s off for this migration (%d compressed chunks to redo)",
        ".".join(map(str, version or ())),
        table,
        len(compression.compressed_chunks),
    )
    _turn_off(connection, table, compression)
    yield True
    _turn_on(connection, table, compression)


def create_index_concurrently(
    name: str, table: str, columns: Sequence[str], *, include: Sequence[str] = (), where: str | None = None
) -> None:
    """Build an index without blocking writes (see the module docstring); columns are SQL expressions."""
    connection = op.get_bind()
    hypertable = is_hypertable(connection, table)
    invalid = connection.execute(
        sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
    ).scalar()
    statement = f'CREATE INDEX {"" if hypertable else "CONCURRENTLY "}IF NOT EXISTS "{name}" ON "{table}" '
    statement += f"({', '.join(columns)})"
    if include:
        statement += f" INCLUDE ({', '.join(include)})"
    if hypertable:
        statement += " WITH (timescaledb.transaction_per_chunk)"
    if where:
        statement += f" WHERE {where}"
    with op.get_context().autocommit_block():
        if invalid:
            logger.info("index %s was left invalid by an interrupted build: dropped and built again", name)
            op.execute(sa.text(f'DROP INDEX {"" if hypertable else "CONCURRENTLY "}IF EXISTS "{name}"'))
        op.execute(sa.text(statement))


def run_in_batches(statement: str, *, batch_size: int = 10_000, params: dict[str, Any] | None = None) -> int:
    """Run `statement` (an UPDATE/DELETE/INSERT limited by `:batch_size`, e.g. `… WHERE ctid IN (SELECT ctid …
    LIMIT :batch_size)`) in its own short transaction until it touches no row; return the rows touched."""
    total = 0
    with op.get_context().autocommit_block():  # each statement commits by itself
        connection = op.get_bind()
        while True:
            touched = connection.execute(sa.text(statement), {**(params or {}), "batch_size": batch_size}).rowcount
            total += touched
            if touched == 0:
                return total

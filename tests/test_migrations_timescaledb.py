"""The migrations on the production data path: TimescaleDB 2.17.2 (existing installations), the newest TimescaleDB
and plain PostgreSQL. Upgrade from empty; upgrade from 0005 with compressed chunks, downgrade to 0005 and upgrade
again with the data intact and what was compressed compressed again.

TimescaleDB 2.17 refuses `ALTER COLUMN … DROP NOT NULL` on a hypertable with compression enabled (issue 20: the
compose quick start died in 0006); this module is the test that saw it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apiflask import APIFlask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from backend import create_app
from backend.base.config import Settings
from backend.core import database
from backend.extensions import db
from scripts import timescale
from scripts.services import TestServices, create_database, drop_database, with_database

PLAIN = "plain"
BEFORE_0006 = "0005_sqal_reads"
VERSION_1_COLUMNS = {"seq", "fusion_confidence"}
DAYS = 10
# Chunks are one day; those entirely older than this are compressed by hand before migrating.
COMPRESS_OLDER_THAN = "2 days"


@pytest.fixture(params=[PLAIN, *timescale.VERSIONS])
def server(
    request: pytest.FixtureRequest,
    services: TestServices,
    timescale_clusters: Callable[[str], timescale.TimescalePostgres],
) -> tuple[str, str]:
    """(kind, URL) of the server a migration runs on: the session's plain PostgreSQL or a TimescaleDB cluster."""
    if request.param == PLAIN:
        if os.environ.get("SQAL_TEST_TIMESCALEDB"):
            pytest.skip("this session's server is TimescaleDB: the plain-PostgreSQL case runs in the default session")
        return PLAIN, services.server_url
    return request.param, timescale_clusters(request.param).url("postgres")


@pytest.fixture
def empty_app(server: tuple[str, str]) -> Iterator[APIFlask]:
    server_url = server[1]
    """An app on a brand-new empty database of that server, dropped afterwards."""
    name = f"sqal_tsdb_migrations_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name)
    app = create_app(Settings.from_env({}, database_url=with_database(server_url, name), app_env="test"))
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop_database(server_url, name)


@dataclass(frozen=True)
class Snapshot:
    """What a migration of `sensor_samples` must keep: the rows, and on TimescaleDB its compression."""

    rows: int
    digest: str
    compressed_chunks: frozenset[str]
    compression_settings: tuple[Any, ...] | None
    compression_policy: tuple[Any, ...] | None


def is_hypertable() -> bool:
    if db.session.execute(text("SELECT to_regclass('timescaledb_information.hypertables')")).scalar() is None:
        return False
    query = "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'sensor_samples'"
    return db.session.execute(text(query)).scalar() is not None


def snapshot() -> Snapshot:
    rows, digest = db.session.execute(
        text("SELECT count(*), md5(coalesce(string_agg(s::text, '|' ORDER BY s.id), '')) FROM sensor_samples s")
    ).one()
    if not is_hypertable():
        db.session.commit()
        return Snapshot(rows, digest, frozenset(), None, None)
    chunks = db.session.execute(
        text(
            "SELECT chunk_name FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'sensor_samples' AND is_compressed"
        )
    ).scalars()
    settings = db.session.execute(
        text(
            "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
            "WHERE hypertable = 'sensor_samples'::regclass"
        )
    ).one_or_none()
    policy = db.session.execute(
        text(
            "SELECT config->>'compress_after', schedule_interval, scheduled FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'sensor_samples' AND proc_name = 'policy_compression'"
        )
    ).one_or_none()
    result = Snapshot(
        rows, digest, frozenset(chunks), tuple(settings) if settings else None, tuple(policy) if policy else None
    )
    db.session.commit()
    return result


def insert_samples_over_days(device_id: str = "ESP32_TSDB_1") -> None:
    """Hourly samples over the last DAYS days (one chunk a day on TimescaleDB), with the columns of 0005."""
    db.session.execute(text("INSERT INTO devices (device_id, token_hash) VALUES (:d, :d)"), {"d": device_id})
    db.session.execute(
        text(
            "INSERT INTO sensor_samples SELECT gen_random_uuid(), date_trunc('hour', now()) - i * INTERVAL '1 hour', "
            ":d, 'S-' || i, i, '[[1]]', '[[2]]', '[[3]]', i, 1.5, 0.9, 0.8, 'A', '{\"F1_415nm\": 10}', 100, 4, "
            "0.7, 0.6, 0.65, 'B', 0.75, 'B', 0.5, '[\"bruise\"]', 12.5, now(), now() "
            "FROM generate_series(1, :hours) i"
        ),
        {"d": device_id, "hours": DAYS * 24},
    )
    db.session.commit()


def compress_old_chunks() -> int:
    """Compress the chunks older than COMPRESS_OLDER_THAN (as the policy would, sooner); how many."""
    count = db.session.execute(
        text(
            "SELECT count(compress_chunk(c)) FROM show_chunks('sensor_samples', "
            f"older_than => now() - INTERVAL '{COMPRESS_OLDER_THAN}') c"
        )
    ).scalar()
    db.session.commit()
    return int(count or 0)


def nullable_columns() -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("sensor_samples") if c["nullable"]}


def test_upgrade_from_empty(empty_app: APIFlask, server: tuple[str, str]) -> None:
    with empty_app.app_context():
        upgrade()
        assert database.current_revisions(db.engine) == database.head_revisions()
        assert nullable_columns() >= VERSION_1_COLUMNS
        state = snapshot()
        if server[0] == PLAIN:
            return
        assert is_hypertable()
        assert state.compression_settings == ("device_id", '"timestamp" DESC')
        assert state.compression_policy is not None
        assert state.compression_policy[0] == "7 days"


def test_upgrade_from_0005_with_compressed_chunks_then_down_and_up_again(empty_app: APIFlask) -> None:
    with empty_app.app_context():
        upgrade(revision=BEFORE_0006)
        insert_samples_over_days()
        hypertable = is_hypertable()
        if hypertable:
            assert compress_old_chunks() >= DAYS - 2
        before = snapshot()
        assert before.rows == DAYS * 24
        assert bool(before.compressed_chunks) is hypertable

        upgrade()
        assert nullable_columns() >= VERSION_1_COLUMNS
        assert snapshot() == before, "0006 must keep every row, the compression settings, policy and compressed chunks"

        downgrade(revision=BEFORE_0006)
        assert not VERSION_1_COLUMNS & nullable_columns()
        assert snapshot() == before, "0006's downgrade must keep them too"

        upgrade()
        assert nullable_columns() >= VERSION_1_COLUMNS
        assert snapshot() == before
        assert database.current_revisions(db.engine) == database.head_revisions()

"""Migration 0002_sqal on a database of its own: upgrade, downgrade to base, upgrade again; hypertable path."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from types import ModuleType

import pytest
from apiflask import APIFlask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from backend import create_app
from backend.core import database
from backend.extensions import db
from tests.support.services import TestServices, create_database, drop_database, with_database

SQAL_TABLES = {"devices", "sensor_samples", "sensor_sample_keys"}
EXPECTED_INDEXES = {
    "ix_sensor_samples_timestamp",
    "ix_sensor_samples_device_id_timestamp",
    "ix_sensor_samples_sample_id",
}


def load_migration() -> ModuleType:
    path = database.MIGRATIONS_DIR / "versions" / "0002_sqal.py"
    spec = importlib.util.spec_from_file_location("migration_0002_sqal", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scratch_app(services: TestServices) -> Iterator[APIFlask]:
    """An app on a brand-new empty database, dropped afterwards."""
    name = f"sqal_migration_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    application = create_app({"app_env": "test", "database_url": with_database(services.server_url, name)})
    try:
        yield application
    finally:
        with application.app_context():
            db.engine.dispose()
        drop_database(services.server_url, name)


def table_names(application: APIFlask) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def timescaledb_available(application: APIFlask) -> bool:
    with application.app_context(), db.engine.connect() as connection:
        return bool(load_migration().timescaledb_available(connection))


def test_upgrade_downgrade_upgrade(scratch_app: APIFlask) -> None:
    with scratch_app.app_context():
        upgrade()
        assert table_names(scratch_app) >= SQAL_TABLES
        indexes = {index["name"] for index in inspect(db.engine).get_indexes("sensor_samples")}
        assert indexes >= EXPECTED_INDEXES
        primary_key = inspect(db.engine).get_pk_constraint("sensor_sample_keys")
        assert primary_key["constrained_columns"] == ["device_id", "sample_id"]
        columns = {column["name"] for column in inspect(db.engine).get_columns("sensor_samples")}
        assert {"id", "timestamp", "seq", "received_at", "fusion_defects", "as7341_channels"} <= columns
        downgrade(revision="base")
        assert not SQAL_TABLES & table_names(scratch_app)
        upgrade()
        assert table_names(scratch_app) >= SQAL_TABLES
        db.session.remove()


def test_plain_table_without_timescaledb(scratch_app: APIFlask) -> None:
    if timescaledb_available(scratch_app):
        pytest.skip("timescaledb is available on this server: the hypertable test covers it")
    with scratch_app.app_context():
        upgrade()
        kind = db.session.execute(text("SELECT relkind FROM pg_class WHERE relname = 'sensor_samples'")).scalar()
        assert kind == "r"
        db.session.remove()


def test_hypertable_with_compression_when_timescaledb_exists(scratch_app: APIFlask) -> None:
    if not timescaledb_available(scratch_app):
        pytest.skip("timescaledb extension not available on this PostgreSQL server")
    with scratch_app.app_context():
        upgrade()
        hypertables = db.session.execute(
            text("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables")
        ).all()
        assert ("sensor_samples", True) in [tuple(row) for row in hypertables]
        jobs = db.session.execute(
            text("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'sensor_samples'")
        ).scalar()
        assert jobs == 1
        db.session.remove()
        downgrade(revision="base")
        assert not SQAL_TABLES & table_names(scratch_app)


def nullable_columns(application: APIFlask) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("sensor_samples") if c["nullable"]}


def test_0006_makes_seq_and_confidence_nullable_and_its_downgrade_keeps_v1_samples(
    scratch_app: APIFlask, caplog: pytest.LogCaptureFixture
) -> None:
    version_1_columns = {"seq", "fusion_confidence"}
    with scratch_app.app_context():
        upgrade(revision="0005_sqal_reads")
        assert not version_1_columns & nullable_columns(scratch_app)
        upgrade()
        assert version_1_columns <= nullable_columns(scratch_app)
        db.session.execute(text("INSERT INTO devices (device_id, token_hash) VALUES ('ESP32_SIM_1', 'h')"))
        db.session.execute(
            text(
                "INSERT INTO sensor_samples SELECT gen_random_uuid(), now(), 'ESP32_SIM_1', 'S-1', NULL, "
                "'[]', '[]', '[]', 1, 1, 1, 1, 'A', '{}', 100, 4, 1, 1, 1, 'A', 1, 'A', NULL, '[]', NULL, now(), now()"
            )
        )
        db.session.commit()
        with pytest.raises(SystemExit):  # flask-migrate logs the migration's RuntimeError and exits
            downgrade(revision="0005_sqal_reads")
        assert "holds version-1 samples" in caplog.text
        db.session.rollback()
        db.session.execute(text("DELETE FROM sensor_samples"))
        db.session.commit()
        downgrade(revision="0005_sqal_reads")
        assert not version_1_columns & nullable_columns(scratch_app)
        db.session.remove()

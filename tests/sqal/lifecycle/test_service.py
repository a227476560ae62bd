"""Retention of samples and of the dedup ledger, compression and refresh policies (README "Data lifecycle")."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql

from backend.base.config import ConfigError, Settings
from backend.extensions import db
from backend.sqal.lifecycle import service
from backend.sqal.models import SampleKey, SensorSample
from tests.sqal.rows import NOW, devices, insert_devices, insert_samples, sample_data


def _with(application: APIFlask, **changes: Any) -> Settings:
    return dataclasses.replace(application.config["SETTINGS"], **changes)


def _load_ten_days(application: APIFlask) -> list[dict[str, Any]]:
    """300 samples before NOW, half over 10 days; each key stored when its sample was taken."""
    rows = sample_data(300, days=10)
    insert_devices(application, *devices())
    insert_samples(application, rows)
    with application.app_context():
        for row in rows:
            db.session.execute(
                update(SampleKey)
                .where(SampleKey.device_id == row["device_id"], SampleKey.sample_id == row["sample_id"])
                .values(stored_at=row["timestamp"])
            )
        db.session.commit()
        db.session.remove()
    return rows


def _remaining(application: APIFlask) -> tuple[int, Any, int, Any]:
    with application.app_context():
        samples, oldest = db.session.execute(select(func.count(), func.min(SensorSample.timestamp))).one()
        keys, oldest_key = db.session.execute(select(func.count(), func.min(SampleKey.stored_at))).one()
        db.session.remove()
        return samples, oldest, keys, oldest_key


def test_settings_keep_the_ledger_at_least_as_long_as_the_samples() -> None:
    base = {"database_url": "postgresql://x@localhost/db"}
    assert Settings.from_env({}, **base).ledger_retention_days == 0
    assert Settings.from_env({"SENSOR_RETENTION_DAYS": "30"}, **base).ledger_retention_days == 30
    assert (
        Settings.from_env({"SENSOR_RETENTION_DAYS": "30", "SAMPLE_LEDGER_RETENTION_DAYS": "45"}, **base)
    ).ledger_retention_days == 45
    for environ in (
        {"SENSOR_RETENTION_DAYS": "30", "SAMPLE_LEDGER_RETENTION_DAYS": "29"},
        {"SAMPLE_LEDGER_RETENTION_DAYS": "10"},  # samples kept forever, keys not: a resend would store twice
    ):
        with pytest.raises(ConfigError, match="SAMPLE_LEDGER_RETENTION_DAYS"):
            Settings.from_env(environ, **base)
    with pytest.raises(ConfigError, match="SENSOR_RETENTION_DAYS"):
        Settings.from_env({"SENSOR_RETENTION_DAYS": "-1"}, **base)


def test_plain_postgresql_deletes_in_batches(plain_app: APIFlask) -> None:
    rows = _load_ten_days(plain_app)
    settings = _with(plain_app, sensor_retention_days=3, sample_ledger_retention_days=5)
    with plain_app.app_context():
        assert service.apply_policies(settings).timescaledb is False
        report = service.run_retention(settings, NOW, batch_size=100)
    samples, oldest, keys, oldest_key = _remaining(plain_app)
    expected_samples = [row for row in rows if row["timestamp"] >= NOW - timedelta(days=3)]
    expected_keys = [row for row in rows if row["timestamp"] >= NOW - timedelta(days=5)]
    assert samples == len(expected_samples)
    assert oldest >= NOW - timedelta(days=3)
    assert keys == len(expected_keys)
    assert oldest_key >= NOW - timedelta(days=5)
    assert report.samples_deleted == len(rows) - len(expected_samples) > 100  # more than one batch
    assert report.keys_deleted == len(rows) - len(expected_keys)
    assert report.batches == 3  # 2 batches of samples (the second one short), 1 of keys
    # Within the ledger's window a key outlives its sample: a resend of a dropped sample is still a duplicate.
    dropped = next(row for row in rows if NOW - timedelta(days=5) < row["timestamp"] < NOW - timedelta(days=3))
    with plain_app.app_context():
        statement = postgresql.insert(SampleKey).values(device_id=dropped["device_id"], sample_id=dropped["sample_id"])
        returned = db.session.execute(statement.on_conflict_do_nothing().returning(SampleKey.sample_id)).all()
        db.session.rollback()
    assert returned == []


def test_retention_cli_on_plain_postgresql(plain_app: APIFlask) -> None:
    insert_devices(plain_app, *devices())
    insert_samples(plain_app, sample_data(50, days=1))
    old = sample_data(20, days=1, seed=3)
    for row in old:
        row["timestamp"] -= timedelta(days=400)
        row["sample_id"] = "OLD-" + row["sample_id"]
    insert_samples(plain_app, old)
    plain_app.config["SETTINGS"] = _with(plain_app, sensor_retention_days=365)
    result = plain_app.test_cli_runner().invoke(args=["sqal", "retention", "run", "--batch-size", "100"])
    assert result.exit_code == 0, result.output
    assert "samples deleted: 20," in result.output
    assert _remaining(plain_app)[0] == 50


def _jobs(application: APIFlask) -> dict[str, Any]:
    with application.app_context():
        found = db.session.execute(
            text(
                "SELECT proc_name, coalesce(hypertable_name, ''), job_id, config FROM timescaledb_information.jobs "
                "WHERE proc_name LIKE 'policy_%' OR proc_name = 'sqal_prune_sample_keys'"
            )
        ).all()
        db.session.remove()
    return {f"{proc} {relation}".strip(): (job_id, config) for proc, relation, job_id, config in found}


def test_timescaledb_policies_follow_the_settings(timescale_app: APIFlask) -> None:
    settings = _with(timescale_app, sensor_retention_days=30, sample_ledger_retention_days=40)
    with timescale_app.app_context():
        report = service.apply_policies(settings)
    assert report.timescaledb
    jobs = _jobs(timescale_app)
    assert jobs["policy_retention sensor_samples"][1]["drop_after"] == "30 days"
    assert jobs["policy_compression sensor_samples"][1]["compress_after"] == "7 days"
    assert jobs["sqal_prune_sample_keys"][1] == {"days": 40, "batch_size": service.DEFAULT_BATCH_SIZE}
    refresh = [name for name in jobs if name.startswith("policy_refresh_continuous_aggregate")]
    assert len(refresh) == 2
    with timescale_app.app_context():  # applied again: nothing changes (same jobs)
        assert all("unchanged" in action for action in service.apply_policies(settings).actions)
    assert _jobs(timescale_app) == jobs

    changed = _with(timescale_app, sensor_retention_days=0, sensor_compress_after_days=2)
    with timescale_app.app_context():
        service.apply_policies(changed)
    jobs = _jobs(timescale_app)
    assert "policy_retention sensor_samples" not in jobs
    assert "sqal_prune_sample_keys" not in jobs
    assert jobs["policy_compression sensor_samples"][1]["compress_after"] == "2 days"


def test_timescaledb_drops_chunks_and_its_job_prunes_the_ledger(timescale_app: APIFlask) -> None:
    rows = _load_ten_days(timescale_app)
    settings = _with(timescale_app, sensor_retention_days=3, sample_ledger_retention_days=5)
    with timescale_app.app_context():
        report = service.run_retention(settings, NOW, batch_size=100)
    samples, oldest, _keys, _oldest_key = _remaining(timescale_app)
    assert report.chunks_dropped >= 6
    # Whole 1-day chunks go: what remains starts at most one chunk before the cutoff.
    assert NOW - timedelta(days=4) <= oldest
    assert samples == len([row for row in rows if row["timestamp"] >= oldest])

    # The ledger job (scheduled by apply_policies) prunes with the database's now(): keys stored 6 days ago go.
    with timescale_app.app_context():
        db.session.execute(text("UPDATE sensor_sample_keys SET stored_at = now() - interval '6 days'"))
        db.session.execute(
            text(
                "UPDATE sensor_sample_keys SET stored_at = now() "
                "WHERE sample_id IN (SELECT sample_id FROM sensor_sample_keys ORDER BY sample_id LIMIT 3)"
            )
        )
        db.session.commit()
        service.apply_policies(settings)
        job_id = db.session.execute(
            text("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'sqal_prune_sample_keys'")
        ).scalar()
        db.session.remove()
        with db.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text("CALL run_job(:id)"), {"id": job_id})
    assert _remaining(timescale_app)[2] == 3

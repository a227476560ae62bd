"""Backup and restore of a TimescaleDB database with compressed chunks: pg_dump -Fc, pg_restore with the
extension's pre/post-restore steps (README "Data lifecycle"), then the same data, reads and schema."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg2
from apiflask import APIFlask
from sqlalchemy import text

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from backend.sqal.reads import figures, service
from scripts import timescale
from scripts.services import create_database, drop_database, with_database
from tests.sqal.rows import NOW, devices, insert_devices, insert_samples, sample_data
from tests.sqal.test_aggregates import assert_same


def _state(application: APIFlask) -> dict[str, Any]:
    with application.app_context():
        found = {
            "samples": list(
                db.session.execute(text("SELECT count(*), sum(fusion_final_score) FROM sensor_samples")).one()
            ),
            "keys": db.session.execute(text("SELECT count(*) FROM sensor_sample_keys")).scalar(),
            "compressed": db.session.execute(
                text(
                    "SELECT array_agg(range_start ORDER BY range_start) FROM timescaledb_information.chunks "
                    "WHERE is_compressed AND hypertable_name = 'sensor_samples'"
                )
            ).scalar(),
            "revision": db.session.execute(text("SELECT version_num FROM alembic_version")).scalar(),
            "jobs": sorted(
                db.session.execute(text("SELECT proc_name FROM timescaledb_information.jobs WHERE job_id >= 1000"))
                .scalars()
                .all()
            ),
            "timeseries": service.timeseries(timedelta(hours=1), NOW - timedelta(days=6), NOW),
            "figures": figures.select_figures(NOW, 10.0),
        }
        db.session.remove()
        return found


def test_round_trip_with_compressed_chunks(
    timescale_app: APIFlask, timescale_clusters: Callable[[str], timescale.TimescalePostgres], tmp_path: Any
) -> None:
    cluster = timescale_clusters(timescale.NEWEST_VERSION)
    insert_devices(timescale_app, *devices())
    insert_samples(timescale_app, sample_data(600, days=6))
    with timescale_app.app_context():
        compressed = db.session.execute(
            text(
                "SELECT count(compress_chunk(c)) "
                "FROM show_chunks('sensor_samples', older_than => CAST(:t AS timestamptz)) c"
            ),
            {"t": NOW - timedelta(days=2)},
        ).scalar()
        db.session.commit()
        db.session.remove()
    assert compressed >= 3
    before = _state(timescale_app)
    assert len(before["compressed"]) == compressed

    source_url = str(timescale_app.config["SETTINGS"].database_url).replace("+psycopg2", "")
    dump = tmp_path / "sqal.dump"
    tools = timescale.bin_dir(timescale.NEWEST_VERSION)
    subprocess.run([str(tools / "pg_dump"), "-Fc", "-f", str(dump), "-d", source_url], check=True, capture_output=True)

    server = cluster.url("postgres")
    name = f"sqal_restored_{uuid.uuid4().hex[:8]}"
    create_database(server, name)
    restored_url = with_database(server, name)
    try:
        _sql(restored_url, "CREATE EXTENSION timescaledb", "SELECT timescaledb_pre_restore()")
        subprocess.run(
            [str(tools / "pg_restore"), "--no-owner", "-d", restored_url, str(dump)], check=True, capture_output=True
        )
        _sql(restored_url, "SELECT timescaledb_post_restore()")
        restored = create_app(
            Settings.from_env({}, app_env="test", database_url=restored_url, rate_limit_enabled=False)
        )
        after = _state(restored)
        # The compression policy (7 days) may compress the other old chunks once the restored scheduler starts.
        assert set(before.pop("compressed")) <= set(after.pop("compressed"))
        assert_same(before, after, "restored")  # sums may add up in another order: floats compared approximately
        # The restored database takes new samples (in an uncompressed chunk) and reads them.
        insert_samples(restored, [{**sample_data(1, days=0.001, seed=9)[0], "sample_id": "AFTER-RESTORE"}])
        assert _state(restored)["samples"][0] == before["samples"][0] + 1
        with restored.app_context():
            db.engine.dispose()
    finally:
        drop_database(server, name)


def _sql(url: str, *statements: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()

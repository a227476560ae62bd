"""Migrations on a live database (docs/migrations.md): the real migrations/env.py running throwaway revisions.

No statement timeout but a lock timeout, retried; indexes built without blocking writes (an interrupted build
redone); backfills in batches. On plain PostgreSQL and on the newest TimescaleDB.
"""

from __future__ import annotations

import shutil
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from apiflask import APIFlask
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from backend import create_app
from backend.base.config import Settings
from backend.core import database
from backend.extensions import db
from scripts import timescale
from scripts.services import TestServices, create_database, drop_database, with_database

PLAIN = "plain"


def throwaway_migrations(root: Path, upgrade_body: str) -> Path:
    """A migrations directory with the project's env.py and one revision whose upgrade() is `upgrade_body`."""
    for name in ("env.py", "alembic.ini", "script.py.mako"):
        shutil.copy(database.MIGRATIONS_DIR / name, root / name)
    (root / "versions").mkdir()
    header = """\
import sqlalchemy as sa
from alembic import op

from migrations.hypertables import create_index_concurrently, run_in_batches

revision = "t1_probe"
down_revision = None
branch_labels = None
depends_on = None


def downgrade() -> None:
    pass


def upgrade() -> None:
"""
    revision = header + textwrap.indent(textwrap.dedent(upgrade_body).strip(), "    ") + "\n"
    (root / "versions" / "t1_probe.py").write_text(revision, encoding="utf-8")
    return root


@pytest.fixture(params=[PLAIN, timescale.NEWEST_VERSION])
def server(
    request: pytest.FixtureRequest,
    services: TestServices,
    timescale_clusters: Callable[[str], timescale.TimescalePostgres],
) -> tuple[str, str]:
    """(kind, URL): the session's server, or a cluster of the newest TimescaleDB."""
    if request.param == PLAIN:
        return PLAIN, services.server_url
    return request.param, timescale_clusters(request.param).url("postgres")


@pytest.fixture
def database_url(services: TestServices) -> Iterator[str]:
    """A brand-new database on the session's server, dropped afterwards."""
    name = f"sqal_migration_safety_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    try:
        yield with_database(services.server_url, name)
    finally:
        drop_database(services.server_url, name)


def app_on(database_url: str, **settings: Any) -> APIFlask:
    return create_app(Settings.from_env({}, database_url=database_url, app_env="test", **settings))


def dsn(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg2://", "postgresql://", 1)


def run_sql(database_url: str, *statements: str) -> list[Any]:
    """Run statements in autocommit; the last one's rows."""
    conn = psycopg2.connect(dsn(database_url))
    conn.autocommit = True
    rows: list[Any] = []
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
    finally:
        conn.close()
    return rows


def migrate(app: APIFlask, directory: Path) -> None:
    with app.app_context():
        try:
            upgrade(directory=str(directory))
        finally:
            db.engine.dispose()


def test_migrations_have_no_statement_timeout_and_a_lock_timeout(database_url: str, tmp_path: Path) -> None:
    app = app_on(database_url, db_statement_timeout_ms=50)
    body = """
        op.execute("SELECT pg_sleep(0.2)")  # four times the app's statement timeout
        op.execute(
            "CREATE TABLE probe AS SELECT current_setting('statement_timeout') AS statement_timeout, "
            "current_setting('lock_timeout') AS lock_timeout"
        )
    """
    migrate(app, throwaway_migrations(tmp_path, body))
    assert run_sql(database_url, "SELECT statement_timeout, lock_timeout FROM probe") == [("0", "5s")]
    with app.app_context():
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == "50ms", "the app keeps its own"
        db.session.remove()
        db.engine.dispose()


def hold_lock(database_url: str, seconds: float, ready: threading.Event) -> threading.Thread:
    """A reader holding ACCESS SHARE on `probe` for `seconds` (a long report, a pg_dump): ALTER must wait for it."""

    def hold() -> None:
        conn = psycopg2.connect(dsn(database_url))
        try:
            with conn.cursor() as cursor:
                cursor.execute("LOCK TABLE probe IN ACCESS SHARE MODE")
                ready.set()
                time.sleep(seconds)
            conn.commit()
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


def test_a_migration_waiting_for_a_lock_gives_up_and_is_retried(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_sql(database_url, "CREATE TABLE probe (id int)")
    directory = throwaway_migrations(tmp_path, 'op.execute("ALTER TABLE probe ADD COLUMN extra int")')

    holder = hold_lock(database_url, 1.5, threading.Event())
    with pytest.raises(OperationalError, match="canceling statement due to lock timeout"):
        migrate(app_on(database_url, db_migration_lock_timeout_ms=200, db_migration_lock_retries=0), directory)
    holder.join()

    caplog.clear()
    holder = hold_lock(database_url, 1.5, threading.Event())
    started = time.monotonic()
    migrate(app_on(database_url, db_migration_lock_timeout_ms=200, db_migration_lock_retries=5), directory)
    holder.join()
    assert time.monotonic() - started >= 1.0, "the migration cannot have run while the lock was held"
    assert "migration lock timeout (attempt 1 of 6), retrying" in caplog.text
    columns = run_sql(database_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'probe'")
    assert {row[0] for row in columns} == {"id", "extra"}


@pytest.fixture
def any_database_url(server: tuple[str, str]) -> Iterator[str]:
    """A brand-new database on that server, dropped afterwards."""
    name = f"sqal_migration_safety_{uuid.uuid4().hex[:8]}"
    create_database(server[1], name)
    try:
        yield with_database(server[1], name)
    finally:
        drop_database(server[1], name)


def test_index_built_without_blocking_writes_and_backfill_in_batches(
    any_database_url: str, server: tuple[str, str], tmp_path: Path
) -> None:
    hypertable = server[0] != PLAIN
    make_hypertable = [
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        "SELECT create_hypertable('probe', 'at', chunk_time_interval => INTERVAL '1 day')",
    ]
    run_sql(
        any_database_url,
        "CREATE TABLE probe (id int, at timestamptz NOT NULL, v int NOT NULL)",
        *(make_hypertable if hypertable else []),
        "INSERT INTO probe SELECT i, now() - i * INTERVAL '6 hours', i FROM generate_series(1, 25) i",
        # An earlier attempt interrupted: the index exists but is INVALID.
        "CREATE INDEX ix_probe_v ON probe (v)",
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_probe_v'::regclass",
    )
    body = """
        create_index_concurrently("ix_probe_v", "probe", ["v"], include=["id"])
        total = run_in_batches(
            "UPDATE probe SET v = v + 1000 WHERE id IN (SELECT id FROM probe WHERE v < 1000 LIMIT :batch_size)",
            batch_size=10,
        )
        op.execute(f"CREATE TABLE backfill AS SELECT {total} AS total")
    """
    migrate(app_on(any_database_url), throwaway_migrations(tmp_path, body))
    assert run_sql(any_database_url, "SELECT total FROM backfill") == [(25,)]
    assert run_sql(any_database_url, "SELECT min(v) >= 1000, count(*) FROM probe") == [(True, 25)]
    assert run_sql(any_database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_probe_v'::regclass") == [
        (True,)
    ]
    definition = run_sql(any_database_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_probe_v'")
    assert "INCLUDE (id)" in definition[0][0], "the leftover invalid index was dropped and built again"
    if hypertable:
        chunks, indexed = run_sql(
            any_database_url,
            "SELECT (SELECT count(*) FROM show_chunks('probe')), "
            "(SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%ix_probe_v' AND tablename LIKE '\\_hyper%')",
        )[0]
        assert chunks >= 6
        assert indexed == chunks, "every chunk carries the index"

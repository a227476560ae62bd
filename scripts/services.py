"""Real PostgreSQL and Redis for a test or benchmark session: the ones in DATABASE_URL / REDIS_URL, else embedded
ones (`scripts.devservices`), with a private database created for the session and dropped after it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from scripts import timescale
from scripts.devservices import REPO_ROOT, EmbeddedPostgres, EmbeddedRedis, free_port

TEST_ROOT = REPO_ROOT / ".local" / "test"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def admin_dsn(url: str) -> str:
    """A psycopg2 DSN for the server's `postgres` database (SQLAlchemy driver suffix removed)."""
    return with_database(url, "postgres").replace("postgresql+psycopg2://", "postgresql://", 1)


@dataclass
class TestServices:
    """Server URLs for the session and a private database on that server."""

    __test__ = False  # not a test class, despite the name

    server_url: str
    redis_url: str
    database_name: str

    @property
    def database_url(self) -> str:
        return with_database(self.server_url, self.database_name)


def execute_autocommit(dsn: str, statement: str | sql.Composable) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE, CREATE INDEX CONCURRENTLY) on `dsn`."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def create_database(server_url: str, name: str) -> None:
    execute_autocommit(admin_dsn(server_url), sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server_url: str, name: str) -> None:
    execute_autocommit(
        admin_dsn(server_url), sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@contextmanager
def session_services() -> Iterator[TestServices]:
    """Yield the session's services; embedded ones live under .local/test and are stopped afterwards.

    With `SQAL_TEST_TIMESCALEDB=VERSION` the database server is a throwaway TimescaleDB cluster of that version
    (`scripts/timescale.py`) instead of DATABASE_URL's, so whole suites run on the hypertable path.
    """
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    server_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    timescale_version = os.environ.get("SQAL_TEST_TIMESCALEDB", "")
    try:
        if timescale_version:
            reason = timescale.missing_reason(timescale_version)
            if reason:
                raise RuntimeError(f"SQAL_TEST_TIMESCALEDB={timescale_version}: {reason}")
            data_dir = TEST_ROOT / f"timescaledb-{timescale_version}-{os.getpid()}"
            pg: EmbeddedPostgres = timescale.TimescalePostgres(timescale_version, data_dir, free_port())
            pg.start()
            started.append(pg)
            server_url = pg.url("postgres")
        elif not server_url:
            pg = EmbeddedPostgres(TEST_ROOT / f"postgres-{os.getpid()}", free_port())
            pg.start()
            started.append(pg)
            server_url = pg.url("postgres")
        if not redis_url:
            redis = EmbeddedRedis(TEST_ROOT / f"redis-{os.getpid()}", free_port())
            redis.start()
            started.append(redis)
            redis_url = redis.url()
        name = f"sqal_test_{uuid.uuid4().hex[:10]}"
        create_database(server_url, name)
        try:
            yield TestServices(server_url, redis_url, name)
        finally:
            drop_database(server_url, name)
    finally:
        for service in reversed(started):
            service.stop()
            shutil.rmtree(service.data_dir, ignore_errors=True)

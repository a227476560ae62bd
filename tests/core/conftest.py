"""Fault-injection fixtures: a PostgreSQL and a Redis owned by these tests (stopped, killed and restarted at will),
apps and gunicorn servers wired to them. The machine's own services are never touched."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from apiflask import APIFlask
from flask_migrate import upgrade

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from backend.products.service import SAMPLE_PRODUCTS, seed_sample_products
from scripts.devservices import EmbeddedPostgres, EmbeddedRedis, free_port
from scripts.services import TEST_ROOT
from tests.conftest import built_apps
from tests.support.server import GunicornServer

DATABASE = "resilience"


@pytest.fixture(scope="package")
def own_root() -> Iterator[Path]:
    """Data directories of the tests' own servers, under .local/test like the session's embedded services: pytest's
    temporary root is made owner-only again by any pytest run starting meanwhile, locking PostgreSQL out."""
    root = TEST_ROOT / f"resilience-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def own_postgres(own_root: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL for these tests only, with the schema at head and the sample products."""
    pg = EmbeddedPostgres(own_root / "postgres", free_port())
    pg.start()
    try:
        pg.create_database(DATABASE)
        app = create_app(Settings.from_env({}, app_env="test", database_url=pg.url(DATABASE)))
        with app.app_context():
            upgrade()
            seed_sample_products()
            db.engine.dispose()
        yield pg
    finally:
        pg.stop(mode="immediate")


@pytest.fixture(scope="package")
def own_redis(own_root: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server for these tests only (killed and restarted on the same port by the fault tests)."""
    server = EmbeddedRedis(own_root / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_redis(own_redis: EmbeddedRedis) -> EmbeddedRedis:
    """The test's Redis, (re)started if an earlier test left it down, and emptied."""
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url())
    try:
        client.flushall()
    finally:
        client.close()
    return own_redis


@pytest.fixture
def running_postgres(own_postgres: EmbeddedPostgres) -> EmbeddedPostgres:
    """The test's PostgreSQL, (re)started if an earlier test left it down, with exactly the sample products."""
    own_postgres.start()
    conn = psycopg2.connect(own_postgres.url(DATABASE))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("TRUNCATE products RESTART IDENTITY CASCADE")
            for item in SAMPLE_PRODUCTS:
                cursor.execute(
                    "INSERT INTO products (name, price, category) VALUES (%s, %s, %s)",
                    (item["name"], item["price"], item["category"]),
                )
    finally:
        conn.close()
    return own_postgres


@pytest.fixture
def make_app(running_postgres: EmbeddedPostgres, running_redis: EmbeddedRedis) -> Iterator[Callable[..., APIFlask]]:
    """Build apps on the test's own services; `make_app(**settings_overrides)`."""
    with built_apps(
        app_env="test",
        database_url=running_postgres.url(DATABASE),
        redis_url=running_redis.url(),
        breaker_reset_timeout=1.0,
    ) as build:
        yield build


@pytest.fixture
def statements() -> Callable[[APIFlask], list[str]]:
    """`statements(app)`: a list that receives every SQL statement the app's engine executes from now on."""
    from sqlalchemy import event

    def record(app: APIFlask) -> list[str]:
        seen: list[str] = []
        with app.app_context():
            engine = db.engine

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", before)
        return seen

    return record


@pytest.fixture
def server_factory(
    running_postgres: EmbeddedPostgres, running_redis: EmbeddedRedis, tmp_path: Path
) -> Iterator[Callable[..., GunicornServer]]:
    """Start real gunicorn servers on the test's services; `server_factory(workers=2, **env)`; stopped after."""
    started: list[GunicornServer] = []

    def start(workers: int = 2, **env: str) -> GunicornServer:
        base = {
            "DATABASE_URL": running_postgres.url(DATABASE),
            "REDIS_URL": running_redis.url(),
            "CHAOS_ENABLED": "true",
            "LOG_LEVEL": "WARNING",
            "OTEL_SDK_DISABLED": "true",
            "SHUTDOWN_DRAIN_DELAY": "0.5",
            "GUNICORN_THREADS": "16",
        }
        server = GunicornServer({**base, **env}, tmp_path, workers=workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()

"""SQAL fixtures: a fresh device, gunicorn servers (ingest, reads), apps with the read routes, and apps on databases
of their own (TimescaleDB, plain PostgreSQL) for the aggregates and the data lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from backend import create_app
from backend.base.config import Settings
from backend.extensions import cache, db
from scripts import timescale
from scripts.services import TestServices, create_database, drop_database, with_database
from tests.conftest import truncate_all
from tests.sqal.helpers import WS_PATH, make_device, start_server
from tests.support.server import GunicornServer, session_server


@pytest.fixture
def device(app: APIFlask) -> tuple[str, str]:
    """A fresh enabled device: (device_id, token)."""
    return make_device(app)


@pytest.fixture(scope="module")
def sqal_server(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """WebSocket URL of a gunicorn shared by a test module (tests use their own devices, so no truncation)."""
    server = start_server(services, tmp_path_factory.mktemp("gunicorn"))
    try:
        yield f"ws://127.0.0.1:{server.port}{WS_PATH}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reads_app(app: APIFlask, settings: Settings) -> APIFlask:
    """An app of its own (the session app may already have served requests); the factory registers the reads."""
    return create_app(settings)


@pytest.fixture
def reads_client(reads_app: APIFlask) -> Iterator[FlaskClient]:
    """Test client on emptied tables and an empty dashboard cache."""
    truncate_all(reads_app)
    cache.clear(reads_app)
    with reads_app.test_client() as client:
        yield client


def start_reads_server(services: TestServices, log_dir: Path, port: int | None = None) -> GunicornServer:
    """The real gunicorn (2 workers) serving the read routes on the session database."""
    env = {"WS_DEVICE_RATE_LIMIT": "100000/minute", "SHUTDOWN_TIMEOUT": "10"}
    return session_server(services, log_dir, port=port, rate_limits=True, **env).start()


@pytest.fixture
def reads_server(reads_app: APIFlask, services: TestServices, tmp_path: Path) -> Iterator[GunicornServer]:
    """The real gunicorn (2 workers) serving the read routes, on emptied tables."""
    truncate_all(reads_app)
    cache.clear(reads_app)
    server = start_reads_server(services, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def app_on_new_database(server_url: str, redis_url: str, **overrides: Any) -> Iterator[APIFlask]:
    """An app migrated to head on a new database of `server_url`, dropped afterwards."""
    name = f"sqal_lifecycle_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name)
    settings = Settings.from_env(
        {},
        app_env="test",
        database_url=with_database(server_url, name),
        redis_url=redis_url,
        rate_limit_enabled=False,
        **overrides,
    )
    application = create_app(settings)
    with application.app_context():
        upgrade()
    try:
        yield application
    finally:
        with application.app_context():
            db.engine.dispose()
        drop_database(server_url, name)


def is_hypertable(application: APIFlask) -> bool:
    with application.app_context():
        found = (
            db.session.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar() is not None
            and db.session.execute(
                text("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'sensor_samples'")
            ).scalar()
            is not None
        )
        db.session.remove()
        return found


@pytest.fixture(scope="module")
def timescale_server(timescale_clusters: Callable[[str], timescale.TimescalePostgres]) -> str:
    return timescale_clusters(timescale.NEWEST_VERSION).url("postgres")


@pytest.fixture
def timescale_app(timescale_server: str, services: TestServices) -> Iterator[APIFlask]:
    """An app on a fresh TimescaleDB database (hypertable, continuous aggregates)."""
    yield from app_on_new_database(timescale_server, services.redis_url)


@pytest.fixture
def plain_app(services: TestServices) -> Iterator[APIFlask]:
    """An app on a fresh plain PostgreSQL database (skips when the session itself runs on TimescaleDB)."""
    for application in app_on_new_database(services.server_url, services.redis_url):
        if is_hypertable(application):
            pytest.skip(
                "this session runs on TimescaleDB (SQAL_TEST_TIMESCALEDB): the plain path runs in the plain one"
            )
        yield application

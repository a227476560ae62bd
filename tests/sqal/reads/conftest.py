"""Read-side fixtures: an app with the read routes, a client on emptied tables, a gunicorn serving them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from backend import create_app
from backend.base.config import Settings
from backend.core import cache
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.support.server import GunicornServer


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


def start_reads_server(
    settings: Settings, services: TestServices, log_dir: Path, port: int | None = None
) -> GunicornServer:
    """The real gunicorn (2 workers) serving the read routes on the session database."""
    env = {
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "WS_DEVICE_RATE_LIMIT": "100000/minute",
        "SHUTDOWN_TIMEOUT": "10",
        "SHUTDOWN_DRAIN_DELAY": "0",
    }
    del settings
    return GunicornServer(env, log_dir, workers=2, port=port).start()


@pytest.fixture
def reads_server(
    reads_app: APIFlask, settings: Settings, services: TestServices, tmp_path: Path
) -> Iterator[GunicornServer]:
    """The real gunicorn (2 workers) serving the read routes, on emptied tables."""
    truncate_all(reads_app)
    cache.clear(reads_app)
    server = start_reads_server(settings, services, tmp_path)
    try:
        yield server
    finally:
        server.stop()

"""Health probes against a PostgreSQL this test owns: stop it → 503 within 2 s; start it → 200, no restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from flask_migrate import upgrade

from backend import create_app
from backend.base.config import Settings
from scripts.devservices import EmbeddedPostgres, free_port


def test_health_has_the_reference_shape(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert {"status", "service", "database", "timestamp"} <= set(body)  # the reference shape, plus auth
    assert (body["status"], body["service"], body["database"]) == ("UP", "backend", "connected")


def test_live_ready_and_startup_when_migrated(client: FlaskClient) -> None:
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["database"]["status"] == "up"
    assert ready.get_json()["checks"]["migrations"]["status"] == "up"
    assert client.get("/health/startup").status_code == 200


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def test_database_outage_and_recovery(own_postgres: EmbeddedPostgres) -> None:
    own_postgres.create_database("health")
    app = create_app(Settings.from_env({}, database_url=own_postgres.url("health"), app_env="test"))
    with app.test_client() as client:
        assert client.get("/health/startup").status_code == 503  # not migrated yet
        with app.app_context():
            upgrade()
        assert client.get("/health").status_code == 200

        own_postgres.stop()
        started = time.perf_counter()
        response = client.get("/health")
        elapsed = time.perf_counter() - started
        assert response.status_code == 503
        assert response.get_json()["status"] == "DOWN"
        assert response.get_json()["database"] == "disconnected"
        assert elapsed < 2.0
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200

        own_postgres.start()
        assert client.get("/health").status_code == 200
        assert client.get("/health/ready").status_code == 200

"""Two concurrent registrations of one device id — the admin API and `flask sqal create-device` — answer 409 and a
clean CLI error, never 500 or a traceback: both miss the row, and the later insert meets the primary key.

The race is made deterministic: a third session inserts the id without committing, so both the API (real
gunicorn) and the CLI (its own process) pass their existence check and wait on the primary key; the third session
then commits and both inserts fail.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from apiflask import APIFlask

from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from tests.conftest import make_key, truncate_all
from tests.support.server import GunicornServer, session_server

pytestmark = [pytest.mark.gunicorn]

FLASK = Path(sys.executable).with_name("flask")
DEVICE = "ESP32_RACE_01"


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _waiting_on_locks(dsn: str, database: str) -> int:
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (database,)
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


@pytest.fixture
def server(app: APIFlask, services: TestServices, tmp_path: Path) -> Iterator[GunicornServer]:
    truncate_all(app)
    with session_server(services, tmp_path, workers=1, AUTH_MODE="apikey") as running:
        yield running


def test_concurrent_registrations_of_one_id_conflict(
    app: APIFlask, server: GunicornServer, services: TestServices
) -> None:
    _, key = make_key(app, "devices:admin")
    dsn = _dsn(services.database_url)
    database = dsn.rsplit("/", 1)[1].split("?")[0]
    holder = psycopg2.connect(dsn)
    replies: dict[str, Any] = {}
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                "INSERT INTO devices (device_id, token_hash, profile, enabled) VALUES (%s, %s, 'race', TRUE)",
                (DEVICE, "0" * 64),
            )

        def post() -> None:
            replies["api"] = requests.post(
                server.url("/api/sqal/devices"), json={"device_id": DEVICE}, headers={"X-API-Key": key}, timeout=30
            )

        api = threading.Thread(target=post)
        api.start()
        cli = subprocess.Popen(
            [str(FLASK), "--app", "backend", "sqal", "create-device", DEVICE],
            cwd=REPO_ROOT,
            env={**server.env, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while _waiting_on_locks(dsn, database) < 2:
            assert time.monotonic() < deadline, "the API and the CLI never both waited on the id"
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        holder.commit()
        api.join(30)
        out, err = cli.communicate(timeout=30)
    finally:
        holder.rollback()
        holder.close()
    response = replies["api"]
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "conflict"
    assert response.json()["error"]["details"] == {"device_id": DEVICE}
    assert cli.returncode == 1
    assert "Traceback" not in err, err
    assert f"Device {DEVICE} already exists" in err
    assert out == ""  # no token printed: none was issued
    assert '"status": 500' not in server.stdout()

"""A migration of `sensor_samples` (0006 down and up) while a device streams samples over the real gunicorn
WebSocket, with a long reader holding a lock on the table: the migration gives up waiting after its lock timeout and
retries (docs/migrations.md) instead of queueing ingestion behind it; no frame is lost or refused.

Runs on the session's server: plain PostgreSQL by default, TimescaleDB in `make pytest-timescaledb`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from apiflask import APIFlask
from flask_migrate import upgrade
from sqlalchemy import text
from websockets.sync.client import connect

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices, create_database, drop_database
from tests.sqal.helpers import WS_PATH, make_device, sample_frame, start_server

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

LOCK_TIMEOUT_MS = 300
LOCK_HELD_S = 1.5


@pytest.fixture
def private_services(services: TestServices) -> Iterator[TestServices]:
    """The session's servers with a database of this test's own (its schema goes down and up)."""
    name = f"sqal_live_migration_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    try:
        yield TestServices(services.server_url, services.redis_url, name)
    finally:
        drop_database(services.server_url, name)


@pytest.fixture
def migrated_app(private_services: TestServices) -> Iterator[APIFlask]:
    app = create_app(Settings.from_env({}, database_url=private_services.database_url, app_env="test"))
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class Streamer(threading.Thread):
    """Sends `sensor_data` frames one after the other on one socket, each waiting for its reply."""

    def __init__(self, url: str, device_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.device_id, self.token = url, device_id, token
        self.replies: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(
                self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None, open_timeout=10
            ) as socket:
                seq = 0
                while not self.stop.is_set():
                    seq += 1
                    socket.send(json.dumps(sample_frame(self.device_id, seq)))
                    self.replies.append((time.monotonic(), json.loads(socket.recv(timeout=30))))
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def acks_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in self.replies if start <= at <= end)


def flask_db(services: TestServices, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app backend db ARGS` as the Kubernetes Job runs it, with a short lock timeout."""
    env = {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "APP_ENV": "test",
        "OTEL_SDK_DISABLED": "true",
        "DB_MIGRATION_LOCK_TIMEOUT_MS": str(LOCK_TIMEOUT_MS),
    }
    flask = [sys.executable, "-m", "flask", "--app", "backend", "db", *args]
    return subprocess.run(flask, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)


def hold_table_lock(database_url: str, seconds: float) -> threading.Thread:
    """A long reader (a report, pg_dump) holding ACCESS SHARE on sensor_samples, ALTER TABLE's conflict, until
    `seconds` after the migration has connected (env.py names its connection `sqal-migrations`)."""
    locked = threading.Event()
    dsn = database_url.replace("postgresql+psycopg2://", "postgresql://", 1)

    def hold() -> None:
        conn, watcher = psycopg2.connect(dsn), psycopg2.connect(dsn)
        watcher.autocommit = True
        try:
            with conn.cursor() as cursor, watcher.cursor() as watch:
                cursor.execute("LOCK TABLE sensor_samples IN ACCESS SHARE MODE")
                locked.set()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    watch.execute(
                        "SELECT 1 FROM pg_stat_activity "
                        "WHERE application_name = 'sqal-migrations' AND datname = current_database()"
                    )
                    if watch.fetchone():
                        break
                    time.sleep(0.02)
                time.sleep(seconds)
            conn.commit()
        finally:
            conn.close()
            watcher.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def test_migration_under_streaming_ingestion_loses_and_refuses_nothing(
    migrated_app: APIFlask, private_services: TestServices, tmp_path: Path
) -> None:
    device_id, token = make_device(migrated_app)
    server = start_server(private_services, tmp_path)
    streamer = Streamer(f"ws://127.0.0.1:{server.port}{WS_PATH}", device_id, token)
    try:
        streamer.start()
        time.sleep(1)  # streaming before the migration starts
        started = time.monotonic()
        holder = hold_table_lock(private_services.database_url, LOCK_HELD_S)
        down = flask_db(private_services, "downgrade", "0005_sqal_reads")
        holder.join()
        up = flask_db(private_services, "upgrade")
        finished = time.monotonic()
        time.sleep(1)  # and after it
        streamer.stop.set()
        streamer.join(timeout=40)
    finally:
        server.stop()

    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    assert "migration lock timeout (attempt 1 of" in down.stdout + down.stderr, "the reader's lock made it retry"
    assert streamer.failure is None, repr(streamer.failure)
    refused = [reply for _, reply in streamer.replies if reply.get("type") != "ack" or reply.get("status") != "stored"]
    assert refused == []
    assert streamer.acks_between(started, finished) > 0, "samples were stored while the migration ran"
    with migrated_app.app_context():
        stored = db.session.execute(
            text("SELECT count(*) FROM sensor_samples WHERE device_id = :d"), {"d": device_id}
        ).scalar()
        db.session.remove()
    assert stored == len(streamer.replies) > 0

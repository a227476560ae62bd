"""Costly public reads: a query PostgreSQL cancels at the statement timeout answers 503 with Retry-After (the
database is busy, the client may retry), never 500; and the reads that could cost a whole-table scan are bounded.

The cancelled query is made deterministic without a large table: another session holds a lock the read must wait
for, and the server's DB_STATEMENT_TIMEOUT_MS (300 ms here) cancels the wait, as it cancels any statement. How
long the widest reads take on 1M samples is measured in bench/costly_reads.py (never timed here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
import requests
from apiflask import APIFlask

from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.support.server import GunicornServer, session_server

pytestmark = [pytest.mark.gunicorn]

STATEMENT_TIMEOUT_MS = 300


@contextmanager
def table_locked(database_url: str, table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table` from another session: every read of it waits."""
    connection = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


@pytest.fixture
def impatient_server(app: APIFlask, services: TestServices, tmp_path: Path) -> Iterator[GunicornServer]:
    """The real gunicorn with a short statement timeout and no read cache."""
    truncate_all(app)
    env = {"CACHE_ENABLED": "false", "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)}
    with session_server(services, tmp_path, workers=1, **env) as server:
        yield server


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("sensor_samples", "/api/sqal/samples?min_score=0.5"),
        ("sensor_samples", "/api/sqal/stats/timeseries?bucket=1d"),
        ("products", "/products"),
        ("bug_reports", "/api/bugs/"),
    ],
)
def test_statement_timeout_is_503_with_retry_after(
    impatient_server: GunicornServer, services: TestServices, table: str, path: str
) -> None:
    assert requests.get(impatient_server.url(path), timeout=10).status_code == 200
    with table_locked(services.database_url, table):
        response = requests.get(impatient_server.url(path), timeout=10)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "query_timeout"
    assert error["details"] == {"retry_after": int(response.headers["Retry-After"])}
    # The connection went back to the pool in a usable state: the next request is answered.
    assert requests.get(impatient_server.url(path), timeout=10).status_code == 200
    impatient_server.stop()
    logged = impatient_server.stdout()
    assert '"event": "query_timeout"' in logged
    assert '"event": "unhandled_exception"' not in logged

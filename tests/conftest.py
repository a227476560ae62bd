"""Session fixtures: a private PostgreSQL database migrated to head, Redis, the app and its client."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from backend import create_app
from backend.base.config import Settings
from backend.core import auth, idempotency
from backend.extensions import cache, db
from scripts import timescale
from scripts.services import TestServices, session_services
from tests.support.server import GunicornServer, session_env

pytest_plugins = ["tests.support.browser"]  # the `browser` fixture (headless Chromium)
# What the session ran on TimescaleDB, printed in the terminal summary (CI's log shows the hypertable path ran).
_timescale_started: set[str] = set()
_timescale_passed: list[str] = []


@pytest.fixture(scope="session")
def services() -> Iterator[TestServices]:
    with session_services() as found:
        yield found


@pytest.fixture(scope="session")
def timescale_clusters() -> Iterator[Callable[[str], timescale.TimescalePostgres]]:
    """`start(version)`: a running TimescaleDB cluster of that version, one per session, stopped at its end.

    Without the build the test skips with one line saying how to build it; in CI (`CI=true`) it fails instead.
    """
    clusters: dict[str, timescale.TimescalePostgres] = {}

    def start(version: str) -> timescale.TimescalePostgres:
        reason = timescale.missing_reason(version)
        if reason:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true and {reason}")
            pytest.skip(reason)
        if version not in clusters:
            data_dir = timescale.REPO_ROOT / ".local" / "test" / f"timescaledb-{version}-{os.getpid()}"
            cluster = timescale.TimescalePostgres(version, data_dir, timescale.free_port())
            cluster.start()
            clusters[version] = cluster
            _timescale_started.add(version)
        return clusters[version]

    yield start
    for cluster in clusters.values():
        cluster.stop(mode="immediate")
        shutil.rmtree(cluster.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(services: TestServices) -> Settings:
    return Settings.from_env(
        {name: os.environ[name] for name in ("FAST_PATHS",) if name in os.environ},  # `make test`'s stock-path run
        app_env="test",
        database_url=services.database_url,
        redis_url=services.redis_url,
        chaos_enabled=True,
        # Rate limits are tested on purpose in tests/core; elsewhere they would only make tests flaky.
        rate_limit_enabled=False,
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[APIFlask]:
    application = create_app(settings)
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


@contextmanager
def built_apps(**base: Any) -> Iterator[Callable[..., APIFlask]]:
    """`build(**overrides)` creates an app from the settings `base` with `overrides`; every engine built is disposed
    on exit (the factory behind the `make_app` fixtures)."""
    made: list[APIFlask] = []

    def build(**overrides: Any) -> APIFlask:
        built = create_app(Settings.from_env({}, **{**base, **overrides}))
        made.append(built)
        return built

    try:
        yield build
    finally:
        for built in made:
            with built.app_context():
                db.engine.dispose()


def truncate_all(application: APIFlask) -> None:
    """Empty every application table (identities restarted) so tests never see each other's rows."""
    with application.app_context():
        tables = [t.name for t in db.metadata.sorted_tables]
        if tables:
            db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            db.session.commit()
        # Truncation bypasses the cache invalidation that writes do, and ids restart: start from an empty cache.
        cache.clear(application)
        idempotency.clear(application)  # stored responses name rows that no longer exist
        db.session.remove()


@pytest.fixture
def secured_app(settings: Settings, app: APIFlask) -> Iterator[APIFlask]:
    """An app in AUTH_MODE=apikey on the (migrated, emptied) session database."""
    truncate_all(app)
    secured = create_app(Settings.from_env({}, database_url=settings.database_url, app_env="test", auth_mode="apikey"))
    yield secured
    with secured.app_context():
        db.engine.dispose()


def make_key(application: APIFlask, *scopes: str) -> tuple[int, str]:
    """Create an API key with `scopes`: (id, plaintext key)."""
    with application.app_context():
        row, key = auth.create_key("test", list(scopes))
        return row.id, key


@pytest.fixture
def client(app: APIFlask) -> Iterator[FlaskClient]:
    truncate_all(app)
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def server_env(services: TestServices) -> dict[str, str]:
    """Environment for a gunicorn subprocess sharing the session database."""
    return session_env(services, CHAOS_ENABLED="true")


@pytest.fixture
def gunicorn(app: APIFlask, server_env: dict[str, str], tmp_path: Path) -> Iterator[GunicornServer]:
    """The real gunicorn with 2 workers on a free port, on an emptied session database."""
    truncate_all(app)
    server = GunicornServer(server_env, tmp_path, workers=2).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "timescale_clusters" in getattr(report, "fixturenames", ()):
        _timescale_passed.append(report.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    outcome.get_result().fixturenames = tuple(getattr(item, "fixturenames", ()))  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    whole_session = os.environ.get("SQAL_TEST_TIMESCALEDB")
    if whole_session:
        terminalreporter.write_line(f"timescaledb: this whole session ran on TimescaleDB {whole_session}")
    elif _timescale_started:
        versions = ", ".join(sorted(_timescale_started))
        terminalreporter.write_line(f"timescaledb: {len(_timescale_passed)} tests passed on clusters of {versions}")

"""Lifecycle fixtures: an app on a TimescaleDB (newest) database of its own, one on plain PostgreSQL, sample data."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from flask_migrate import upgrade
from sqlalchemy import text

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from scripts import timescale
from scripts.services import TestServices, create_database, drop_database, with_database
from tests.sqal_reads.conftest import reads_app, reads_client  # noqa: F401  (fixtures)
from tests.sqal_reads.rows import device_row, sample_row

NOW = datetime(2026, 3, 12, 15, 42, 17, 250000, tzinfo=UTC)
DEVICES = ("LINE_A", "LINE_B", "LINE_C")
DEFECT_SETS = ([], [], ["blood_spot"], ["dark_spots", "oxidation"], ["low_volume"], ["blood_spot", "dark_spots"])


def make_app(server_url: str, redis_url: str, **overrides: Any) -> Iterator[APIFlask]:
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
    yield from make_app(timescale_server, services.redis_url)


@pytest.fixture
def plain_app(services: TestServices) -> Iterator[APIFlask]:
    """An app on a fresh plain PostgreSQL database (skips when the session itself runs on TimescaleDB)."""
    for application in make_app(services.server_url, services.redis_url):
        if is_hypertable(application):
            pytest.skip(
                "this session runs on TimescaleDB (SQAL_TEST_TIMESCALEDB): the plain path runs in the plain one"
            )
        yield application


def sample_data(count: int = 3000, days: float = 3.0, seed: int = 20) -> list[dict[str, Any]]:
    """`count` samples before NOW (sub-second timestamps, a few after NOW), mixed grades: half over `days`, half
    over the last three hours (so that every minute near the ranges' edges holds samples)."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        span = days * 86400 if index % 2 else min(days * 86400, 3 * 3600)
        moment = NOW - timedelta(seconds=generator.uniform(-600, span))
        grade = generator.choices(("A", "B", "C", "REJECT"), weights=(55, 25, 12, 8))[0]
        rows.append(
            sample_row(
                generator.choice(DEVICES),
                moment,
                grade=grade,
                score=round(generator.random(), 6),
                defects=list(generator.choice(DEFECT_SETS)),
                sample_id=f"S-{index}",
                seq=index,
            )
        )
    return rows


def devices() -> list[dict[str, Any]]:
    return [device_row(device, last_seen_at=NOW - timedelta(seconds=3)) for device in DEVICES]

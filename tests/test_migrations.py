"""Alembic is the only way the schema is made: one head, up/down/up cycles, models match migrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from apiflask import APIFlask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from backend import create_app
from backend.base.config import Settings
from backend.core import database
from backend.extensions import db
from scripts.services import TestServices, create_database, drop_database, with_database


@pytest.fixture
def empty_app(services: TestServices) -> Iterator[APIFlask]:
    name = f"sqal_migrations_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    app = create_app(Settings.from_env({}, database_url=with_database(services.server_url, name), app_env="test"))
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()
        drop_database(services.server_url, name)


def test_there_is_a_single_head() -> None:
    assert len(database.head_revisions()) == 1


def test_upgrade_downgrade_upgrade_and_models_match(empty_app: APIFlask) -> None:
    with empty_app.app_context():
        assert database.current_revisions(db.engine) == set()
        upgrade()
        assert database.current_revisions(db.engine) == database.head_revisions()
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}

        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} <= tables

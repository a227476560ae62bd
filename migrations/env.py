"""Alembic environment: runs inside the Flask app context that Flask-Migrate provides.

Migrations run on a connection of their own, not the app's pool (docs/migrations.md):
- no `statement_timeout` (the app's DB_STATEMENT_TIMEOUT_MS would kill a long index build or backfill);
- `lock_timeout` DB_MIGRATION_LOCK_TIMEOUT_MS: a migration waiting for a lock behind a long transaction would queue
  every ingestion insert behind itself; it gives up instead, and the run is retried up to DB_MIGRATION_LOCK_RETRIES
  times (with backoff). Each migration commits by itself, so a retry resumes at the one that timed out.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import context
from flask import current_app
from psycopg2 import errors as pg_errors
from sqlalchemy.pool import NullPool

# Revision scripts import shared helpers as `migrations.hypertables`.
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

config = context.config
target_metadata = current_app.extensions["migrate"].db.metadata
logger = logging.getLogger("alembic.runtime.migration")
RETRY_BACKOFF_S = (1, 2, 4, 8)


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`flask db upgrade --sql`)."""
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def migration_engine() -> sa.Engine:
    """An engine for this run only: the app's URL and connect options, no statement timeout, a lock timeout."""
    settings = current_app.config["SETTINGS"]
    app_engine = current_app.extensions["migrate"].db.engine
    options = (
        f"-c timezone=UTC -c statement_timeout=0 -c lock_timeout={settings.db_migration_lock_timeout_ms} "
        "-c application_name=sqal-migrations"
    )
    return sa.create_engine(
        app_engine.url,
        poolclass=NullPool,
        connect_args={"connect_timeout": settings.db_connect_timeout, "options": options},
    )


def is_lock_timeout(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc.orig, pg_errors.LockNotAvailable)


def run_migrations_online() -> None:
    """Migrate over a live connection, one transaction per migration; retried on lock timeouts."""
    retries = current_app.config["SETTINGS"].db_migration_lock_retries
    engine = migration_engine()
    try:
        for attempt in range(retries + 1):
            try:
                with engine.connect() as connection:
                    context.configure(
                        connection=connection,
                        target_metadata=target_metadata,
                        compare_type=True,
                        transaction_per_migration=True,
                    )
                    with context.begin_transaction():
                        context.run_migrations()
                return
            except sa.exc.DBAPIError as exc:
                if not is_lock_timeout(exc) or attempt == retries:
                    raise
                pause = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                logger.warning(
                    "migration lock timeout (attempt %d of %d), retrying in %d s: %s",
                    attempt + 1,
                    retries + 1,
                    pause,
                    str(exc.orig).strip(),
                )
                time.sleep(pause)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Database engine options, the checks the health probes use, `get_or_404` and `rollback_on`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm.interfaces import ORMOption

from backend.base.config import Settings
from backend.base.errors import NotFound
from backend.extensions import db

M = TypeVar("M")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def engine_options(settings: Settings) -> dict[str, Any]:
    """SQLAlchemy engine options: bounded pool, pre-ping, and timeouts so a dead DB fails fast."""
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_recycle": settings.db_pool_recycle,
        "pool_timeout": settings.db_pool_timeout,
        "pool_pre_ping": True,
        "connect_args": {
            "connect_timeout": settings.db_connect_timeout,
            "application_name": settings.service_name,
            # Timestamps without a zone (now(), date_trunc) are UTC whatever the server's default is.
            "options": "-c timezone=UTC",
        },
    }
    if settings.db_statement_timeout_ms:
        options["connect_args"]["options"] += f" -c statement_timeout={settings.db_statement_timeout_ms}"
    return options


def head_revisions() -> set[str]:
    """The Alembic head revision(s) of the code on disk."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return set(ScriptDirectory.from_config(config).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """Revisions recorded in the database (empty before the first migration)."""
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        if not exists:
            return set()
        return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


def ping(engine: Engine, timeout_ms: int = 1500) -> float:
    """Run `SELECT 1` with a short statement timeout; return the latency in ms or raise."""
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
        connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


def get_or_404(
    model: type[M],
    key: Any,
    what: str,
    *,
    field: str = "id",
    for_update: bool = False,
    options: Sequence[ORMOption] = (),
) -> M:
    """The `model` row with primary key `key`, or NotFound("<what> <key> not found", {field: key}).

    `for_update` locks the row (`SELECT ... FOR UPDATE`) and reloads it even when the session already holds it;
    `options` are loader options (e.g. `selectinload`).
    """
    row = db.session.get(
        model, key, options=list(options) or None, with_for_update=for_update or None, populate_existing=for_update
    )
    if row is None:
        raise not_found(what, key, field)
    return row


@contextmanager
def rollback_on(*errors: type[BaseException]) -> Iterator[None]:
    """Roll back when one of `errors` escapes, then let it go on: the row locks taken by `get_or_404(...,
    for_update=True)` are released now rather than at teardown, and nothing of the update is written."""
    try:
        yield
    except errors:
        db.session.rollback()
        raise


def not_found(what: str, key: Any, field: str = "id") -> NotFound:
    """The NotFound `get_or_404` raises, for a read that does not go through the session."""
    return NotFound(f"{what} {key} not found", {field: key})

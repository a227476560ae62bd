"""Migrate the database to head, then seed the sample data. Idempotent: safe to run on every start.

Reads `.flaskenv` / `.env` as `flask` does; without DATABASE_URL, in development, it uses the database `make run`
is running for this checkout."""

from __future__ import annotations

import sys

from flask.cli import load_dotenv
from flask.helpers import get_load_dotenv
from flask_migrate import upgrade

from backend import create_app
from backend.base.config import ConfigError
from backend.core.cli import progress
from backend.extensions import seeders


def main() -> int:
    """Run migrations and seeds inside an app context."""
    load_dotenv(load_defaults=get_load_dotenv())
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"init_db: {exc}", file=sys.stderr)
        return 2
    with app.app_context():
        upgrade()
        for seed in progress(seeders.of(app), "seeding"):
            seed()
    return 0


if __name__ == "__main__":
    sys.exit(main())

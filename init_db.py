"""Migrate the database to head, then seed the sample data. Idempotent: safe to run on every start."""

from __future__ import annotations

import sys

from flask_migrate import upgrade

from backend import create_app
from backend.core.config import ConfigError


def main() -> int:
    """Run migrations and seeds inside an app context."""
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"init_db: {exc}", file=sys.stderr)
        return 2
    with app.app_context():
        upgrade()
        for seed in app.extensions.get("seeders", []):
            seed()
    return 0


if __name__ == "__main__":
    sys.exit(main())

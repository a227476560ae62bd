"""Write the docker compose secrets: `python3 scripts/compose_secrets.py [DIRECTORY]` (default: secrets/).

- `postgres_password`: a random password (TimescaleDB reads it through POSTGRES_PASSWORD_FILE);
- `database_url`: the backend's URL built from it, POSTGRES_USER and POSTGRES_DB (read through DATABASE_URL_FILE).

A file that exists is kept: the database volume already holds that password, a new one would lock the backend out.
The directory is private to its owner; the files are world-readable inside it so the containers' users (not root)
can read their bind-mounted copy. Standard library only: runs without the project's virtualenv.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "secrets"


def database_url(password: str, user: str, database: str) -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@timescaledb:5432/{quote(database, safe='')}"


def write(directory: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Create the missing secret files in `directory`; return the names written."""
    env = dict(os.environ if environ is None else environ)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    password_file = directory / "postgres_password"
    if not password_file.exists():
        _write(password_file, secrets.token_urlsafe(24))
        written.append(password_file.name)
    password = password_file.read_text().rstrip("\r\n")
    url_file = directory / "database_url"
    if not url_file.exists():
        _write(url_file, database_url(password, env.get("POSTGRES_USER") or "sqal", env.get("POSTGRES_DB") or "sqal"))
        written.append(url_file.name)
    return written


def _write(path: Path, value: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIRECTORY
    created = write(target)
    print(f"{target}: " + (f"wrote {', '.join(created)}" if created else "every secret already exists, kept"))

"""The compose `backend-init` command, run for real on an empty database: migrate, seed, provision the simulator.

The database is compose's: TimescaleDB at the image's version (a throwaway cluster of `scripts/timescale.py`; the
image runs it on PostgreSQL 16, the tests on 15), so the hypertable path runs, as `docker compose up` runs it.
Compose re-runs it on every `docker compose up`, so it must also be idempotent (same tokens, same seed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from scripts import timescale
from scripts.services import TestServices, create_database, drop_database, with_database
from simulator.cli import read_token_file
from tests.stack.stackfiles import REPO, compose_services, image_environment, with_defaults

CONTAINER_TOKEN_FILE = "/var/lib/sqal/tokens.json"


def compose_timescaledb_version() -> str:
    """The TimescaleDB version of compose's `timescaledb` image (`timescale/timescaledb:2.28.3-pg16`)."""
    image = with_defaults(compose_services()["timescaledb"]["image"])
    match = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+\.\d+)-pg\d+", image)
    assert match, image
    return match[1]


@pytest.fixture
def empty_database(timescale_clusters: Callable[[str], timescale.TimescalePostgres]) -> Iterator[str]:
    """A brand-new database on a TimescaleDB cluster of compose's version, dropped afterwards."""
    server_url = timescale_clusters(compose_timescaledb_version()).url("postgres")
    name = f"compose_init_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name)
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


def init_script(token_file: Path) -> str:
    """backend-init's shell script as compose would pass it (defaults interpolated), writing `token_file`."""
    init = compose_services()["backend-init"]
    assert init["entrypoint"] == ["sh", "-ec"]
    script = with_defaults(init["command"][0])
    assert CONTAINER_TOKEN_FILE in script
    assert "sqal-devices:/var/lib/sqal" in init["volumes"]
    assert "sqal-devices:/var/lib/sqal:ro" in compose_services()["simulator"]["volumes"]
    return script.replace(CONTAINER_TOKEN_FILE, str(token_file))


def init_environment(database_url: str, redis_url: str, secrets_dir: Path) -> dict[str, str]:
    """backend-init's environment (image ENV + compose) with this machine's PostgreSQL/Redis instead of compose's;
    the database URL is a secret file, as compose mounts it (`make secrets` writes the real one)."""
    env = image_environment("runtime", "backend")
    env.update(
        (key, with_defaults(str(value))) for key, value in compose_services()["backend-init"]["environment"].items()
    )
    assert env["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    (secrets_dir / "database_url").write_text(database_url + "\n")
    env.update(DATABASE_URL_FILE=str(secrets_dir / "database_url"), REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    # The image puts its virtualenv first on PATH; here, this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    inherited = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return {**inherited, **env, "PATH": path}


def scalar(database_url: str, query: str) -> Any:
    conn = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            row = cursor.fetchone()
    finally:
        conn.close()
    assert row is not None
    return row[0]


def product_count(database_url: str) -> int:
    return int(scalar(database_url, "SELECT count(*) FROM products"))


@pytest.mark.slow
def test_backend_init_prepares_an_empty_database_and_the_simulator(
    empty_database: str, services: TestServices, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens.json"
    script = init_script(token_file)
    env = init_environment(empty_database, services.redis_url, tmp_path)

    def run() -> None:
        result = subprocess.run(["sh", "-ec", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run()
    tokens = read_token_file(token_file)
    devices = int(with_defaults(compose_services()["simulator"]["environment"]["SIMULATOR_DEVICES"]))
    assert sorted(tokens) == [f"ESP32_LL_{n:02d}" for n in range(1, devices + 1)]
    assert all(re.fullmatch(r"\S{20,}", token) for token in tokens.values())
    assert product_count(empty_database) == 10
    hypertable = "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = "
    assert scalar(empty_database, hypertable + "'sensor_samples'") is True, "the production path: a hypertable"

    run()
    assert read_token_file(token_file) == tokens, "a second `compose up` must keep the devices' tokens"
    assert product_count(empty_database) == 10

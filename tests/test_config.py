"""Settings: defaults, parsing, and fail-fast errors that name the variable."""

from __future__ import annotations

import subprocess

import pytest

from backend.core.config import ConfigError, Settings
from scripts.devservices import REPO_ROOT
from tests.support.server import GUNICORN

URL = "postgresql://u@127.0.0.1:5432/db"


def test_defaults_match_the_reference() -> None:
    settings = Settings.from_env({"DATABASE_URL": URL})
    assert (settings.port, settings.db_pool_size, settings.db_max_overflow, settings.db_pool_recycle) == (
        8000,
        10,
        20,
        3600,
    )
    assert settings.web_concurrency == 4
    assert settings.slow_endpoint_delay == 5
    assert settings.database_url == "postgresql+psycopg2://u@127.0.0.1:5432/db"


def test_chaos_and_auth_defaults_follow_the_environment() -> None:
    dev = Settings.from_env({"DATABASE_URL": URL})
    prod = Settings.from_env({"DATABASE_URL": URL, "APP_ENV": "production"})
    assert (dev.chaos_enabled, dev.auth_mode) == (True, "off")
    assert (prod.chaos_enabled, prod.auth_mode) == (False, "apikey")
    forced = Settings.from_env({"DATABASE_URL": URL, "APP_ENV": "production", "CHAOS_ENABLED": "true"})
    assert forced.chaos_enabled is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DB_POOL_SIZE", "abc", "Invalid value for DB_POOL_SIZE: 'abc' (expected an integer)"),
        ("DB_POOL_SIZE", "0", "Invalid value for DB_POOL_SIZE: '0' (expected an integer >= 1)"),
        ("PORT", "70000", "Invalid value for PORT: '70000' (expected an integer <= 65535)"),
        ("SLOW_ENDPOINT_DELAY", "nan", "Invalid value for SLOW_ENDPOINT_DELAY: 'nan' (expected a finite number)"),
        ("CHAOS_ENABLED", "maybe", "Invalid value for CHAOS_ENABLED: 'maybe' (expected true or false)"),
        ("APP_ENV", "staging", "Invalid value for APP_ENV: 'staging' (expected one of development, production, test)"),
        ("RATE_LIMIT_READ", "lots", "Invalid value for RATE_LIMIT_READ: 'lots'"),
    ],
)
def test_bad_values_raise_one_line_naming_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": URL, name: value})
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(info.value)
    assert "DATABASE_URL" in str(info.value)


def test_missing_database_url_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="Missing DATABASE_URL"):
        Settings.from_env({})


def test_public_summary_hides_secrets() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u:hunter2@h/db", "REDIS_URL": "redis://:pw@h:1/0"})
    summary = settings.public_summary()
    assert summary["DATABASE_URL"] == "set"
    assert summary["REDIS_URL"] == "set"
    assert "hunter2" not in repr(summary)


def test_gunicorn_refuses_to_start_with_one_clear_line() -> None:
    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "--check-config"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": URL, "DB_POOL_SIZE": "abc"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["config error: Invalid value for DB_POOL_SIZE: 'abc' (expected an integer)"], result.stderr

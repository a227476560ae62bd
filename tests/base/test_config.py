"""Settings: defaults, parsing, and fail-fast errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.base.config import ConfigError, Settings, documented_variables
from tests.support.server import check_config

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
    result = check_config({"PATH": "/usr/bin:/bin", "DATABASE_URL": URL, "DB_POOL_SIZE": "abc"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["config error: Invalid value for DB_POOL_SIZE: 'abc' (expected an integer)"], result.stderr


SECRET_SETTINGS = ("DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "METRICS_TOKEN")


def test_every_secret_setting_has_a_file_form() -> None:
    secrets = {spec.metadata["env"] for spec in dataclasses.fields(Settings) if spec.metadata["secret"]}
    assert set(SECRET_SETTINGS) <= secrets
    documented = {name for name, _, _ in documented_variables()}
    assert {name + "_FILE" for name in secrets} <= documented


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    files = {
        "DATABASE_URL": "postgresql://app:s3cret@db:5432/sqal\n",  # a trailing newline, as `echo` writes it
        "REDIS_PASSWORD": "r3dis pass",
        "METRICS_TOKEN": "a-long-enough-operations-token",
    }
    environ = {"REDIS_HOST": "cache"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        environ[f"{name}_FILE"] = str(tmp_path / name)
    settings = Settings.from_env(environ)
    assert settings.database_url == "postgresql+psycopg2://app:s3cret@db:5432/sqal"
    assert settings.redis_url == "redis://:r3dis%20pass@cache:6379/0"
    assert settings.metrics_token == "a-long-enough-operations-token"
    (tmp_path / "url").write_text("redis://:pw@cache:6379/1")
    assert Settings.from_env({"DATABASE_URL": URL, "REDIS_URL_FILE": str(tmp_path / "url")}).redis_url.endswith("/1")


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(URL)
    with pytest.raises(ConfigError, match=r"^DATABASE_URL and DATABASE_URL_FILE are both set: keep one$"):
        Settings.from_env({"DATABASE_URL": URL, "DATABASE_URL_FILE": str(tmp_path / "url")})


def test_an_unreadable_secret_file_is_one_line_without_its_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        Settings.from_env({"DATABASE_URL_FILE": str(tmp_path / "absent")})
    assert str(missing.value) == f"Cannot read DATABASE_URL_FILE='{tmp_path / 'absent'}': No such file or directory"
    (tmp_path / "bad").write_text("mysql://root:hunter2@db/x")
    with pytest.raises(ConfigError) as invalid:
        Settings.from_env({"DATABASE_URL_FILE": str(tmp_path / "bad")})
    assert "hunter2" not in str(invalid.value)
    assert "\n" not in str(invalid.value)
    assert str(invalid.value).startswith("Invalid value for DATABASE_URL: <hidden>")


def test_gunicorn_reports_an_unreadable_secret_file_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL_FILE": str(tmp_path / "absent")}
    result = check_config(env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("config error: Cannot read DATABASE_URL_FILE=")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FORWARDED_ALLOW_IPS", "nginx", "is not an IP address or network"),
        ("FORWARDED_ALLOW_IPS", "*", "is not an IP address or network"),
        ("METRICS_TOKEN", "short", "at least 16 printable ASCII characters"),
        ("OPS_PORT", "8000", "OPS_PORT=8000 is also PORT"),
    ],
)
def test_edge_settings_are_checked(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"DATABASE_URL": URL, name: value})


def test_trusting_proxies_is_opt_in() -> None:
    default = Settings.from_env({"DATABASE_URL": URL})
    assert (default.forwarded_allow_ips, default.proxy_trusted_hops, default.ops_port) == ((), 1, None)
    trusted = Settings.from_env({"DATABASE_URL": URL, "FORWARDED_ALLOW_IPS": "10.0.0.1, 172.16.0.0/12"})
    assert trusted.forwarded_allow_ips == ("10.0.0.1/32", "172.16.0.0/12")

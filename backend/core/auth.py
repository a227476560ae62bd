"""API keys with scopes for mutating routes.

Keys are random tokens (see `backend.core.security`), stored as SHA-256 digests, sent as `Authorization: Bearer <key>`
or `X-API-Key: <key>`. With `AUTH_MODE=apikey` (the default in production) a route decorated with
`require_scope("orders:write")` answers 401 without a valid key and 403 when the key lacks the scope. With
`AUTH_MODE=off` (development default) the decorator lets every call through and startup logs a loud warning.
Keys are created and revoked with `flask keys create|revoke|list`; the key itself is printed once, never stored.

Scopes: `read` is built in; each domain declares its own with `register_scopes` when its package is imported,
so before its routes' decorators run (which refuse an undeclared scope) and before `flask keys create` parses.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from apiflask import APIFlask
from flask import current_app, g, request
from flask.cli import AppGroup
from sqlalchemy import ARRAY, DateTime, Integer, String, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from backend.base.errors import ApiError
from backend.core.cli import emit_json
from backend.core.security import DIGEST_LENGTH, generate_token, hash_token
from backend.extensions import db

logger = logging.getLogger(__name__)

READ_SCOPE = "read"
_scopes: list[str] = [READ_SCOPE]
KEY_PREFIX = "sqal_"
AUTH_OFF_WARNING = "AUTH_MODE=off: every mutating route is open to anyone. Never run like this in production."
SECURITY_SCHEMES = {
    "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "BearerAuth": {"type": "http", "scheme": "bearer"},
}
WRITE_SECURITY: list[str | dict[str, list[Any]]] = [{"ApiKeyAuth": []}, {"BearerAuth": []}]

CHALLENGE = 'Bearer realm="sqal"'
# The scope a view requires, set on the view by `require_scope` and read by the `authenticate_first` hook.
REQUIRED_SCOPE_ATTRIBUTE = "_required_scope"

F = TypeVar("F", bound=Callable[..., Any])

# `last_used_at` is written at most once per this many seconds per key, in its own short transaction that skips a
# row another request is writing: requests sharing a key never wait for each other on its row.
LAST_USED_RESOLUTION_SECONDS = 60
_TOUCH_SQL = text(
    """
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM api_keys
                WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :seconds))
                FOR UPDATE SKIP LOCKED)
    """
)
_last_touched: dict[int, float] = {}  # per process: key id -> monotonic time of the last write
_touch_lock = threading.Lock()
_EXPIRY_DELTA = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_EXPIRY_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class ApiKey(db.Model):  # type: ignore[name-defined]
    """A hashed API key and the scopes it grants."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(DIGEST_LENGTH), nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def register_scopes(*names: str) -> None:
    """Declare the scopes a domain's routes require (idempotent)."""
    for name in names:
        if name not in _scopes:
            _scopes.append(name)


def scopes() -> tuple[str, ...]:
    """Every declared scope, in declaration order."""
    return tuple(_scopes)


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """When a key given `--expires VALUE` expires: `30d`, `12h`, `90m` from now, or an ISO 8601 date or date-time
    (UTC when it has no zone). ValueError when malformed or not in the future."""
    now = now or datetime.now(UTC)
    spelled = value.strip()
    delta = _EXPIRY_DELTA.fullmatch(spelled)
    if delta:
        expires = now + timedelta(**{_EXPIRY_UNITS[delta.group(2)]: int(delta.group(1))})
    else:
        try:
            expires = datetime.fromisoformat(spelled)
        except ValueError:
            raise ValueError(f"{value!r} is neither a duration (30d, 12h, 90m) nor an ISO 8601 date") from None
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    if expires <= now:
        raise ValueError(f"{value!r} is not in the future")
    return expires


def create_key(name: str, granted: list[str], expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Store a new key (valid until `expires_at`, or forever); return the row and the plaintext key (shown once)."""
    unknown = sorted(set(granted) - set(_scopes))
    if unknown or not granted:
        raise ValueError(
            f"unknown or missing scopes: {', '.join(unknown) or '(none)'}; choose from {', '.join(_scopes)}"
        )
    key = generate_token(KEY_PREFIX)
    row = ApiKey(name=name, key_hash=hash_token(key), scopes=sorted(set(granted)), expires_at=expires_at)
    db.session.add(row)
    db.session.commit()
    return row, key


def revoke_key(key_id: int) -> bool:
    """Mark a key revoked; False when no active key has that id."""
    result = db.session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=func.now())
    )
    db.session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def find_active_key(key: str) -> ApiKey | None:
    """The active key row matching the plaintext key (digest lookup)."""
    return db.session.execute(
        select(ApiKey).where(ApiKey.key_hash == hash_token(key), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()


def presented_key() -> str | None:
    """The key sent with the request, from `Authorization: Bearer` or `X-API-Key`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    api_key = request.headers.get("X-API-Key", "").strip()
    if scheme.lower() == "bearer" and value.strip():
        if api_key and api_key != value.strip():
            # Two different credentials: refuse rather than silently pick one (a proxy may inject either).
            raise Unauthorized(
                "Authorization and X-API-Key carry different keys", headers={"WWW-Authenticate": CHALLENGE}
            )
        return value.strip()
    return api_key or None


def require_scope(scope: str) -> Callable[[F], F]:
    """Decorate a view so that, with AUTH_MODE=apikey, it needs a key granting `scope`.

    The key is checked by the app's `authenticate_first` hook, before any other hook reads the body; the view
    checks again only when that hook did not run (an app without `init_app`).
    """
    if scope not in _scopes:
        raise ValueError(f"unknown scope {scope!r} (declare it with register_scopes)")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_app.config["SETTINGS"].auth_mode == "apikey" and g.get("authorized_scope") != scope:
                g.api_key_id = _authorize(scope)
            return view(*args, **kwargs)

        setattr(wrapper, REQUIRED_SCOPE_ATTRIBUTE, scope)
        return wrapper  # type: ignore[return-value]

    return decorator


def authenticate_first() -> None:
    """before_request: the key of a `require_scope` view is checked before the body is read or parsed, so an
    anonymous client gets its 401 without making the server read, parse or validate up to MAX_CONTENT_LENGTH."""
    if request.endpoint is None or request.method == "OPTIONS":  # CORS preflights carry no credentials
        return
    view = current_app.view_functions.get(request.endpoint)
    scope = getattr(view, REQUIRED_SCOPE_ATTRIBUTE, None)
    if scope is not None and current_app.config["SETTINGS"].auth_mode == "apikey":
        g.api_key_id = _authorize(scope)
        g.authorized_scope = scope


def _authorize(scope: str) -> int:
    key = presented_key()
    challenge = {"WWW-Authenticate": CHALLENGE}
    if key is None:
        raise Unauthorized("An API key is required (Authorization: Bearer <key> or X-API-Key)", headers=challenge)
    row = find_active_key(key)
    if row is None:
        raise Unauthorized("Unknown or revoked API key", headers=challenge)
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        raise Unauthorized(
            "This API key has expired: create a new one",
            {"expired_at": row.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")},
            code="api_key_expired",
            headers=challenge,
        )
    if scope not in row.scopes:
        raise Forbidden(f"This API key lacks the {scope!r} scope", {"required_scope": scope, "key_id": row.id})
    touch_key(row.id)
    return row.id


def touch_key(key_id: int) -> None:
    """Record the key's use: at most once per LAST_USED_RESOLUTION_SECONDS per process, committed at once in its
    own connection, and skipped when another request holds the row (best effort: a failure is only logged)."""
    now = time.monotonic()
    with _touch_lock:
        if now - _last_touched.get(key_id, -math.inf) < LAST_USED_RESOLUTION_SECONDS:
            return
        _last_touched[key_id] = now
    try:
        with db.engine.begin() as connection:
            connection.execute(_TOUCH_SQL, {"id": key_id, "seconds": LAST_USED_RESOLUTION_SECONDS})
    except SQLAlchemyError as exc:
        logger.warning("could not record an API key's use", extra={"event": "api_key_touch_failed", "error": str(exc)})


def init_app(app: APIFlask) -> None:
    """Declare the security schemes, register `flask keys`, warn loudly when auth is off."""
    app.security_schemes = SECURITY_SCHEMES
    app.before_request(authenticate_first)  # before the request guards (registered later) read the body
    app.cli.add_command(keys_cli)
    if app.config["SETTINGS"].auth_mode == "off":
        logger.warning(
            AUTH_OFF_WARNING,
            extra={"event": "auth_disabled"},
        )


keys_cli = AppGroup("keys", help="Create, list and revoke API keys.")


class _ScopeChoice(click.Choice):
    """click.Choice over the scopes declared when the command parses (domains declare theirs at import)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return scopes()

    @choices.setter
    def choices(self, _value: object) -> None:
        pass  # the declared scopes are the only source


class _Expiry(click.ParamType):
    name = "expiry"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_expiry(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the key")
@click.option("--scope", "scopes", multiple=True, required=True, type=_ScopeChoice(), help="Repeatable")
@click.option("--expires", type=_Expiry(), default=None, help="30d, 12h, 90m or an ISO 8601 date (default: never)")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: id, name, scopes, expires_at, key.")
def create_command(name: str, scopes: tuple[str, ...], expires: datetime | None, as_json: bool) -> None:
    """Create a key and print it once: the key alone on stdout (KEY=$(flask … keys create …)), details on stderr."""
    row, key = create_key(name, list(scopes), expires)
    if as_json:
        fields = {"id": row.id, "name": row.name, "scopes": list(row.scopes), "expires_at": row.expires_at}
        emit_json({**fields, "key": key})
        return
    expiry = row.expires_at.isoformat() if row.expires_at else "never"
    click.echo(f"id={row.id} name={row.name} scopes={','.join(row.scopes)} expires={expiry}", err=True)
    click.echo(key)


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_command(key_id: int) -> None:
    """Revoke a key by id."""
    if not revoke_key(key_id):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked key {key_id}")


@keys_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object: {"keys": [...]}.')
def list_command(as_json: bool) -> None:
    """List keys (never the keys themselves)."""
    rows = list(db.session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())
    if as_json:
        fields = ("id", "name", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")
        emit_json({"keys": [{field: getattr(row, field) for field in fields} for row in rows]})
        return
    now = datetime.now(UTC)
    for row in rows:
        expired = row.expires_at is not None and row.expires_at <= now
        state = "revoked" if row.revoked_at else "expired" if expired else "active"
        expiry = f"expires {row.expires_at.isoformat()}" if row.expires_at else "never expires"
        used = f"last used {row.last_used_at or 'never'}"
        click.echo(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{state}\t{expiry}\t{used}")

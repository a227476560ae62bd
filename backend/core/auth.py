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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from apiflask import APIFlask
from flask import current_app, g, request
from flask.cli import AppGroup
from sqlalchemy import ARRAY, DateTime, Integer, String, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.cli import emit_json
from backend.core.errors import ApiError
from backend.core.security import generate_token, hash_token
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

F = TypeVar("F", bound=Callable[..., Any])


class ApiKey(db.Model):  # type: ignore[name-defined]
    """A hashed API key and the scopes it grants."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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


def create_key(name: str, granted: list[str]) -> tuple[ApiKey, str]:
    """Store a new key; return the row and the plaintext key (shown once)."""
    unknown = sorted(set(granted) - set(_scopes))
    if unknown or not granted:
        raise ValueError(
            f"unknown or missing scopes: {', '.join(unknown) or '(none)'}; choose from {', '.join(_scopes)}"
        )
    key = generate_token(KEY_PREFIX)
    row = ApiKey(name=name, key_hash=hash_token(key), scopes=sorted(set(granted)))
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
    """Decorate a view so that, with AUTH_MODE=apikey, it needs a key granting `scope`."""
    if scope not in _scopes:
        raise ValueError(f"unknown scope {scope!r} (declare it with register_scopes)")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_app.config["SETTINGS"].auth_mode == "apikey":
                g.api_key_id = _authorize(scope)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _authorize(scope: str) -> int:
    key = presented_key()
    challenge = {"WWW-Authenticate": CHALLENGE}
    if key is None:
        raise Unauthorized("An API key is required (Authorization: Bearer <key> or X-API-Key)", headers=challenge)
    row = find_active_key(key)
    if row is None:
        raise Unauthorized("Unknown or revoked API key", headers=challenge)
    if scope not in row.scopes:
        raise Forbidden(f"This API key lacks the {scope!r} scope", {"required_scope": scope, "key_id": row.id})
    db.session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=datetime.now(UTC)))
    return row.id


def init_app(app: APIFlask) -> None:
    """Declare the security schemes, register `flask keys`, warn loudly when auth is off."""
    app.security_schemes = SECURITY_SCHEMES
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


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the key")
@click.option("--scope", "scopes", multiple=True, required=True, type=_ScopeChoice(), help="Repeatable")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: id, name, scopes, key.")
def create_command(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key and print it once: the key alone on stdout (KEY=$(flask … keys create …)), details on stderr."""
    row, key = create_key(name, list(scopes))
    if as_json:
        emit_json({"id": row.id, "name": row.name, "scopes": list(row.scopes), "key": key})
        return
    click.echo(f"id={row.id} name={row.name} scopes={','.join(row.scopes)}", err=True)
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
        fields = ("id", "name", "scopes", "created_at", "last_used_at", "revoked_at")
        emit_json({"keys": [{field: getattr(row, field) for field in fields} for row in rows]})
        return
    for row in rows:
        state = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{state}\tlast used {row.last_used_at or 'never'}")

"""SQAL device administration over the SQLAlchemy session: register, rotate a token, enable or disable.

Shared by the HTTP routes (`routes.py`), `flask sqal …` (`cli.py`) and the development seeder (`provisioning.py`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from backend.base.errors import Conflict
from backend.core import security
from backend.core.database import get_or_404
from backend.extensions import db
from backend.sqal.models import Device
from backend.sqal.sessions import announce_credential_change

TOKEN_PREFIX = "sqal_dev_"


def create_device(
    device_id: str, profile: str | None = None, firmware_version: str | None = None, *, replace_token: bool = False
) -> str:
    """Create a device (or give an existing one a new token with `replace_token`); return the token once.

    Two concurrent creations of one id (API, CLI, seeder) both miss the row, and the second insert hits the primary
    key: that is the same Conflict as a sequential duplicate, or, with `replace_token`, a second try that finds the
    row and replaces its token.
    """
    try:
        return _create_or_replace(device_id, profile, firmware_version, replace_token)
    except IntegrityError:
        db.session.rollback()
        if db.session.get(Device, device_id) is None:
            raise  # not the race on the id: a real error
        if not replace_token:
            raise _already_exists(device_id) from None
        return _create_or_replace(device_id, profile, firmware_version, replace_token)


def _already_exists(device_id: str) -> Conflict:
    return Conflict(f"Device {device_id} already exists", {"device_id": device_id})


def _create_or_replace(device_id: str, profile: str | None, firmware_version: str | None, replace_token: bool) -> str:
    token = security.generate_token(TOKEN_PREFIX)
    device = db.session.get(Device, device_id)
    if device is not None and not replace_token:
        raise _already_exists(device_id)
    if device is None:
        device = Device(device_id=device_id, profile=profile, firmware_version=firmware_version, enabled=True)
        db.session.add(device)
    if profile is not None:
        device.profile = profile
    rotated = device.token_hash is not None
    device.token_hash = security.hash_token(token)
    db.session.commit()
    if rotated:  # the old token's open sockets close (docs/protocol.md §1)
        announce_credential_change(device_id)
    return token


def _update_device(device_id: str, **values: Any) -> None:
    """Set `values` on an existing device and commit; NotFound when there is no such device."""
    device = get_or_404(Device, device_id, "Device", field="device_id")
    for name, value in values.items():
        setattr(device, name, value)
    db.session.commit()
    announce_credential_change(device_id)  # after the commit: the re-check must see the new row


def set_device_enabled(device_id: str, enabled: bool) -> None:
    """Enable or disable a device; disabling closes its open sockets (every worker, every instance) with 1008."""
    _update_device(device_id, enabled=enabled)


def device_token_matches(device_id: str, token: str) -> bool:
    """True when `token` is the current token of the (enabled) device."""
    device = db.session.get(Device, device_id)
    return device is not None and device.enabled and security.verify_token(token, device.token_hash)


def rotate_device_token(device_id: str) -> str:
    """Give an existing device a new token and return it once; the old token's open sockets close with 1008."""
    token = security.generate_token(TOKEN_PREFIX)
    _update_device(device_id, token_hash=security.hash_token(token))
    return token

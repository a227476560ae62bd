"""`flask sqal …`: device administration. Tokens are printed once and never stored in clear."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from pydantic import TypeAdapter, ValidationError

from backend.core.errors import ApiError
from backend.sqal.devices import service
from backend.sqal.vocabulary import DeviceId

DEVICE_ID = TypeAdapter(DeviceId)

sqal_cli = AppGroup("sqal", help="SQAL devices.")


def _check_device_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return DEVICE_ID.validate_python(value)
    except ValidationError:
        raise click.BadParameter("1-100 chars: letters, digits, _ . : - (starting with a letter or digit)") from None


@sqal_cli.command("create-device")
@click.argument("device_id", callback=_check_device_id)
@click.option("--profile", default=None, help="Line profile of the device (e.g. foiegras_standard_barquette).")
@click.option("--firmware", "firmware_version", default=None, help="Firmware version, until the device reports it.")
@click.option("--rotate", is_flag=True, help="The device exists: issue a new token (the old one and its sockets end).")
def create_device(device_id: str, profile: str | None, firmware_version: str | None, rotate: bool) -> None:
    """Create DEVICE_ID and print its token (shown once: store it on the device)."""
    try:
        token = service.create_device(device_id, profile, firmware_version, replace_token=rotate)
    except ApiError as exc:
        raise click.ClickException(f"{exc.message} (use --rotate to issue a new token)") from None
    click.echo(token)


@sqal_cli.command("disable-device")
@click.argument("device_id")
def disable_device(device_id: str) -> None:
    """Refuse DEVICE_ID's connections (its open sockets are closed at once, on every worker)."""
    _set_enabled(device_id, False)


@sqal_cli.command("enable-device")
@click.argument("device_id")
def enable_device(device_id: str) -> None:
    """Accept DEVICE_ID's connections again."""
    _set_enabled(device_id, True)


def _set_enabled(device_id: str, enabled: bool) -> None:
    try:
        service.set_device_enabled(device_id, enabled)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{device_id} {'enabled' if enabled else 'disabled'}")

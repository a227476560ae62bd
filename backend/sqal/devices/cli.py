"""`flask sqal …`: device administration. Tokens are printed once and never stored in clear."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from pydantic import TypeAdapter, ValidationError

from backend.base.errors import ApiError
from backend.core.cli import emit_json, progress
from backend.sqal.devices import provisioning, service
from backend.sqal.vocabulary import DeviceId

DEVICE_ID = TypeAdapter(DeviceId)
ID_RULE = "1-100 chars: letters, digits, _ . : - (starting with a letter or digit)"

sqal_cli = AppGroup("sqal", help="SQAL devices, data lifecycle and export.")


def _check_device_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return DEVICE_ID.validate_python(value)
    except ValidationError:
        raise click.BadParameter(ID_RULE) from None


@sqal_cli.command("create-device")
@click.argument("device_id", callback=_check_device_id)
@click.option("--profile", default=None, help="Line profile of the device (e.g. foiegras_standard_barquette).")
@click.option("--firmware", "firmware_version", default=None, help="Firmware version, until the device reports it.")
@click.option("--rotate", is_flag=True, help="The device exists: issue a new token (the old one and its sockets end).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: device_id, token.")
def create_device(
    device_id: str, profile: str | None, firmware_version: str | None, rotate: bool, as_json: bool
) -> None:
    """Create DEVICE_ID and print its token alone on stdout (shown once: store it on the device)."""
    token = _create(device_id, profile, firmware_version, rotate)
    if as_json:
        emit_json({"device_id": device_id, "token": token})
    else:
        click.echo(token)


@sqal_cli.command("create-devices")
@click.option("--count", type=click.IntRange(1, 100_000), required=True, help="How many devices.")
@click.option("--prefix", default="ESP32_LL_", show_default=True, help="Ids are PREFIX01, PREFIX02, ...")
@click.option("--profile", default=None, help="Line profile of the devices.")
@click.option("--rotate", is_flag=True, help="Issue new tokens to those that exist.")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object: {"devices": {id: token}}.')
def create_devices(count: int, prefix: str, profile: str | None, rotate: bool, as_json: bool) -> None:
    """Provision COUNT devices in bulk: `ID<TAB>TOKEN` lines on stdout, progress on stderr."""
    try:
        ids = [DEVICE_ID.validate_python(device_id) for device_id in provisioning.dev_device_ids(count, prefix)]
    except ValidationError:
        raise click.BadParameter(ID_RULE, param_hint="--prefix") from None
    tokens: dict[str, str] = {}
    for device_id in progress(ids, "provisioning devices"):
        tokens[device_id] = _create(device_id, profile, None, rotate)
    if as_json:
        emit_json({"devices": tokens})
    else:
        for device_id, token in tokens.items():
            click.echo(f"{device_id}\t{token}")


def _create(device_id: str, profile: str | None, firmware_version: str | None, rotate: bool) -> str:
    try:
        return service.create_device(device_id, profile, firmware_version, replace_token=rotate)
    except ApiError as exc:
        raise click.ClickException(f"{exc.message} (use --rotate to issue a new token)") from None


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

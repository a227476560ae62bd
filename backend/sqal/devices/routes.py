"""Device administration over HTTP (`devices:admin` scope): register, rotate a token, enable or disable.

The same operations as `flask sqal …`, for a fleet tool. Responses that carry a token are never cached.
"""

from __future__ import annotations

from apiflask import APIBlueprint

from backend.base.errors import AUTH_ERRORS, BODY_ERRORS
from backend.core.auth import WRITE_SECURITY, require_scope
from backend.sqal.devices import service
from backend.sqal.devices.schemas import DeviceCreate, DeviceState, DeviceToken, DeviceUpdate

bp = APIBlueprint("sqal_admin", __name__, url_prefix="/api/sqal/devices", tag="SQAL devices")

NO_STORE = {"Cache-Control": "no-store"}


@bp.post("")
@require_scope("devices:admin")
@bp.input(DeviceCreate, arg_name="body")
@bp.output(DeviceToken, status_code=201)
@bp.doc(
    operation_id="createDevice",
    summary="Register a device; its token is in the response, once",
    responses=[409, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
def create_device(body: DeviceCreate) -> tuple[DeviceToken, int, dict[str, str]]:
    token = service.create_device(body.device_id, body.profile, body.firmware_version)
    return DeviceToken(device_id=body.device_id, token=token), 201, NO_STORE


@bp.post("/<device_id>/token")
@require_scope("devices:admin")
@bp.output(DeviceToken)
@bp.doc(
    operation_id="rotateDeviceToken",
    summary="Issue a new token; the old one is refused and its open sockets are closed (1008)",
    responses=[404, *AUTH_ERRORS],
    security=WRITE_SECURITY,
)
def rotate_token(device_id: str) -> tuple[DeviceToken, int, dict[str, str]]:
    token = service.rotate_device_token(device_id)
    return DeviceToken(device_id=device_id, token=token), 200, NO_STORE


@bp.patch("/<device_id>")
@require_scope("devices:admin")
@bp.input(DeviceUpdate, arg_name="body")
@bp.output(DeviceState)
@bp.doc(
    operation_id="updateDevice",
    summary="Enable or disable a device (disabling closes its open sockets with 1008)",
    responses=[404, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
def update_device(device_id: str, body: DeviceUpdate) -> DeviceState:
    service.set_device_enabled(device_id, body.enabled)
    return DeviceState(device_id=device_id, enabled=body.enabled)

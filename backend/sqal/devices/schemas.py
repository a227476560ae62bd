"""Schemas of the device administration routes (`devices:admin` scope)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.core.validation import NOT_BLANK, not_blank, without_default
from backend.sqal.vocabulary import DeviceId

Label = Annotated[str, Field(min_length=1, max_length=100, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)]
FirmwareVersion = Annotated[
    str, Field(min_length=1, max_length=32, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)
]


class DeviceCreate(BaseModel):
    """A device to register; its token is returned once."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    profile: Label | None = Field(None, json_schema_extra=without_default)
    firmware_version: FirmwareVersion | None = Field(None, json_schema_extra=without_default)


class DeviceUpdate(BaseModel):
    """Turn a device's connections on or off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(strict=True)


class DeviceToken(BaseModel):
    """The device's token, shown once: only its digest is stored."""

    device_id: str
    token: str


class DeviceState(BaseModel):
    device_id: str
    enabled: bool

"""The words every SQAL sub-package shares: device ids and the Redis channel from ingestion to the live dashboards."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from backend.core.config import Settings
from backend.core.resilience import key_prefix

DeviceId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]

CHANNEL = "sqal:samples"


def channel_for(settings: Settings) -> str:
    """The deployment's channel: prefixed like every other Redis key, so services sharing a Redis stay apart."""
    return key_prefix(settings) + CHANNEL

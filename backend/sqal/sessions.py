"""The control channel of device sessions (`sqal:device-sessions`), shared by `devices/` and `ingest/`.

Device administration announces a credential change (token rotated, device disabled) after its commit; every worker
of every instance subscribes (`ingest/sessions.py`) and has the device's open sockets re-check their credential
against the database, closing with 1008 those it no longer covers. Eviction notices of the per-device socket cap
travel on the same channel. Messages are JSON objects: `{"kind": "recheck" | "evict", "device_id": ..., ...}`.

Publishing is best effort: without Redis the sockets' periodic re-check (and the credential check of every stored
frame) still ends a revoked session, only later.
"""

from __future__ import annotations

import json
import logging

import redis
from flask import current_app

from backend.base.config import Settings
from backend.core.resilience import RedisUnavailable, key_prefix
from backend.extensions import breakers

logger = logging.getLogger(__name__)

CONTROL_CHANNEL = "sqal:device-sessions"
RECHECK = "recheck"
EVICT = "evict"


def control_channel(settings: Settings) -> str:
    """The deployment's control channel (prefixed like every other Redis key)."""
    return key_prefix(settings) + CONTROL_CHANNEL


def announce_credential_change(device_id: str) -> bool:
    """Tell every worker that `device_id`'s credential changed; False when Redis could not be told."""
    channel = control_channel(current_app.config["SETTINGS"])
    message = json.dumps({"kind": RECHECK, "device_id": device_id}, separators=(",", ":"))
    try:
        breakers.redis_call(lambda client: client.publish(channel, message))
    except (RedisUnavailable, redis.RedisError) as exc:
        logger.warning(
            "credential change not announced: open sockets notice it at their next re-check",
            extra={"event": "device_recheck_not_announced", "device_id": device_id, "error": str(exc)},
        )
        return False
    return True

"""Health probes and the startup banner.

- `/health`: the reference shape (UP with the database connected, DOWN 503 otherwise).
- `/health/live`: 200 while the process answers; calls no dependency.
- `/health/ready`: 200 when the database answers, its schema is at the Alembic head, Redis answers (or is optional:
  then `DEGRADED`, still 200) and the worker is not shutting down; 503 otherwise. Each check reports its latency.
- `/health/startup`: 200 once the app factory finished and the schema was seen at head (then no more DB calls).

`checks` (Redis host, schema revisions) are shown only on the operations side (`backend.core.operations`); the API
port gets the status alone, with the same status code.

Database and Redis checks go through the circuit breakers: while one is open the check answers `down` at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apiflask import APIBlueprint
from flask import Flask, current_app

from backend.base.config_values import redis_location
from backend.base.extension import AppExtension
from backend.core import database, operations
from backend.core.auth import AUTH_OFF_WARNING
from backend.core.shutdown import SERVING
from backend.extensions import breakers, db, redis_client, shutdown

logger = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, tag="Health")


@dataclass
class Startup:
    """What the startup probe knows: the schema head the code expects, whether the factory finished, and whether a
    probe saw both (from then on it answers without calling the database)."""

    heads: set[str]
    factory_done: bool = False
    completed: bool = False


class StartupProbe(AppExtension[Startup]):
    """The startup state of the app; the health routes' own (the factory binds it, `announce_startup` ends it)."""

    name = "health.startup"

    def init_app(self, app: Flask) -> None:
        self.bind(app, Startup(database.head_revisions()))


startup_probe = StartupProbe()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _failure(exc: BaseException, started: float) -> dict[str, Any]:
    return {"status": "down", "error": type(exc).__name__, "latency_ms": _elapsed_ms(started)}


def check_database() -> dict[str, Any]:
    """Probe PostgreSQL (`SELECT 1`); never raises."""
    started = time.perf_counter()
    try:
        latency = database.ping(db.engine)
    except Exception as exc:
        return _failure(exc, started)
    return {"status": "up", "latency_ms": round(latency, 2)}


def check_migrations() -> dict[str, Any]:
    """Compare the database revision with the code's Alembic head; never raises."""
    started = time.perf_counter()
    try:
        expected = startup_probe.current.heads
        current = database.current_revisions(db.engine)
    except Exception as exc:
        return _failure(exc, started)
    return {
        "status": "up" if current == expected else "down",
        "current": sorted(current),
        "head": sorted(expected),
        "latency_ms": _elapsed_ms(started),
    }


def check_redis() -> dict[str, Any]:
    """Probe Redis (PING); `disabled` when neither REDIS_URL nor REDIS_HOST is set; never raises.

    `target` names the Redis (host:port/db, no credentials) so an unreachable one is identified, not just "down".
    """
    settings = current_app.config["SETTINGS"]
    required = bool(settings.redis_required)
    if not settings.redis_url:
        return {"status": "disabled", "required": required}
    target = redis_location(settings.redis_url)
    started = time.perf_counter()
    try:
        breakers.redis_call(lambda client: client.ping())
    except Exception as exc:  # RedisUnavailable, or any Redis error: the probe reports it
        return {**_failure(exc, started), "required": required, "target": target}
    return {"status": "up", "required": required, "target": target, "latency_ms": _elapsed_ms(started)}


def readiness() -> tuple[str, dict[str, dict[str, Any]]]:
    """(UP | DEGRADED | DOWN, checks). A shutting-down worker is DOWN without calling any dependency."""
    phase = shutdown.phase
    if phase != SERVING:
        return "DOWN", {"shutdown": {"status": "down", "phase": phase}}
    checks = {"database": check_database()}
    if checks["database"]["status"] == "up":
        checks["migrations"] = check_migrations()
    checks["redis"] = check_redis()
    checks["shutdown"] = {"status": "up", "phase": phase}
    redis_ok = checks["redis"]["status"] == "up"
    others_ok = all(check["status"] == "up" for name, check in checks.items() if name != "redis")
    if not others_ok or (not redis_ok and checks["redis"]["required"]):
        return "DOWN", checks
    return ("UP" if redis_ok else "DEGRADED"), checks


@bp.get("/health")
@bp.doc(operation_id="getHealth", summary="Service health (reference shape)", responses={200: "UP", 503: "DOWN"})
def health() -> tuple[dict[str, Any], int]:
    """UP with the database connected, DOWN (503) when PostgreSQL is unreachable; says when auth is off."""
    settings = current_app.config["SETTINGS"]
    connected = check_database()["status"] == "up"
    body: dict[str, Any] = {
        "status": "UP" if connected else "DOWN",
        "service": settings.service_name,
        "database": "connected" if connected else "disconnected",
        "auth": settings.auth_mode,
        "timestamp": _now(),
    }
    if settings.auth_mode == "off":
        body["warnings"] = [AUTH_OFF_WARNING]
    return body, 200 if connected else 503


@bp.get("/health/live")
@bp.doc(operation_id="getLiveness", summary="Liveness: the process answers; no dependency is called")
def live() -> dict[str, Any]:
    return {"status": "UP", "timestamp": _now()}


@bp.get("/health/ready")
@bp.doc(
    operation_id="getReadiness",
    summary="Readiness: database, migrations at head, Redis (required or degraded), not shutting down",
    responses={200: "UP or DEGRADED", 503: "DOWN"},
)
def ready() -> tuple[dict[str, Any], int]:
    status, checks = readiness()
    body = operations.public_view({"status": status, "checks": checks, "timestamp": _now()})
    return body, 503 if status == "DOWN" else 200


@bp.get("/health/startup")
@bp.doc(
    operation_id="getStartup",
    summary="Startup: the app is built and the schema reached the Alembic head",
    responses={200: "started", 503: "starting"},
)
def startup() -> tuple[dict[str, Any], int]:
    state = startup_probe.current
    checks: dict[str, Any] = {}
    if not state.completed:
        checks["migrations"] = check_migrations()
        state.completed = state.factory_done and checks["migrations"]["status"] == "up"
    ok = state.completed
    body = operations.public_view({"status": "UP" if ok else "DOWN", "checks": checks, "timestamp": _now()})
    return body, 200 if ok else 503


def announce_startup(app: Flask) -> None:
    """Last step of the factory: check each dependency once and log the banner (one JSON line).

    A dependency that is down is reported, not fatal: the probes keep the instance out of traffic until it is
    back. Connections opened here are closed again so none is inherited across a fork (preloaded app).
    """
    settings = app.config["SETTINGS"]
    with app.app_context():
        dependencies = {"postgresql": {**check_database(), "required": True}}
        if dependencies["postgresql"]["status"] == "up":
            dependencies["migrations"] = {**check_migrations(), "required": True}
        dependencies["redis"] = check_redis()
        db.engine.dispose()
    redis_client.of(app).disconnect()
    startup_probe.of(app).factory_done = True
    down = sorted(
        f"{name} at {check['target']}" if "target" in check else name
        for name, check in dependencies.items()
        if check["status"] not in ("up", "disabled")
    )
    logger.log(
        logging.WARNING if down else logging.INFO,
        "startup complete" + (f", waiting for: {', '.join(down)}" if down else ""),
        extra={
            "event": "startup_dependencies",
            "dependencies": dependencies,
            "cache": {"enabled": settings.cache_enabled and bool(settings.redis_url)},
            "rate_limit": {
                "enabled": settings.rate_limit_enabled,
                "read": settings.rate_limit_read,
                "write": settings.rate_limit_write,
                "storage": "redis" if settings.redis_url else "memory",
            },
            "circuit_breakers": {
                "fail_max": settings.breaker_fail_max,
                "reset_timeout_s": settings.breaker_reset_timeout,
            },
            "shutdown": {"timeout_s": settings.shutdown_timeout, "drain_delay_s": settings.shutdown_drain_delay},
        },
    )

"""Health probes: `/health` (reference shape), `/health/live`, `/health/ready`, `/health/startup`."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from apiflask import APIBlueprint
from flask import current_app

from backend.core import database
from backend.extensions import db

logger = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, tag="Health")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def check_database() -> dict[str, Any]:
    """Probe PostgreSQL; never raises."""
    try:
        latency = database.ping(db.engine)
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round(latency, 2)}


def check_migrations() -> dict[str, Any]:
    """Compare the database revision with the code's Alembic head; never raises."""
    started = time.perf_counter()
    try:
        expected = current_app.extensions["alembic_heads"]
        current = database.current_revisions(db.engine)
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    status = "up" if current == expected else "down"
    return {
        "status": status,
        "current": sorted(current),
        "head": sorted(expected),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


@bp.get("/health")
@bp.doc(summary="Service health (reference shape)", responses={200: "UP", 503: "DOWN"})
def health() -> tuple[dict[str, Any], int]:
    """UP with the database connected, DOWN (503) when PostgreSQL is unreachable."""
    connected = check_database()["status"] == "up"
    body = {
        "status": "UP" if connected else "DOWN",
        "service": current_app.config["SETTINGS"].service_name,
        "database": "connected" if connected else "disconnected",
        "timestamp": _now(),
    }
    return body, 200 if connected else 503


@bp.get("/health/live")
@bp.doc(summary="Liveness: the process answers; no dependency is called")
def live() -> dict[str, Any]:
    return {"status": "UP", "timestamp": _now()}


@bp.get("/health/ready")
@bp.doc(summary="Readiness: database reachable and migrations at head", responses={200: "ready", 503: "not ready"})
def ready() -> tuple[dict[str, Any], int]:
    checks = {"database": check_database()}
    if checks["database"]["status"] == "up":
        checks["migrations"] = check_migrations()
    ok = all(check["status"] == "up" for check in checks.values())
    return {"status": "UP" if ok else "DOWN", "checks": checks, "timestamp": _now()}, 200 if ok else 503


@bp.get("/health/startup")
@bp.doc(summary="Startup: the schema is migrated to head", responses={200: "started", 503: "starting"})
def startup() -> tuple[dict[str, Any], int]:
    migrations = check_migrations()
    ok = migrations["status"] == "up"
    return {"status": "UP" if ok else "DOWN", "checks": {"migrations": migrations}, "timestamp": _now()}, (
        200 if ok else 503
    )

"""Chaos endpoints for testers: `/slow` waits, `/error` fails for real. Registered only when chaos is enabled."""

from __future__ import annotations

import random
import time
from typing import Annotated, Any, Literal

from apiflask import APIBlueprint
from flask import current_app
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from backend.base.errors import COMMON_ERRORS, GatewayTimeout
from backend.extensions import db

bp = APIBlueprint("chaos", __name__, tag="Chaos")

FailureKind = Literal["exception", "sql", "timeout"]


class SlowQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay: Annotated[float, Field(ge=0, le=30, allow_inf_nan=False)] | None = None


class ErrorQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probability: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    kind: FailureKind | None = None


class ChaosError(RuntimeError):
    """The deliberate unhandled exception raised by /error."""


@bp.get("/slow")
@bp.input(SlowQuery, location="query", arg_name="query")
@bp.doc(
    operation_id="chaosSlow",
    summary="Answer after a delay (SLOW_ENDPOINT_DELAY, or ?delay= 0–30 s)",
    responses=[*COMMON_ERRORS],
)
def slow(query: SlowQuery) -> dict[str, Any]:
    delay = current_app.config["SETTINGS"].slow_endpoint_delay if query.delay is None else query.delay
    started = time.perf_counter()
    time.sleep(delay)
    return {"status": "ok", "delay_seconds": delay, "elapsed_seconds": round(time.perf_counter() - started, 3)}


@bp.get("/error")
@bp.input(ErrorQuery, location="query", arg_name="query")
@bp.doc(
    operation_id="chaosError",
    summary="Fail with a real error (?probability= share of failing calls, ?kind= to choose)",
    responses=[500, 504, *COMMON_ERRORS],
)
def error(query: ErrorQuery) -> dict[str, Any]:
    if random.random() >= query.probability:
        return {"status": "ok", "failed": False}
    kind = query.kind or random.choice(("exception", "sql", "timeout"))
    if kind == "exception":
        raise ChaosError("chaos: deliberate unhandled exception")
    if kind == "sql":
        db.session.execute(text("SELECT * FROM chaos_table_that_does_not_exist"))
    try:
        # A dependency call that outlives its deadline: the server cancels the statement after 100 ms.
        db.session.execute(text("SET LOCAL statement_timeout = 100"))
        db.session.execute(text("SELECT pg_sleep(2)"))
    except OperationalError as exc:
        db.session.rollback()
        raise GatewayTimeout("chaos: dependency timed out after 100 ms", {"dependency": "postgresql"}) from exc
    return {"status": "ok", "failed": False}  # pragma: no cover - pg_sleep always exceeds the timeout

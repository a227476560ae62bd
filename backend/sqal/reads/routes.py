"""SQAL read routes: samples (keyset pages), one sample, devices, time series and the dashboard figures.

`register_reads(app)` registers them; `metrics_snapshot(app)` also feeds the live WebSocket `/ws/dashboard/`. The
dashboard figures go through the `dashboard` namespace of the Redis cache (`backend.core.cache`: TTL
CACHE_TTL_DASHBOARD ≤ 5 s, single flight within and across workers), so a wall of dashboards costs about one SQL
statement per TTL, and the live snapshots sent by every worker share it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from apiflask import APIBlueprint, APIFlask
from flask import Flask, current_app, request

from backend.core import cache
from backend.core.errors import COMMON_ERRORS
from backend.sqal.reads import service as queries
from backend.sqal.reads.schemas import (
    BUCKETS,
    Cursor,
    DashboardMetrics,
    DeviceList,
    SampleDetail,
    SampleLookupQuery,
    SamplePage,
    SampleQuery,
    Timeseries,
    TimeseriesQuery,
)

REGISTERED_KEY = "sqal_reads"
CACHE_NAME = "dashboard"
METRICS_CACHE_KEY = "metrics"

bp = APIBlueprint("sqal_reads", __name__, tag={"name": "SQAL reads", "description": "Samples, devices, statistics"})


@bp.get("/api/sqal/samples")
@bp.input(SampleQuery, location="query", arg_name="query")
@bp.output(SamplePage)
@bp.doc(
    summary="List samples, newest first (keyset pages: next_cursor in the body and a Link header)",
    responses=[*COMMON_ERRORS],
)
def list_samples(query: SampleQuery) -> tuple[SamplePage, int, dict[str, str]]:
    position = query.position()
    items, more = queries.list_samples(
        device_id=query.device_id,
        grades=query.grade,
        start=query.from_,
        end=query.to,
        min_score=query.min_score,
        after=(position.timestamp, position.id) if position else None,
        limit=query.limit,
    )
    next_cursor = None
    headers: dict[str, str] = {}
    if more:
        last = items[-1]
        next_cursor = Cursor(last["timestamp"], last["id"], query.filters_digest()).encode()
        link_query = urlencode({**query.link_args(), "cursor": next_cursor})
        headers["Link"] = f'<{request.path}?{link_query}>; rel="next"'
    return SamplePage.model_validate({"items": items, "next_cursor": next_cursor}), 200, headers


@bp.get("/api/sqal/samples/<sample_id>")
@bp.input(SampleLookupQuery, location="query", arg_name="query")
@bp.output(SampleDetail)
@bp.doc(
    summary="One sample with its matrices and channels (by sample_id, or by id)",
    description="409 `ambiguous_sample_id` when several devices used this sample_id: add `?device_id=`.",
    responses=[404, 409, *COMMON_ERRORS],
)
def get_sample(sample_id: str, query: SampleLookupQuery) -> SampleDetail:
    return SampleDetail.model_validate(queries.get_sample(sample_id, query.device_id))


@bp.get("/api/sqal/devices")
@bp.output(DeviceList)
@bp.doc(
    summary="Devices with last_seen_at, online, firmware, samples today and latest grade", responses=[*COMMON_ERRORS]
)
def list_devices() -> DeviceList:
    settings = current_app.config["SETTINGS"]
    rows = queries.list_devices(datetime.now(UTC), 2 * settings.sqal_generation_interval)
    return DeviceList.model_validate({"items": rows})


@bp.get("/api/sqal/stats/timeseries")
@bp.input(TimeseriesQuery, location="query", arg_name="query")
@bp.output(Timeseries)
@bp.doc(
    summary="Per time bucket: sample count, average score, count per grade",
    description="Buckets and widest range: "
    + ", ".join(f"{name} ≤ {widest.days} d" for name, (_w, _s, widest) in BUCKETS.items())
    + ". Buckets are aligned on 00:00 UTC; every bucket of [from, to) is listed, empty ones with count 0.",
    responses=[*COMMON_ERRORS],
)
def timeseries(query: TimeseriesQuery) -> Timeseries:
    assert query.from_ is not None
    assert query.to is not None
    width = BUCKETS[query.bucket][0]
    points = queries.timeseries(width, query.from_, query.to, query.device_id)
    return Timeseries.model_validate(
        {"bucket": query.bucket, "from": query.from_, "to": query.to, "device_id": query.device_id, "points": points}
    )


@bp.get("/api/dashboard/metrics/")
@bp.output(DashboardMetrics)
@bp.doc(
    summary="Dashboard figures (computed in SQL, cached ≤ 5 s: see generated_at)",
    tags=["Dashboard"],
    responses=[*COMMON_ERRORS],
)
def dashboard_metrics() -> tuple[DashboardMetrics, int, dict[str, str]]:
    figures = metrics_snapshot(current_app._get_current_object())  # type: ignore[attr-defined]
    return DashboardMetrics.model_validate(figures), 200, {"Cache-Control": "no-cache"}


def compute_metrics(app: Flask) -> dict[str, Any]:
    """The figures now, straight from SQL, as JSON-ready values."""
    settings = app.config["SETTINGS"]
    figures = queries.dashboard_metrics(datetime.now(UTC), 2 * settings.sqal_generation_interval)
    return DashboardMetrics.model_validate(figures).model_dump(mode="json")


def metrics_snapshot(app: Flask) -> dict[str, Any]:
    """The figures through the `dashboard` cache (TTL CACHE_TTL_DASHBOARD, single flight across workers)."""
    with app.app_context():
        figures: dict[str, Any] = cache.cached(CACHE_NAME, METRICS_CACHE_KEY, lambda: compute_metrics(app))
        return figures


def register_reads(app: APIFlask) -> None:
    """Register the read routes and their cache namespace on `app` (idempotent)."""
    if app.extensions.get(REGISTERED_KEY):
        return
    app.extensions[REGISTERED_KEY] = True
    cache.register_namespace(app, CACHE_NAME, ttl=app.config["SETTINGS"].cache_ttl_dashboard)
    app.register_blueprint(bp)

"""SQAL read routes: samples (keyset pages), one sample, devices, time series and the dashboard figures.

`register_reads(app)` registers them and the `dashboard` cache namespace of the figures (`figures.py`), read through
the cache by `dashboard_snapshot` for this route and the `/ws/dashboard/` push alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import urlencode

from apiflask import APIBlueprint, APIFlask
from flask import Flask, Response, current_app, request, stream_with_context

from backend.base.errors import COMMON_ERRORS
from backend.core.contract import sends
from backend.extensions import cache
from backend.sqal.reads import export, figures, service
from backend.sqal.reads.schemas import (
    BUCKETS,
    Cursor,
    DashboardMetrics,
    DeviceList,
    ExportQuery,
    SampleDetail,
    SampleLookupQuery,
    SamplePage,
    SampleQuery,
    Timeseries,
    TimeseriesQuery,
)
from backend.sqal.vocabulary import online_seconds

DASHBOARD_CACHE = "dashboard"  # the figures' cache namespace (TTL CACHE_TTL_DASHBOARD)
DASHBOARD_KEY = "metrics"

bp = APIBlueprint("sqal_reads", __name__, tag={"name": "SQAL reads", "description": "Samples, devices, statistics"})


@bp.get("/api/sqal/samples")
@sends(200, "Link")
@bp.input(SampleQuery, location="query", arg_name="query")
@bp.output(SamplePage)
@bp.doc(
    operation_id="listSamples",
    summary="List samples, newest first (keyset pages: next_cursor in the body and a Link header)",
    responses=[*COMMON_ERRORS],
)
def list_samples(query: SampleQuery) -> tuple[SamplePage, int, dict[str, str]]:
    position = query.position()
    items, more = service.list_samples(
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


@bp.get("/api/sqal/samples/export")
@bp.input(ExportQuery, location="query", arg_name="query")
@bp.doc(
    operation_id="exportSamples",
    summary="Export samples for audits: CSV or NDJSON, streamed, oldest first",
    description="Every column under the reference table's names (then `seq`, `received_at`); the filters of "
    "`/api/sqal/samples`. Streamed in batches: memory stays flat whatever the number of rows.",
    # A complete 200 (two media types) next to the usual error phrases: apiflask handles the mix, its hint does not.
    responses={  # type: ignore[arg-type]
        200: {
            "description": "The samples (CSV: a header line first; NDJSON: one JSON object per line)",
            "content": {
                media_type.split(";")[0]: {"schema": {"type": "string"}} for media_type in export.MEDIA_TYPES.values()
            },
        },
        **{status: HTTPStatus(status).phrase for status in COMMON_ERRORS},
    },
)
def export_samples(query: ExportQuery) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    chunks = export.export_chunks(query.format, **query.filters())
    return Response(
        stream_with_context(chunks),
        mimetype=export.MEDIA_TYPES[query.format],
        headers={"Content-Disposition": f'attachment; filename="sensor_samples-{stamp}.{query.format}"'},
    )


@bp.get("/api/sqal/samples/<sample_id>")
@bp.input(SampleLookupQuery, location="query", arg_name="query")
@bp.output(SampleDetail)
@bp.doc(
    operation_id="getSample",
    summary="One sample with its matrices and channels (by sample_id, or by id)",
    description="409 `ambiguous_sample_id` when several devices used this sample_id: add `?device_id=`.",
    responses=[404, 409, *COMMON_ERRORS],
)
def get_sample(sample_id: str, query: SampleLookupQuery) -> SampleDetail:
    return SampleDetail.model_validate(service.get_sample(sample_id, query.device_id))


@bp.get("/api/sqal/devices")
@bp.output(DeviceList)
@bp.doc(
    operation_id="listDevices",
    summary="Devices with last_seen_at, online, firmware, samples today and latest grade",
    responses=[*COMMON_ERRORS],
)
def list_devices() -> DeviceList:
    settings = current_app.config["SETTINGS"]
    rows = service.list_devices(datetime.now(UTC), online_seconds(settings))
    return DeviceList.model_validate({"items": rows})


@bp.get("/api/sqal/stats/timeseries")
@bp.input(TimeseriesQuery, location="query", arg_name="query")
@bp.output(Timeseries)
@bp.doc(
    operation_id="getTimeseries",
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
    points = service.timeseries(width, query.from_, query.to, query.device_id)
    return Timeseries.model_validate(
        {"bucket": query.bucket, "from": query.from_, "to": query.to, "device_id": query.device_id, "points": points}
    )


@bp.get("/api/dashboard/metrics/")
@bp.output(DashboardMetrics)
@bp.doc(
    operation_id="getDashboardMetrics",
    summary="Dashboard figures (computed in SQL, cached ≤ 5 s: see generated_at)",
    tags=["Dashboard"],
    responses=[*COMMON_ERRORS],
)
def dashboard_figures() -> tuple[DashboardMetrics, int, dict[str, str]]:
    snapshot = dashboard_snapshot(current_app._get_current_object())  # type: ignore[attr-defined]
    return snapshot, 200, {"Cache-Control": "no-cache"}


def dashboard_snapshot(app: Flask) -> DashboardMetrics:
    """The figures through the `dashboard` cache (single flight across workers): this route's body and the
    `/ws/dashboard/` snapshots."""
    settings = app.config["SETTINGS"]

    def load() -> dict[str, object]:
        return figures.select_figures(datetime.now(UTC), online_seconds(settings))

    with app.app_context():
        return cache.cached_model(DASHBOARD_CACHE, DASHBOARD_KEY, DashboardMetrics, load)


def register_reads(app: APIFlask) -> None:
    """Register the read routes and their cache namespace on `app` (idempotent)."""
    if bp.name in app.blueprints:
        return
    cache.register_namespace(app, DASHBOARD_CACHE, ttl=app.config["SETTINGS"].cache_ttl_dashboard)
    app.register_blueprint(bp)

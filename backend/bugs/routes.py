"""HTTP routes of /api/bugs/ (camelCase JSON on the wire; see `backend.bugs.schemas`)."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import request, url_for

from backend.base.errors import BODY_ERRORS, COMMON_ERRORS
from backend.bugs import service, stats
from backend.bugs.models import (
    COMMENT_MAX,
    DESCRIPTION_MAX,
    DEVICE_ID_MAX,
    PERSON_MAX,
    TITLE_MAX,
    BugComment,
    BugReport,
)
from backend.bugs.schemas import (
    BugCommentIn,
    BugCommentOut,
    BugCreate,
    BugDetail,
    BugOut,
    BugPatch,
    BugQuery,
    BugSummary,
    BugTrends,
    BugTrendsQuery,
)
from backend.core.auth import WRITE_SECURITY, require_scope
from backend.core.cache import make_key
from backend.core.conditional import CONDITIONAL_ERRORS, conditional, etag, if_match
from backend.core.contract import sends
from backend.core.http import body_limit, json_text_bytes
from backend.core.idempotency import idempotent
from backend.core.pagination import pagination_headers
from backend.extensions import cache

bp = APIBlueprint(
    "bugs",
    __name__,
    url_prefix="/api/bugs",
    tag={
        "name": "Bugs",
        "description": "Bug reports, comments, workflow and statistics. Field names are camelCase in bodies, "
        "responses and query parameters (snake_case is also accepted on input); enum values are lower snake case; "
        "timestamps are UTC ISO 8601.",
    },
)

# The largest bug body: every text field at its longest.
BUG_BODY_LIMIT = json_text_bytes(TITLE_MAX, DESCRIPTION_MAX, DEVICE_ID_MAX, PERSON_MAX, PERSON_MAX)


def _bug(bug: BugReport) -> BugOut:
    return BugOut.model_validate(bug)


@bp.get("/")
@sends(200, "X-Total-Count", "Link")
@bp.input(BugQuery, location="query", arg_name="query")
@bp.output(list[BugOut])  # type: ignore[arg-type]
@bp.doc(
    operation_id="listBugs",
    summary="List bugs (JSON array; X-Total-Count and Link headers)",
    responses=[*COMMON_ERRORS],
)
def list_bugs(query: BugQuery) -> tuple[list[BugOut], int, dict[str, str]]:
    bugs, total = service.list_bugs(
        status=query.status,
        severity=query.severity,
        category=query.category,
        device_id=query.device_id,
        q=query.q,
        sort=query.sort,
        limit=query.limit,
        offset=query.offset,
    )
    headers = pagination_headers(request.path, query.link_args(), total, query.limit, query.offset)
    return [_bug(bug) for bug in bugs], 200, headers


@bp.post("/")
@require_scope("bugs:write")
@body_limit(BUG_BODY_LIMIT)
@idempotent
@sends(201, "Location", "ETag")
@bp.input(BugCreate, arg_name="body")
@bp.output(BugOut, status_code=201)
@bp.doc(
    operation_id="createBug",
    summary="Report a bug (status open; idempotent with an Idempotency-Key header)",
    responses=[409, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
def create_bug(body: BugCreate) -> tuple[BugOut, int, dict[str, str]]:
    bug = service.create_bug(body.model_dump(mode="json"))
    return _bug(bug), 201, {"Location": url_for("bugs.get_bug", bug_id=bug.id), "ETag": etag(bug.version)}


@bp.get("/<int:bug_id>")
@bp.output(BugDetail)
@bp.doc(operation_id="getBug", summary="Get a bug with its comments (oldest first)", responses=[404, *COMMON_ERRORS])
@sends(200, "ETag")
def get_bug(bug_id: int) -> tuple[BugDetail, int, dict[str, str]]:
    bug = service.get_bug(bug_id)
    return BugDetail.model_validate(bug), 200, {"ETag": etag(bug.version)}


@bp.patch("/<int:bug_id>")
@require_scope("bugs:write")
@body_limit(BUG_BODY_LIMIT)
@bp.input(BugPatch, arg_name="body")
@bp.output(BugOut)
@bp.doc(
    operation_id="updateBug",
    summary="Update some fields of a bug; status changes follow the workflow",
    description="Allowed: open -> in_progress|resolved|closed|wont_fix; in_progress -> open|resolved|closed|"
    "wont_fix; resolved -> open|closed; closed -> open; wont_fix -> open|closed. Anything else is 409 with "
    "details.from/details.to. resolvedAt and closedAt are set and cleared by the workflow only. With If-Match, "
    "a bug whose ETag (version) changed since it was read is 412 and nothing is written.",
    responses=[404, 409, *CONDITIONAL_ERRORS, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
@conditional
def patch_bug(bug_id: int, body: BugPatch) -> tuple[BugOut, int, dict[str, str]]:
    bug = service.update_bug(bug_id, body.changes(), precondition=if_match())
    return _bug(bug), 200, {"ETag": etag(bug.version)}


@bp.post("/<int:bug_id>/comments")
@require_scope("bugs:write")
@body_limit(json_text_bytes(COMMENT_MAX, PERSON_MAX))
@bp.input(BugCommentIn, arg_name="body")
@bp.output(BugCommentOut, status_code=201)
@bp.doc(
    operation_id="addBugComment", summary="Comment on a bug", responses=[404, *BODY_ERRORS], security=WRITE_SECURITY
)
def add_comment(bug_id: int, body: BugCommentIn) -> tuple[BugCommentOut, int]:
    comment: BugComment = service.add_comment(bug_id, body.comment, body.author)
    return BugCommentOut.model_validate(comment), 201


@bp.get("/metrics/summary")
@bp.output(BugSummary)
@bp.doc(
    operation_id="getBugSummary",
    summary="Bug statistics: totals, breakdowns, resolved today, resolution time (hours)",
    responses=[*COMMON_ERRORS],
)
def metrics_summary() -> BugSummary:
    today = service.utcnow().date()
    key = make_key("summary", today.isoformat())
    return cache.cached_model(service.CACHE_NAME, key, BugSummary, lambda: stats.summary(today))


@bp.get("/metrics/trends")
@bp.input(BugTrendsQuery, location="query", arg_name="query")
@bp.output(BugTrends)
@bp.doc(
    operation_id="getBugTrends",
    summary="Daily created / resolved / open-at-end-of-day counts for the last N days (1-365)",
    responses=[*COMMON_ERRORS],
)
def metrics_trends(query: BugTrendsQuery) -> BugTrends:
    today = service.utcnow().date()

    def load() -> dict[str, object]:
        return {"days": query.days, "trends": stats.trends(query.days, today)}

    key = make_key("trends", query.days, today.isoformat())
    return cache.cached_model(service.CACHE_NAME, key, BugTrends, load)

"""Bug reports and comments: plain functions over the SQLAlchemy session, no Flask request objects.

Every timestamp is taken from `utcnow()` (Python's clock, in UTC) rather than the database's `now()`, so a test
that freezes time sees consistent dates; callers may also pass `now` to record a past event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import selectinload

from backend.base.errors import Conflict
from backend.bugs import workflow
from backend.bugs.enums import Priority, Severity, Status, values
from backend.bugs.models import BugComment, BugReport
from backend.core.conditional import IfMatch, PreconditionFailed
from backend.core.database import get_or_404, rollback_on
from backend.extensions import cache, db


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _rank(column: Any, enum: type[Severity | Priority | Status]) -> ColumnElement[int]:
    """Sort enumerated columns by their meaning (low < critical), not alphabetically."""
    return case({value: index for index, value in enumerate(values(enum))}, value=column)


SORT_COLUMNS: Mapping[str, Any] = {
    "id": BugReport.id,
    "title": BugReport.title,
    "severity": _rank(BugReport.severity, Severity),
    "priority": _rank(BugReport.priority, Priority),
    "status": _rank(BugReport.status, Status),
    "category": BugReport.category,
    "createdAt": BugReport.created_at,
    "updatedAt": BugReport.updated_at,
    "resolvedAt": BugReport.resolved_at,
}


# Summary and trends are cached in this namespace (CACHE_TTL_BUGS); every bug write invalidates it.
CACHE_NAME = "bugs"


def _commit_detached(row: BugReport | BugComment) -> None:
    """Commit and keep the values this transaction wrote.

    After a plain commit the row is expired and reloaded on first access, so a response could show another
    request's later write; detached after the flush, it reports exactly the state this request produced.
    """
    db.session.flush()
    db.session.expunge(row)
    db.session.commit()


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _order_by(sort: Sequence[str]) -> list[Any]:
    order: list[Any] = []
    for key in sort:
        column = SORT_COLUMNS[key.removeprefix("-")]
        # NULLS LAST both ways: a bug that is not resolved yet never comes before resolved ones.
        order.append(column.desc().nulls_last() if key.startswith("-") else column.asc().nulls_last())
    # The id tie-breaker keeps pages stable when sort keys repeat.
    order.append(BugReport.id.desc() if sort and sort[0].startswith("-") else BugReport.id.asc())
    return order


def list_bugs(
    *,
    status: Sequence[str] | None = None,
    severity: Sequence[str] | None = None,
    category: Sequence[str] | None = None,
    device_id: str | None = None,
    q: str | None = None,
    sort: Sequence[str] = ("-createdAt",),
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[BugReport], int]:
    """A page of bugs matching every given filter (lists match any value), and the total matching."""
    conditions: list[ColumnElement[bool]] = []
    if status:
        conditions.append(BugReport.status.in_([str(value) for value in status]))
    if severity:
        conditions.append(BugReport.severity.in_([str(value) for value in severity]))
    if category:
        conditions.append(BugReport.category.in_([str(value) for value in category]))
    if device_id is not None:
        conditions.append(BugReport.device_id == device_id)
    if q is not None:
        pattern = _like_pattern(q)
        conditions.append(
            or_(BugReport.title.ilike(pattern, escape="\\"), BugReport.description.ilike(pattern, escape="\\"))
        )
    total = db.session.execute(select(func.count()).select_from(BugReport).where(*conditions)).scalar_one()
    query = select(BugReport).where(*conditions).order_by(*_order_by(sort)).limit(limit).offset(offset)
    return list(db.session.execute(query).scalars()), total


def get_bug(bug_id: int) -> BugReport:
    """The bug with its comments loaded (oldest first), or NotFound."""
    return get_or_404(BugReport, bug_id, "Bug", options=[selectinload(BugReport.comments)])


def create_bug(fields: Mapping[str, Any], now: datetime | None = None) -> BugReport:
    """Insert a bug in status `open` and commit."""
    at = now or utcnow()
    bug = BugReport(**{"description": "", **fields}, status=Status.OPEN.value, version=1, created_at=at, updated_at=at)
    db.session.add(bug)
    _commit_detached(bug)
    cache.invalidate(CACHE_NAME)
    return bug


def update_bug(
    bug_id: int, fields: Mapping[str, Any], now: datetime | None = None, precondition: IfMatch | None = None
) -> BugReport:
    """Apply a partial update under a row lock (`SELECT ... FOR UPDATE`) and commit.

    The lock serialises concurrent PATCHes of one bug: each sees the previous one's result, so the workflow check
    runs on the real current status and no update is lost. NotFound for an unknown id, PreconditionFailed when
    `precondition` (If-Match) does not match the locked version, Conflict for an illegal status change (nothing is
    written then).
    """
    bug = get_or_404(BugReport, bug_id, "Bug", for_update=True)
    at = now or utcnow()
    changes = dict(fields)
    target = changes.pop("status", None)
    with rollback_on(Conflict, PreconditionFailed):
        if precondition is not None:
            precondition.check(bug.version)
        if target is not None:
            workflow.transition(bug, Status(target), at)
    for name, value in changes.items():
        setattr(bug, name, value)
    bug.version += 1
    bug.updated_at = at
    _commit_detached(bug)
    cache.invalidate(CACHE_NAME)
    return bug


def add_comment(bug_id: int, comment: str, author: str) -> BugComment:
    """Append a comment to an existing bug and commit; NotFound if the bug does not exist."""
    get_or_404(BugReport, bug_id, "Bug")
    entry = BugComment(bug_id=bug_id, comment=comment, author=author, created_at=utcnow())
    db.session.add(entry)
    _commit_detached(entry)
    return entry

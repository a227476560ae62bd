"""The bug workflow: which status changes are allowed and what they do to `resolved_at` / `closed_at`.

Allowed transitions (anything else is 409 Conflict naming `from` and `to`; setting the current status again is a
no-op, so a retried PATCH stays idempotent):

    open         -> in_progress | resolved | closed | wont_fix
    in_progress  -> open | resolved | closed | wont_fix
    resolved     -> open (reopen) | closed
    closed       -> open (reopen)
    wont_fix     -> open (reopen) | closed

Timestamps belong to the workflow, never to the client:

    -> open, in_progress   resolved_at and closed_at cleared
    -> resolved            resolved_at = now, closed_at cleared
    -> closed              closed_at = now (resolved_at kept when the bug was resolved first)
    -> wont_fix            closed_at = now, resolved_at cleared

So a bug is unresolved exactly when neither timestamp is set, which the trends rely on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from backend.base.errors import Conflict
from backend.bugs.enums import Status

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED, Status.WONT_FIX}),
    Status.IN_PROGRESS: frozenset({Status.OPEN, Status.RESOLVED, Status.CLOSED, Status.WONT_FIX}),
    Status.RESOLVED: frozenset({Status.OPEN, Status.CLOSED}),
    Status.CLOSED: frozenset({Status.OPEN}),
    Status.WONT_FIX: frozenset({Status.OPEN, Status.CLOSED}),
}


class Trackable(Protocol):
    """What the workflow reads and writes on a bug."""

    status: str
    resolved_at: datetime | None
    closed_at: datetime | None


def allowed_targets(current: Status) -> list[Status]:
    """Statuses reachable from `current`, in declaration order."""
    return [status for status in Status if status in TRANSITIONS[current]]


def transition(bug: Trackable, target: Status, now: datetime) -> None:
    """Move `bug` to `target`, setting or clearing its timestamps; Conflict when the move is not allowed."""
    current = Status(bug.status)
    if target == current:
        return
    if target not in TRANSITIONS[current]:
        raise Conflict(
            f"A bug cannot go from {current.value} to {target.value}",
            {"from": current.value, "to": target.value, "allowed": [s.value for s in allowed_targets(current)]},
            code="illegal_transition",
        )
    bug.status = target.value
    if target in (Status.OPEN, Status.IN_PROGRESS):
        bug.resolved_at = bug.closed_at = None
    elif target == Status.RESOLVED:
        bug.resolved_at, bug.closed_at = now, None
    elif target == Status.CLOSED:
        bug.closed_at = now
    else:
        bug.resolved_at, bug.closed_at = None, now

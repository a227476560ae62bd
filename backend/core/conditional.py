"""Optimistic concurrency over HTTP: a row's `version` is its ETag; updates honour If-Match.

A stale If-Match is 412 (nothing written); a missing one is accepted unless REQUIRE_IF_MATCH is set (then 428).
Entity tags are strong and compared strongly (RFC 9110 §13.1.1): `"3"` matches version 3, `W/"3"` never does,
`*` matches any version of an existing resource. Routes parse the header with `if_match()`; services call
`IfMatch.check(version)` on the row they locked, so the comparison and the write see the same version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, request

from backend.base.errors import ApiError
from backend.core.contract import reads, sends

F = TypeVar("F", bound=Callable[..., Any])

# Statuses to declare on a conditional update, beyond BODY_ERRORS: stale If-Match, missing one when required.
CONDITIONAL_ERRORS = (412, 428)


class PreconditionFailed(ApiError):
    status, code = 412, "precondition_failed"


class PreconditionRequired(ApiError):
    status, code = 428, "precondition_required"


def etag(version: int) -> str:
    """The strong entity tag of a version: `"3"`."""
    return f'"{version}"'


@dataclass(frozen=True)
class IfMatch:
    """The entity tags an update is conditional on; `tags` None stands for `*`."""

    tags: frozenset[str] | None

    def check(self, version: int) -> None:
        """PreconditionFailed unless the current `version` is one of the tags."""
        current = etag(version)
        if self.tags is not None and current not in self.tags:
            raise PreconditionFailed(
                "The resource changed since it was read: If-Match does not match its ETag",
                {"etag": current, "if_match": sorted(self.tags)},
                headers={"ETag": current},
            )


def if_match() -> IfMatch | None:
    """The request's If-Match precondition, None when absent (PreconditionRequired when REQUIRE_IF_MATCH)."""
    raw = request.headers.get("If-Match", "").strip()
    if not raw:
        if current_app.config["SETTINGS"].require_if_match:
            raise PreconditionRequired(
                "This update needs an If-Match header carrying the ETag of the version it changes",
                {"header": "If-Match"},
            )
        return None
    if raw == "*":
        return IfMatch(None)
    return IfMatch(frozenset(tag.strip() for tag in raw.split(",") if tag.strip()))


def conditional(view: F) -> F:
    """Document a conditional update: it reads If-Match and sends the ETag (of the new version on 200, of the
    current one on 412)."""
    return sends(412, "ETag")(sends(200, "ETag")(reads("If-Match")(view)))

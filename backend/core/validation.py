"""Small pydantic building blocks shared by the domains' schemas, each documented exactly as it validates."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import PlainSerializer

# Every character str.isspace() (so str.strip()) treats as whitespace, written so that Python, ECMA-262 (OpenAPI
# tools) and Rust (pydantic) regular expressions read the class the same way.
_WHITESPACE = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NON_BLANK_CHARACTER = re.compile(f"[^{_WHITESPACE}]")
# PostgreSQL text cannot hold NUL, so no stored or searched string may contain one.
# `json_schema_extra` of a Field validated by `no_nul` / `not_blank`: the documented schema refuses what they refuse.
NO_NUL: dict[str, Any] = {"pattern": r"^[^\x00]*$"}
NOT_BLANK: dict[str, Any] = {"pattern": rf"^[^\x00]*[^\x00{_WHITESPACE}][^\x00]*$"}


NUL = "\x00"


def no_nul(value: str) -> str:
    """Reject strings holding a NUL character (PostgreSQL cannot store it)."""
    if NUL in value:
        raise ValueError("must not contain NUL characters")
    return value


def not_blank(value: str) -> str:
    """Reject strings made only of whitespace, or holding a NUL (length limits are the Field's job)."""
    if not _NON_BLANK_CHARACTER.search(no_nul(value)):
        raise ValueError("must not be blank")
    return value


def without_default(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of an optional field whose `None` default means "omitted", not a documented value."""
    schema.pop("default", None)


def optional_not_null(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of an `X | None = None` field that refuses an explicit null (None means "omitted").

    The document shows only X, without the null branch and the null default, as the validator behaves.
    """
    without_default(schema)
    branches = schema.pop("anyOf", [])
    non_null = [branch for branch in branches if branch != {"type": "null"}]
    if len(non_null) == 1:
        schema.update(non_null[0])
    elif non_null:
        schema["anyOf"] = non_null


def split_comma_list(value: object) -> object:
    """`"a, b"` → `["a", "b"]` for list filters in a query string (spaces around items ignored, none dropped)."""
    if isinstance(value, str):
        return [item.strip(" ") for item in value.split(",")]
    return value


def comma_list_pattern(choices: Iterable[str]) -> str:
    """The regular expression of what `split_comma_list` followed by a check against `choices` accepts."""
    words = list(choices)
    # Plain words only: no escaping needed, and escapes such as `\-` are invalid in ECMA-262 unicode mode.
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", word) for word in words):
        raise ValueError(f"comma-list choices must be plain words: {words}")
    item = " *(?:" + "|".join(words) + ") *"
    return f"^{item}(?:,{item})*$"


def utc_z(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; a naive value is UTC (database sessions run in UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


# A response timestamp: RFC 3339 with a zone, as `format: date-time` promises (a naive ISO string is not one).
UtcDatetime = Annotated[datetime, PlainSerializer(utc_z, return_type=str, when_used="json")]

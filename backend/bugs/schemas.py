"""Pydantic schemas of the bug API.

Wire convention: **camelCase** field names in request bodies, responses and query parameters (`deviceId`,
`createdAt`, `resolvedAt`, ...), generated from the snake_case attributes by `to_camel`. Bodies and the query
string also accept the snake_case spelling (`device_id`) so `?device_id=` keeps working. Enum values stay lower
snake case (`in_progress`, `wont_fix`). Timestamps are ISO 8601 in UTC with a `Z` suffix.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from backend.bugs import models
from backend.bugs.enums import Category, Priority, Severity, Status
from backend.core.validation import (
    NO_NUL,
    NOT_BLANK,
    UtcDatetime,
    comma_list_pattern,
    no_nul,
    not_blank,
    optional_not_null,
    split_comma_list,
)

CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True)
CAMEL_STRICT = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


Title = Annotated[
    str, Field(min_length=1, max_length=models.TITLE_MAX, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)
]
Description = Annotated[str, Field(max_length=models.DESCRIPTION_MAX, json_schema_extra=NO_NUL), AfterValidator(no_nul)]
DeviceId = Annotated[
    str,
    Field(min_length=1, max_length=models.DEVICE_ID_MAX, pattern=models.DEVICE_ID_PATTERN),
]
Person = Annotated[
    str, Field(min_length=1, max_length=models.PERSON_MAX, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)
]
CommentText = Annotated[
    str, Field(min_length=1, max_length=models.COMMENT_MAX, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)
]

EXAMPLE: dict[str, Any] = {
    "title": "Test sensor timeout",
    "description": "VL53L8CH stops responding after 2 hours",
    "severity": "high",
    "priority": "urgent",
    "category": "hardware",
    "deviceId": "ESP32_LL_01",
}


class BugCreate(BaseModel):
    """Body of POST /api/bugs/ (camelCase). The status always starts at `open`; the workflow owns the dates."""

    model_config = ConfigDict(**CAMEL_STRICT, json_schema_extra={"example": EXAMPLE})

    title: Title
    description: Description = ""
    severity: Severity = Severity.MEDIUM
    priority: Priority = Priority.MEDIUM
    category: Category = Category.OTHER
    device_id: DeviceId | None = None
    reporter: Person | None = None
    assignee: Person | None = None


class BugPatch(BaseModel):
    """Body of PATCH /api/bugs/<id> (camelCase): any non-empty subset of the fields.

    `deviceId`, `reporter` and `assignee` may be set to null to clear them; the others may not. `status` moves
    through the workflow (illegal moves are 409). `resolvedAt`/`closedAt` are not accepted: the workflow sets them.
    """

    model_config = ConfigDict(**CAMEL_STRICT, json_schema_extra={"minProperties": 1})

    # Omitted means unchanged; null is refused for these, so the documented schema does not admit it.
    title: Title | None = Field(None, json_schema_extra=optional_not_null)
    description: Description | None = Field(None, json_schema_extra=optional_not_null)
    severity: Severity | None = Field(None, json_schema_extra=optional_not_null)
    priority: Priority | None = Field(None, json_schema_extra=optional_not_null)
    status: Status | None = Field(None, json_schema_extra=optional_not_null)
    category: Category | None = Field(None, json_schema_extra=optional_not_null)
    device_id: DeviceId | None = None
    reporter: Person | None = None
    assignee: Person | None = None

    @field_validator("title", "description", "severity", "priority", "status", "category")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> BugPatch:
        if not self.model_fields_set:
            raise ValueError("at least one field is required")
        return self

    def changes(self) -> dict[str, Any]:
        """Only the fields the client sent, by attribute name, enums as their string values."""
        return self.model_dump(mode="json", include=set(self.model_fields_set))


class BugCommentIn(BaseModel):
    """Body of POST /api/bugs/<id>/comments."""

    model_config = ConfigDict(
        **CAMEL_STRICT, json_schema_extra={"example": {"comment": "Reproduced on line 2", "author": "Test User"}}
    )

    comment: CommentText
    author: Person


class BugCommentOut(BaseModel):
    """A stored comment (camelCase)."""

    model_config = ConfigDict(**CAMEL, from_attributes=True)

    id: int
    bug_id: int
    comment: str
    author: str
    created_at: UtcDatetime


class BugOut(BaseModel):
    """A stored bug report (camelCase). `version` grows by one with every accepted PATCH."""

    model_config = ConfigDict(**CAMEL, from_attributes=True)

    id: int
    title: str
    description: str
    severity: Severity
    priority: Priority
    status: Status
    category: Category
    device_id: str | None
    reporter: str | None
    assignee: str | None
    version: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
    resolved_at: UtcDatetime | None
    closed_at: UtcDatetime | None


class BugDetail(BugOut):
    """A bug report with its comments, oldest first."""

    comments: list[BugCommentOut]


SORTABLE = ("id", "title", "severity", "priority", "status", "category", "createdAt", "updatedAt", "resolvedAt")
# Each sort key by its camelCase name or its snake_case spelling, with or without the `-` of descending order.
SORT_KEYS = {
    f"{sign}{spelling}": f"{sign}{name}"
    for name in SORTABLE
    for spelling in (name, to_snake(name))
    for sign in ("", "-")
}


def _sort_keys(value: list[str]) -> list[str]:
    keys = []
    for item in value:
        if item not in SORT_KEYS:
            raise ValueError(f"cannot sort on {item!r}; sortable: {', '.join(SORTABLE)} (prefix - for descending)")
        keys.append(SORT_KEYS[item])
    return keys


def _comma_list(enum: type[Severity | Priority | Status | Category]) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "pattern": comma_list_pattern(enum),
            "description": f"one value or a comma-separated list of: {', '.join(enum)}",
        }
    )


class BugQuery(BaseModel):
    """Query string of GET /api/bugs/. Filters combine with AND; a comma-separated list matches any of its values."""

    model_config = CAMEL_STRICT

    status: Annotated[list[Status], BeforeValidator(split_comma_list), _comma_list(Status)] | None = None
    severity: Annotated[list[Severity], BeforeValidator(split_comma_list), _comma_list(Severity)] | None = None
    category: Annotated[list[Category], BeforeValidator(split_comma_list), _comma_list(Category)] | None = None
    device_id: DeviceId | None = None
    q: (
        Annotated[
            str,
            Field(min_length=1, max_length=200, description="case-insensitive search", json_schema_extra=NO_NUL),
            AfterValidator(no_nul),
        ]
        | None
    ) = None
    sort: Annotated[
        list[str],
        BeforeValidator(split_comma_list),
        AfterValidator(_sort_keys),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": comma_list_pattern(SORT_KEYS),
                "default": "-createdAt",
                "description": f"comma-separated keys among {', '.join(SORTABLE)}; prefix - for descending",
            }
        ),
    ] = Field(default_factory=lambda: ["-createdAt"])  # a factory: the documented default stays the string
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=2_147_483_647)] = 0

    def link_args(self) -> dict[str, Any]:
        """The query as it goes back into pagination links (camelCase names, lists comma-joined)."""
        args = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {key: ",".join(value) if isinstance(value, list) else value for key, value in args.items()}


class BugTrendsQuery(BaseModel):
    """Query string of GET /api/bugs/metrics/trends."""

    model_config = CAMEL_STRICT

    days: Annotated[int, Field(ge=1, le=365)] = 30


class BugSummary(BaseModel):
    """Bug statistics. "Open" means unresolved: status `open` or `in_progress`. Durations are in hours."""

    model_config = CAMEL

    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]
    by_category: dict[str, int]
    open_by_severity: dict[str, int]
    critical_open: int
    resolved_today: int
    avg_resolution_hours: float | None
    median_resolution_hours: float | None


class BugTrendPoint(BaseModel):
    """One UTC day: bugs created, bugs resolved, bugs still unresolved at the end of the day."""

    model_config = CAMEL

    date: dt.date
    created: int
    resolved: int
    open: int


class BugTrends(BaseModel):
    """One point per day, oldest first, ending today (UTC); days without activity are zero-filled."""

    model_config = CAMEL

    days: int
    trends: list[BugTrendPoint]

"""Tables `bug_reports` and `bug_comments`; the `bug_metrics` view is described in `backend.bugs`.

Enumerated columns are VARCHAR with a CHECK constraint (no PostgreSQL ENUM type: adding a value is then a plain
constraint swap). Every timestamp is `timestamptz` and written in UTC by the service layer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Date, DateTime, Float, ForeignKey, Integer, String, Text, column, func, table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.bugs.enums import Category, Priority, Severity, Status, values
from backend.extensions import db

TITLE_MAX = 200
DESCRIPTION_MAX = 10_000
# A report may name any SQAL device: the same id rule as backend/sqal/vocabulary.py (ID_PATTERN, ID_MAX_LENGTH),
# restated because domains never import each other (tests/bugs/test_models_device_id.py checks they agree).
DEVICE_ID_MAX = 100
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
PERSON_MAX = 100
COMMENT_MAX = 5_000


def _one_of(column: str, enum: type[Severity | Priority | Status | Category]) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values(enum))
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class BugReport(db.Model):  # type: ignore[name-defined]
    """A reported defect and where it is in the workflow."""

    __tablename__ = "bug_reports"
    __table_args__ = (
        _one_of("severity", Severity),
        _one_of("priority", Priority),
        _one_of("status", Status),
        _one_of("category", Category),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    severity: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    priority: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    category: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_MAX), index=True)
    reporter: Mapped[str | None] = mapped_column(String(PERSON_MAX))
    assignee: Mapped[str | None] = mapped_column(String(PERSON_MAX))
    # Incremented by every PATCH under the row lock: a lost update would show as a missing version.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    comments: Mapped[list[BugComment]] = relationship(
        back_populates="bug",
        order_by="(BugComment.created_at, BugComment.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class BugComment(db.Model):  # type: ignore[name-defined]
    """A comment on a bug; deleted with it (ON DELETE CASCADE)."""

    __tablename__ = "bug_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bug_id: Mapped[int] = mapped_column(ForeignKey("bug_reports.id", ondelete="CASCADE"), nullable=False, index=True)
    comment: Mapped[str] = mapped_column(Text, nullable=False)
    author: Mapped[str] = mapped_column(String(PERSON_MAX), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    bug: Mapped[BugReport] = relationship(back_populates="comments")


# The `bug_metrics` VIEW (migration 0003_bugs): per UTC day of creation x severity x current status, how many
# bugs were reported, how many of those are resolved, and their summed resolution time. A lightweight table
# clause, not a model: it stays out of `db.metadata`, so nothing tries to create, compare or truncate it.
bug_metrics = table(
    "bug_metrics",
    column("day", Date),
    column("severity", String),
    column("status", String),
    column("bugs", Integer),
    column("resolved", Integer),
    column("resolution_seconds", Float),
)

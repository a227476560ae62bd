"""bug tracking: bug_reports, bug_comments (cascade) and the bug_metrics view

Revision ID: 0003_bugs
Revises: 0002_sqal
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_bugs"
down_revision = "0002_sqal"
branch_labels = None
depends_on = None

SEVERITIES = ("low", "medium", "high", "critical")
PRIORITIES = ("low", "medium", "high", "urgent")
STATUSES = ("open", "in_progress", "resolved", "closed", "wont_fix")
CATEGORIES = ("hardware", "software", "sensor", "network", "data", "other")


def _one_of(column: str, allowed: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(value) for value in allowed)})", name=column)


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    default = None if nullable else sa.text("now()")
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "bug_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("reporter", sa.String(100), nullable=True),
        sa.Column("assignee", sa.String(100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("resolved_at", nullable=True),
        _timestamp("closed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bug_reports")),
        _one_of("severity", SEVERITIES),
        _one_of("priority", PRIORITIES),
        _one_of("status", STATUSES),
        _one_of("category", CATEGORIES),
    )
    for column in ("severity", "status", "category", "device_id", "created_at", "resolved_at"):
        op.create_index(op.f(f"ix_bug_reports_{column}"), "bug_reports", [column])

    op.create_table(
        "bug_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bug_id", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bug_comments")),
        sa.ForeignKeyConstraint(
            ["bug_id"],
            ["bug_reports.id"],
            name=op.f("fk_bug_comments_bug_id_bug_reports"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_bug_comments_bug_id"), "bug_comments", ["bug_id"])

    # Daily aggregates as a view (see backend/bugs/__init__.py for why not a maintained table).
    op.execute(
        """
        CREATE VIEW bug_metrics AS
        SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
               severity,
               status,
               count(*)::integer AS bugs,
               count(resolved_at)::integer AS resolved,
               coalesce(sum(extract(epoch FROM resolved_at - created_at)), 0)::double precision
                   AS resolution_seconds
        FROM bug_reports
        GROUP BY 1, 2, 3
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS bug_metrics")
    op.drop_index(op.f("ix_bug_comments_bug_id"), table_name="bug_comments")
    op.drop_table("bug_comments")
    for column in ("resolved_at", "created_at", "device_id", "category", "status", "severity"):
        op.drop_index(op.f(f"ix_bug_reports_{column}"), table_name="bug_reports")
    op.drop_table("bug_reports")

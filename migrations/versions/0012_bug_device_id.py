"""bug_reports.device_id as long as a SQAL device id (100 characters, was 64)

Revision ID: 0012_bug_device_id
Revises: 0011_product_version
Create Date: 2026-12-06

A report may name any device the SQAL domain accepts. Widening a varchar is a catalogue change in PostgreSQL: the
table and its index are not rewritten. The downgrade cuts longer ids to 64 characters.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_bug_device_id"
down_revision = "0011_product_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("bug_reports", "device_id", type_=sa.String(100), existing_type=sa.String(64))


def downgrade() -> None:
    op.alter_column(
        "bug_reports",
        "device_id",
        type_=sa.String(64),
        existing_type=sa.String(100),
        postgresql_using="left(device_id, 64)",
    )

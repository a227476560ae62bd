"""products.version (ETag / If-Match) and idempotency_keys (the PostgreSQL fallback of Idempotency-Key)

Revision ID: 0011_product_version
Revises: 0010_sample_aggregates
Create Date: 2026-12-06

`products.version` starts at 1 for every existing row and grows by one with every update, like
`bug_reports.version`. A NOT NULL column with a constant default is a catalogue change (PostgreSQL 11+): the
table is not rewritten. `idempotency_keys` holds the stored first response of a create sent with an
Idempotency-Key while Redis is unavailable (Redis holds them otherwise); rows past `expires_at` are ignored and
replaced.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_product_version"
down_revision = "0010_sample_aggregates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_column("products", "version")

"""api_keys.expires_at: optional expiry of an API key

Revision ID: 0008_api_key_expiry
Revises: 0007_sample_key_content_hash
Create Date: 2026-12-06

A key created with `flask keys create --expires 30d` (or an ISO date) is refused with 401 `api_key_expired` from
that instant on; NULL never expires (every existing key). Adding a nullable column without a default rewrites
nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_api_key_expiry"
down_revision = "0007_sample_key_content_hash"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "expires_at")

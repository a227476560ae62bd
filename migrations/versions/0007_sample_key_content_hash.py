"""SQAL ledger: a content hash per stored (device_id, sample_id), so a resend with other content is a `conflict`

Revision ID: 0007_sample_key_content_hash
Revises: 0006_reference_frames
Create Date: 2026-12-06

`sensor_sample_keys.content_hash` (bytea, 16 bytes: blake2b-128 of the sample's stored columns, as the JSON the
insert sends) lets ingestion tell a resend (same hash: `duplicate`) from a different sample under an id already used
(`conflict`, docs/protocol.md §5), with the primary-key lookup the ledger already does. Keys stored before this
revision have no hash (NULL) and keep being acked `duplicate` (they could be backfilled from `sensor_samples`, but
that reads every stored sample: not in a migration).

`sensor_sample_keys` is a plain table (never a hypertable): adding a nullable column without a default rewrites
nothing and only takes a brief ACCESS EXCLUSIVE lock. Downgrade drops the column (the hashes are lost; the ledger's
exactly-once guarantee is untouched).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_sample_key_content_hash"
down_revision = "0006_reference_frames"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sensor_sample_keys", sa.Column("content_hash", sa.LargeBinary(16), nullable=True))


def downgrade() -> None:
    op.drop_column("sensor_sample_keys", "content_hash")

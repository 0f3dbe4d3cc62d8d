"""Idempotency keys name the process running their first request.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("owner", sa.String(80), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table; batch mode does that where needed.
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("owner")

"""MCP approvals whose call a response took on, so that an approved call runs once.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_claims",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("approval_request_id", sa.String(64), primary_key=True),
        sa.Column("response_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("approval_claims")

"""Responses and their input and output items.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("previous_response_id", sa.String(80), nullable=True),
        sa.Column("conversation_id", sa.String(80), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "response_items",
        sa.Column(
            "response_id",
            sa.String(80),
            sa.ForeignKey("responses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("is_output", sa.Boolean, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_response_items_id", "response_items", ["id"])


def downgrade() -> None:
    op.drop_table("response_items")
    op.drop_table("responses")

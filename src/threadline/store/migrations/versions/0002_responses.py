"""Responses, their items and event logs, the workers that run them, idempotency keys.

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
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("previous_response_id", sa.String(80), nullable=True),
        sa.Column("conversation_id", sa.String(80), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("background", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("owner", sa.String(80), nullable=True),
        sa.Column("job", sa.Text, nullable=True),
    )
    op.create_index("ix_responses_status", "responses", ["status"])
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
    op.create_table(
        "response_events",
        sa.Column(
            "response_id",
            sa.String(80),
            sa.ForeignKey("responses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sequence_number", sa.BigInteger, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("workers")
    op.drop_table("response_events")
    op.drop_table("response_items")
    op.drop_table("responses")

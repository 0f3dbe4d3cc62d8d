"""Indexes for the console's listings: a project's conversations and responses newest first,
every project's responses newest first (an admin's list), and the responses continuing a
response (a previous_response_id chain's branches); every project's conversations too. The
listings' indexes end with the id, as their order does, so a page is read in order without sorting.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_conversations_project_created_at", "conversations", ["project", "created_at", "id"])
    op.create_index("ix_conversations_created_at", "conversations", ["created_at", "id"])
    op.create_index("ix_responses_project_created_at", "responses", ["project", "created_at", "id"])
    op.create_index("ix_responses_created_at", "responses", ["created_at", "id"])
    op.create_index("ix_responses_previous_response_id", "responses", ["previous_response_id"])


def downgrade() -> None:
    op.drop_index("ix_responses_previous_response_id", "responses")
    op.drop_index("ix_responses_created_at", "responses")
    op.drop_index("ix_responses_project_created_at", "responses")
    op.drop_index("ix_conversations_created_at", "conversations")
    op.drop_index("ix_conversations_project_created_at", "conversations")

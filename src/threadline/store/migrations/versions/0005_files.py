"""Files and their bytes, vector stores, their files (the ingestion queue) and file batches.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_files_project_created_at", "files", ["project", "created_at"])
    op.create_table(
        "file_parts",
        sa.Column("file_id", sa.String(80), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("embedder", sa.String(200), nullable=True),
    )
    op.create_index("ix_vector_stores_project_created_at", "vector_stores", ["project", "created_at"])
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(80), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("file_id", sa.String(80), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("batch_id", sa.String(80), nullable=True),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("chunking_strategy", sa.Text, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("owner", sa.String(80), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retry_at", sa.Float, nullable=True),
    )
    op.create_index("ix_vector_store_files_status", "vector_store_files", ["status"])
    op.create_index("ix_vector_store_files_batch_id", "vector_store_files", ["batch_id"])
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("vector_store_id", sa.String(80), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    for table in ("vector_store_file_batches", "vector_store_files", "vector_stores", "file_parts", "files"):
        op.drop_table(table)

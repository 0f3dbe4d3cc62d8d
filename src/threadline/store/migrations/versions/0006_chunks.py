"""Chunks of vector store files, with each database's own keyword index, and pgvector where it can be had.

SQLite: chunks_fts, an FTS5 table over the chunks' text (porter stemming), kept in step by
triggers, so a cascade from a deleted vector store, vector store file or File reaches it too.
PostgreSQL: a generated tsvector column ('english') with a GIN index; and, where the vector
extension can be created, an embedding_vector column that pgvector compares inside the
database. Without it the embeddings are compared in Threadline (exact, as with pgvector).

Revision ID: 0006
Revises: 0005
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline")


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(80), nullable=False),
        sa.Column("file_id", sa.String(80), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(
            ["vector_store_id", "file_id"],
            ["vector_store_files.vector_store_id", "vector_store_files.file_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_chunks_vector_store_id_file_id", "chunks", ["vector_store_id", "file_id", "position"])
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_keywords()
    else:
        _postgresql_keywords()
        _postgresql_vectors()


def _sqlite_keywords() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE chunks_fts USING fts5("
        "text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute("CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END")
    op.execute(
        "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
        "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END"
    )


def _postgresql_keywords() -> None:
    op.execute("ALTER TABLE chunks ADD COLUMN text_search tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED")
    op.execute("CREATE INDEX ix_chunks_text_search ON chunks USING GIN (text_search)")


def _postgresql_vectors() -> None:
    connection = op.get_bind()
    available = connection.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").first()
    if available is None:
        log.info("PostgreSQL has no pgvector: embeddings are compared in Threadline.")
        return
    try:
        with connection.begin_nested():  # a refusal (no privilege) must not abort the migration
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except sa.exc.DBAPIError as error:
        log.warning("Could not create PostgreSQL's vector extension (%s): embeddings are compared in Threadline.", error.orig)
        return
    # No fixed dimensions: each vector store keeps the length of its own embedder's vectors.
    op.execute("ALTER TABLE chunks ADD COLUMN embedding_vector vector")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE chunks_fts")
    op.drop_table("chunks")

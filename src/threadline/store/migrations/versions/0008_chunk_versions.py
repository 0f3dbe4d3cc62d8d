"""A version per vector store that every change to its chunks moves on, for the searcher's cache
of embeddings (retrieval/embedding_cache.py): a process knows its copy of a store's embeddings
is current by reading one row, whichever process changed the chunks.

Triggers keep it, so every path that changes chunks (ingestion, removal, a cascade from a
deleted vector store, vector store file or File) moves it: per row on SQLite, per statement on
PostgreSQL (one upsert per batch written). A store with no row is at version 0.

With it, an index on vector store files by store and status: a search reads the few files of
a store that are not completed without reading all the others.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_BUMP = (
    "INSERT INTO chunk_versions (vector_store_id, version) VALUES ({row}.vector_store_id, 1) "
    "ON CONFLICT (vector_store_id) DO UPDATE SET version = version + 1;"
)
POSTGRESQL_BUMP = """
CREATE FUNCTION bump_chunk_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chunk_versions (vector_store_id, version)
    SELECT DISTINCT vector_store_id, 1 FROM changed_chunks
    ON CONFLICT (vector_store_id) DO UPDATE SET version = chunk_versions.version + 1;
    RETURN NULL;
END $$
"""
POSTGRESQL_BUMP_UPDATED = """
CREATE FUNCTION bump_updated_chunk_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chunk_versions (vector_store_id, version)
    SELECT vector_store_id, 1 FROM changed_chunks UNION SELECT vector_store_id, 1 FROM previous_chunks
    ON CONFLICT (vector_store_id) DO UPDATE SET version = chunk_versions.version + 1;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "chunk_versions",
        sa.Column("vector_store_id", sa.String(80), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_vector_store_files_vector_store_id_status", "vector_store_files", ["vector_store_id", "status"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE TRIGGER chunk_versions_insert AFTER INSERT ON chunks BEGIN {SQLITE_BUMP.format(row='new')} END")
        op.execute(f"CREATE TRIGGER chunk_versions_delete AFTER DELETE ON chunks BEGIN {SQLITE_BUMP.format(row='old')} END")
        op.execute(
            "CREATE TRIGGER chunk_versions_update AFTER UPDATE ON chunks BEGIN "
            f"{SQLITE_BUMP.format(row='old')} {SQLITE_BUMP.format(row='new')} END"
        )
        return
    op.execute(POSTGRESQL_BUMP)
    op.execute(POSTGRESQL_BUMP_UPDATED)
    op.execute(
        "CREATE TRIGGER chunk_versions_insert AFTER INSERT ON chunks REFERENCING NEW TABLE AS changed_chunks "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_chunk_versions()"
    )
    op.execute(
        "CREATE TRIGGER chunk_versions_delete AFTER DELETE ON chunks REFERENCING OLD TABLE AS changed_chunks "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_chunk_versions()"
    )
    op.execute(
        "CREATE TRIGGER chunk_versions_update AFTER UPDATE ON chunks REFERENCING OLD TABLE AS previous_chunks NEW TABLE AS changed_chunks "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_updated_chunk_versions()"
    )


def downgrade() -> None:
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER chunk_versions_{name}" + ("" if op.get_bind().dialect.name == "sqlite" else " ON chunks"))
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION bump_chunk_versions()")
        op.execute("DROP FUNCTION bump_updated_chunk_versions()")
    op.drop_index("ix_vector_store_files_vector_store_id_status", "vector_store_files")
    op.drop_table("chunk_versions")

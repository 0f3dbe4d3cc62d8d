"""The schema, as SQLAlchemy Core tables. JSON is stored as text that Threadline encodes itself."""

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, ForeignKeyConstraint, Index, Integer, LargeBinary, MetaData, String, Table, Text, TypeDecorator
from sqlalchemy import false as sa_false

metadata = MetaData()


class ObjectId(TypeDecorator):
    """An object's id. PostgreSQL refuses a NUL character in a query parameter; no issued id
    holds one, so it becomes a character no id holds either, and the lookup finds nothing."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


conversations = Table(
    "conversations",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),
    # The next item's position: appends take a range from it, which also serializes them.
    Column("next_position", BigInteger, nullable=False, server_default="0"),
    Index("ix_conversations_project_created_at", "project", "created_at", "id"),
    Index("ix_conversations_created_at", "created_at", "id"),
)

conversation_items = Table(
    "conversation_items",
    metadata,
    Column(
        "conversation_id",
        ObjectId(80),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", BigInteger, primary_key=True),
    Column("id", ObjectId(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_conversation_items_id", "id", unique=True),
)

responses = Table(
    "responses",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("model", String(200), nullable=False),
    Column("previous_response_id", ObjectId(80), nullable=True),
    Column("conversation_id", ObjectId(80), nullable=True),
    # The Response object as the API returns it, output included.
    Column("data", Text, nullable=False),
    Column("background", Boolean, nullable=False, server_default=sa_false()),
    # The process generating it, while queued or in progress work is owned by one.
    Column("owner", ObjectId(80), nullable=True),
    # What a worker needs to run a queued background response.
    Column("job", Text, nullable=True),
    Index("ix_responses_status", "status"),
    Index("ix_responses_project_created_at", "project", "created_at", "id"),
    Index("ix_responses_created_at", "created_at", "id"),
    Index("ix_responses_previous_response_id", "previous_response_id"),
)

# A response's input items and then its output items, in order: for input_items listings,
# previous_response_id chains and item_reference lookups.
response_items = Table(
    "response_items",
    metadata,
    Column("response_id", ObjectId(80), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("id", ObjectId(120), nullable=False),
    Column("is_output", Boolean, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_response_items_id", "id"),
)

# The durable, ordered event log of background responses, for streams that resume.
response_events = Table(
    "response_events",
    metadata,
    Column("response_id", ObjectId(80), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence_number", BigInteger, primary_key=True),
    Column("data", Text, nullable=False),
)

# Live Threadline processes: work owned by a process whose heartbeat stops is recovered.
workers = Table(
    "workers",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("lease_expires_at", Float, nullable=False),
)

# Outcomes of create requests that carried an Idempotency-Key, so a retry gets the same answer.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    # Null while the first request is still running.
    Column("status_code", Integer, nullable=True),
    Column("body", Text, nullable=True),
    # The process running the first request: if it dies before an answer, the key is free again.
    Column("owner", ObjectId(80), nullable=True),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# MCP approvals whose call a response took on: an approved call runs once, however many
# requests answer its approval at the same time.
approval_claims = Table(
    "approval_claims",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("approval_request_id", String(64), primary_key=True),  # a digest of its id
    Column("response_id", ObjectId(80), nullable=False),
    Column("created_at", Float, nullable=False),
)

# created_at of files, vector stores and their files is kept to the microsecond, so lists keep
# the order of creation within a second; the API shows whole seconds.

# Uploaded files: the File object's fields, and its bytes in parts below, so every process
# reads them from the database.
files = Table(
    "files",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("filename", Text, nullable=False),
    Column("purpose", String(40), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    # False while the upload streams in: such a file is nobody's yet.
    Column("complete", Boolean, nullable=False, server_default=sa_false()),
    Index("ix_files_project_created_at", "project", "created_at"),
)

file_parts = Table(
    "file_parts",
    metadata,
    Column("file_id", ObjectId(80), ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

vector_stores = Table(
    "vector_stores",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_active_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    # name, description, metadata, expires_after, as the API returns them.
    Column("data", Text, nullable=False),
    # The embedder its chunks were embedded with (name and dimensions), set by the first file.
    Column("embedder", String(200), nullable=True),
    Index("ix_vector_stores_project_created_at", "project", "created_at"),
)

# A file attached to a vector store; also the ingestion queue: an `in_progress` row with no
# owner waits for a process, and one whose owner stopped heartbeating is taken up again.
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("vector_store_id", ObjectId(80), ForeignKey("vector_stores.id", ondelete="CASCADE"), primary_key=True),
    Column("file_id", ObjectId(80), ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(20), nullable=False),
    Column("batch_id", ObjectId(80), nullable=True),
    Column("usage_bytes", BigInteger, nullable=False, server_default="0"),
    Column("attributes", Text, nullable=False),
    Column("chunking_strategy", Text, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("owner", ObjectId(80), nullable=True),
    # Runs of this attachment that its embedder failed transiently; the next waits till retry_at.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("retry_at", Float, nullable=True),
    Index("ix_vector_store_files_status", "status"),
    Index("ix_vector_store_files_vector_store_id_status", "vector_store_id", "status"),  # migration 0008
    Index("ix_vector_store_files_batch_id", "batch_id"),
)

vector_store_file_batches = Table(
    "vector_store_file_batches",
    metadata,
    Column("id", ObjectId(80), primary_key=True),
    Column("vector_store_id", ObjectId(80), ForeignKey("vector_stores.id", ondelete="CASCADE"), nullable=False),
    Column("project", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("cancelled", Boolean, nullable=False, server_default=sa_false()),
)

# The searchable chunks of a vector store's files, each with its embedding (float32 bytes).
# Deleting a vector store, its file or the File deletes them through vector_store_files.
# Migration 0006 adds each database's own indexes, outside this description: on SQLite the
# FTS5 table chunks_fts (kept in step by triggers); on PostgreSQL the tsvector column
# text_search, and the pgvector column embedding_vector where the extension could be created.
chunks = Table(
    "chunks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("vector_store_id", ObjectId(80), nullable=False),
    Column("file_id", ObjectId(80), nullable=False),
    Column("position", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    ForeignKeyConstraint(
        ["vector_store_id", "file_id"],
        ["vector_store_files.vector_store_id", "vector_store_files.file_id"],
        ondelete="CASCADE",
    ),
    Index("ix_chunks_vector_store_id_file_id", "vector_store_id", "file_id", "position"),
)

# Moved on by triggers (migration 0008) whenever a vector store's chunks change: what tells a
# process that its cached copy of the store's embeddings is still current. No row: version 0.
chunk_versions = Table(
    "chunk_versions",
    metadata,
    Column("vector_store_id", ObjectId(80), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

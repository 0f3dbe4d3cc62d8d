"""The chunk index: a vector store file's chunks, their text indexed for keywords and their embeddings.

Rows of `chunks`; the keyword index follows them by itself (SQLite's FTS5 table through
triggers, PostgreSQL's generated tsvector column). Embeddings are float32 bytes in every
database; where PostgreSQL has pgvector they are also kept as `vector`, for comparing inside
the database, and SQLite compares the bytes themselves with sqlite-vec where it can load it
(retrieval/sqlite_vectors.py). `mode` tells which applies, decided once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import UserDefinedType

from threadline.retrieval import sqlite_vectors
from threadline.store.chunks import ROWS_PER_WRITE, clear_chunks, remove_chunks
from threadline.store.database import Database
from threadline.store.tables import chunks

log = logging.getLogger("threadline")

PGVECTOR = "pgvector"
SQLITE_VEC = "sqlite-vec"
# Embeddings compared by Threadline itself, exactly: SQLite without sqlite-vec, and PostgreSQL without pgvector.
IN_PROCESS = "in_process"

INSERT_WITH_VECTOR = text(
    "INSERT INTO chunks (vector_store_id, file_id, position, text, embedding, embedding_vector) "
    "VALUES (:vector_store_id, :file_id, :position, :text, :embedding, CAST(:embedding_vector AS vector))"
)


class Vector(UserDefinedType):
    """pgvector's type, of any length."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "vector"


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector."""
    return "[" + ",".join(map(str, vector.tolist())) + "]"


@dataclass
class ChunkRows:
    """Chunks ready to insert, and the bytes of their text (what usage_bytes counts)."""

    rows: list[dict]
    with_vector: bool
    usage_bytes: int


def _rows(
    vector_store_id: str, file_id: str, texts: list[str], embeddings: np.ndarray, start_position: int, with_vector: bool
) -> ChunkRows:
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = []
    usage_bytes = 0
    for position, (chunk_text, vector) in enumerate(zip(texts, vectors), start_position):
        row = {"vector_store_id": vector_store_id, "file_id": file_id, "position": position, "text": chunk_text, "embedding": vector.tobytes()}
        if with_vector:
            row["embedding_vector"] = vector_literal(vector)
        rows.append(row)
        usage_bytes += len(chunk_text.encode())
    return ChunkRows(rows, with_vector, usage_bytes)


class ChunkIndex:
    def __init__(self, database: Database, *, sqlite_vec: bool = True) -> None:
        """`sqlite_vec` False has SQLite's embeddings compared in Threadline even where sqlite-vec works."""
        self.database = database
        self.sqlite_vec = sqlite_vec
        self._mode: str | None = None
        self._mode_lock = asyncio.Lock()

    async def mode(self, connection: AsyncConnection | None = None) -> str:
        """PGVECTOR when the chunks table has its pgvector column (migration 0006 adds it where the
        extension could be created); SQLITE_VEC when SQLite's connections have sqlite-vec; else
        IN_PROCESS. Logged once."""
        if self._mode is None:
            async with self._mode_lock:
                if self._mode is None:
                    if connection is not None:
                        self._mode = await self._detect(connection)
                    else:
                        async with self.database.read() as reader:
                            self._mode = await self._detect(reader)
        return self._mode

    async def _detect(self, connection: AsyncConnection) -> str:
        if self.database.is_sqlite:
            why_not = sqlite_vectors.register() if self.sqlite_vec else "turned off"
            if why_not is None:
                try:
                    version = (await connection.execute(text("SELECT vec_version()"))).scalar()
                except OperationalError:  # a connection opened before sqlite-vec was registered
                    why_not = "this connection lacks it"
                else:
                    log.info("SQLite ranks vectors itself, with sqlite-vec %s", version)
                    return SQLITE_VEC
            log.info("SQLite's vectors are ranked in Threadline with numpy: no sqlite-vec (%s)", why_not)
            return IN_PROCESS
        query = text(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'chunks' AND column_name = 'embedding_vector'"
        )
        if (await connection.execute(query)).first() is not None:
            log.info("PostgreSQL ranks vectors itself, with pgvector")
            return PGVECTOR
        log.info("PostgreSQL's vectors are ranked in Threadline with numpy: no pgvector")
        return IN_PROCESS

    async def rows(
        self,
        vector_store_id: str,
        file_id: str,
        texts: list[str],
        embeddings: np.ndarray,
        start_position: int = 0,
        connection: AsyncConnection | None = None,
    ) -> ChunkRows:
        """Rows for `texts` (their positions from `start_position` on) with their embeddings, ready
        to insert; built in a worker thread, so a transaction that inserts them waits on nothing."""
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(texts)} chunks but {len(embeddings)} embeddings")
        with_vector = await self.mode(connection) == PGVECTOR
        return await asyncio.to_thread(_rows, vector_store_id, file_id, texts, embeddings, start_position, with_vector)

    async def insert(self, connection: AsyncConnection, rows: ChunkRows) -> None:
        """Insert rows made by `rows`, in the caller's transaction."""
        if rows.rows:
            await connection.execute(INSERT_WITH_VECTOR if rows.with_vector else insert(chunks), rows.rows)

    async def add(
        self, connection: AsyncConnection, vector_store_id: str, file_id: str, texts: list[str], embeddings: np.ndarray, start_position: int = 0
    ) -> int:
        """Add `texts` with their embeddings as the file's chunks from `start_position` on, in the
        caller's transaction; the bytes of their text. Keep to ROWS_PER_WRITE or so a call."""
        rows = await self.rows(vector_store_id, file_id, texts, embeddings, start_position, connection)
        await self.insert(connection, rows)
        return rows.usage_bytes

    async def replace(
        self, connection: AsyncConnection, vector_store_id: str, file_id: str, texts: list[str], embeddings: np.ndarray
    ) -> None:
        """The file's chunks in this vector store become `texts` (in order) with their embeddings,
        all in the caller's transaction: for a few chunks (ingestion writes in batches)."""
        await self.remove(connection, vector_store_id, file_id)
        await self.add(connection, vector_store_id, file_id, texts, embeddings)

    async def remove_batch(self, connection: AsyncConnection, vector_store_id: str, file_id: str | None = None, limit: int = ROWS_PER_WRITE) -> int:
        """Up to `limit` of the file's chunks in this vector store (of any file, with no `file_id`)
        removed in the caller's transaction; how many."""
        return await remove_chunks(connection, vector_store_id, file_id, limit)

    async def remove(self, connection: AsyncConnection, vector_store_id: str, file_id: str) -> None:
        """The file's chunks in this vector store go, all in the caller's transaction."""
        await connection.execute(delete(chunks).where(chunks.c.vector_store_id == vector_store_id, chunks.c.file_id == file_id))

    async def clear(self, vector_store_id: str, file_id: str | None = None) -> None:
        """The file's chunks in this vector store (every file's, with no `file_id`) removed, a
        batch per transaction of its own."""
        await clear_chunks(self.database, vector_store_id, file_id)

    async def chunks(self, vector_store_id: str, file_id: str) -> list[str]:
        """The file's chunks in this vector store, in order."""
        query = (
            select(chunks.c.text)
            .where(chunks.c.vector_store_id == vector_store_id, chunks.c.file_id == file_id)
            .order_by(chunks.c.position)
        )
        async with self.database.read() as connection:
            return list((await connection.execute(query)).scalars())

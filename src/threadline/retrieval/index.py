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

import numpy as np
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import UserDefinedType

from threadline.retrieval import sqlite_vectors
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

    async def replace(
        self, connection: AsyncConnection, vector_store_id: str, file_id: str, texts: list[str], embeddings: np.ndarray
    ) -> None:
        """The file's chunks in this vector store become `texts` (in order) with their embeddings,
        in the caller's transaction; whatever it had before goes, so ingesting again is harmless."""
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(texts)} chunks but {len(embeddings)} embeddings")
        await self.remove(connection, vector_store_id, file_id)
        if not texts:
            return
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        rows = [
            {"vector_store_id": vector_store_id, "file_id": file_id, "position": position, "text": chunk_text, "embedding": vector.tobytes()}
            for position, (chunk_text, vector) in enumerate(zip(texts, vectors))
        ]
        if await self.mode(connection) == PGVECTOR:
            for row, vector in zip(rows, vectors):
                row["embedding_vector"] = vector_literal(vector)
            await connection.execute(INSERT_WITH_VECTOR, rows)
        else:
            await connection.execute(insert(chunks), rows)

    async def remove(self, connection: AsyncConnection, vector_store_id: str, file_id: str) -> None:
        """The file's chunks in this vector store go, in the caller's transaction."""
        await connection.execute(delete(chunks).where(chunks.c.vector_store_id == vector_store_id, chunks.c.file_id == file_id))

    async def chunks(self, vector_store_id: str, file_id: str) -> list[str]:
        """The file's chunks in this vector store, in order."""
        query = (
            select(chunks.c.text)
            .where(chunks.c.vector_store_id == vector_store_id, chunks.c.file_id == file_id)
            .order_by(chunks.c.position)
        )
        async with self.database.read() as connection:
            return list((await connection.execute(query)).scalars())

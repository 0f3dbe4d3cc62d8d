"""Removing chunks a batch at a time.

A file of thousands of chunks is never deleted, or written, in one transaction: on SQLite
that would hold the one write lock (and every heartbeat waiting behind it) for seconds, since
each chunk's text also leaves the keyword index. A few hundred rows take a fraction of that.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.store.database import Database
from threadline.store.tables import chunks

# Chunks written or removed in one transaction.
ROWS_PER_WRITE = 128


async def remove_chunks(connection: AsyncConnection, vector_store_id: str, file_id: str | None = None, limit: int = ROWS_PER_WRITE) -> int:
    """Up to `limit` chunks of the file in this vector store (of any file, with no `file_id`)
    removed in the caller's transaction; how many."""
    where = [chunks.c.vector_store_id == vector_store_id]
    if file_id is not None:
        where.append(chunks.c.file_id == file_id)
    some = select(chunks.c.id).where(*where).limit(limit)
    removed = await connection.execute(delete(chunks).where(chunks.c.id.in_(some)))
    return removed.rowcount


async def clear_chunks(database: Database, vector_store_id: str, file_id: str | None = None) -> None:
    """Every chunk of the file in this vector store (of every file, with no `file_id`) removed,
    a batch per transaction."""
    while True:
        async with database.write() as connection:
            removed = await remove_chunks(connection, vector_store_id, file_id)
        if removed < ROWS_PER_WRITE:
            return

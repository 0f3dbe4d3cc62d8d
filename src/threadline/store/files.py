"""Uploaded files: their objects, and their bytes kept in parts so any process can read them.

An upload streams in part by part, each part its own short transaction, so memory stays flat
and the write lock is never held for long. The file only becomes visible (`complete`) once
every part is stored; an upload that fails midway is removed, and one whose process died is
left incomplete, invisible, for `remove_incomplete` to clear.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from sqlalchemy import delete, insert, or_, select, update

from threadline.store.chunks import clear_chunks
from threadline.store.database import Database
from threadline.store.pagination import Page, read_page
from threadline.store.tables import file_parts, files, vector_store_files

# How much of a file one row holds: small enough to stream, large enough to be few rows.
PART_BYTES = 1024 * 1024
# Expired files looked up at once by `remove_expired`.
EXPIRED_PER_READ = 100


def file_object(row) -> dict:
    """The File object as the API returns it."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": int(row.created_at),
        "expires_at": row.expires_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "status_details": None,
    }


class FileStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(
        self,
        project: str,
        file_id: str,
        *,
        filename: str,
        purpose: str,
        created_at: float,
        expires_at: int | None,
        parts: AsyncIterator[bytes],
        settle: Callable[[], dict[str, Any]] | None = None,
    ) -> dict:
        """Store a file whose bytes arrive as `parts` (each at most PART_BYTES), and return
        its object. If `parts` raises, nothing of the file is left and the error propagates.

        `settle`, called once every part is in, gives the columns only known then (a form may
        send its fields after the file), such as `purpose` and `expires_at`; if it raises,
        nothing of the file is left either."""
        async with self.database.write() as connection:
            await connection.execute(
                insert(files).values(
                    id=file_id, project=project, created_at=created_at, expires_at=expires_at,
                    filename=filename, purpose=purpose, bytes=0, complete=False,
                )
            )
        size = 0
        try:
            number = 0
            async for part in parts:
                if not part:
                    continue
                async with self.database.write() as connection:
                    await connection.execute(insert(file_parts).values(file_id=file_id, part=number, data=part))
                number += 1
                size += len(part)
            settled = settle() if settle is not None else {}
            async with self.database.write() as connection:
                await connection.execute(update(files).where(files.c.id == file_id).values(bytes=size, complete=True, **settled))
        except BaseException:
            async with self.database.write() as connection:
                await connection.execute(delete(files).where(files.c.id == file_id))
            raise
        return await self.get(project, file_id)

    async def get(self, project: str, file_id: str) -> dict | None:
        """The project's file, or None (unknown, another project's, expired or still arriving)."""
        async with self.database.read() as connection:
            row = (await connection.execute(_visible(project).where(files.c.id == file_id))).first()
        return file_object(row) if row is not None else None

    async def parts(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, part by part, each read on its own so memory stays flat."""
        number = 0
        while True:
            async with self.database.read() as connection:
                data = (
                    await connection.execute(
                        select(file_parts.c.data).where(file_parts.c.file_id == file_id, file_parts.c.part == number)
                    )
                ).scalar()
            if data is None:
                return
            yield bytes(data)
            number += 1

    async def content(self, file_id: str) -> bytes:
        """The file's bytes, whole."""
        return b"".join([part async for part in self.parts(file_id)])

    async def list(
        self, project: str, *, purpose: str | None, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> Page:
        query = _visible(project)
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        async with self.database.read() as connection:
            return await read_page(
                connection, query, order_by=[files.c.created_at, files.c.id], id_column=files.c.id,
                after=after, limit=limit, order=order, noun="File", read=file_object,
            )

    async def delete(self, project: str, file_id: str) -> bool:
        """Delete the project's file, its bytes, and its chunks in every vector store (those a
        batch at a time); False if there is no such file."""
        return await self._remove(files.c.id == file_id, files.c.project == project)

    async def remove_expired(self, now: int, limit: int = EXPIRED_PER_READ) -> int:
        """Remove up to `limit` files that expired by `now` (the oldest expiries first), as
        `delete` does; how many."""
        expired = files.c.expires_at.is_not(None), files.c.expires_at <= now
        async with self.database.read() as connection:
            file_ids = (await connection.execute(select(files.c.id).where(*expired).order_by(files.c.expires_at).limit(limit))).scalars().all()
        removed = 0
        for file_id in file_ids:
            removed += await self._remove(files.c.id == file_id, *expired)
        return removed

    async def _remove(self, *where) -> bool:
        """The file `where` picks removed: first its vector store files withdrawn (cancelled, so
        search and an ingestion under way let go of them) and their chunks removed a batch per
        transaction, then the file, in a transaction that the rest cascades from."""
        async with self.database.write() as connection:
            file_id = (await connection.execute(select(files.c.id).where(*where))).scalar()
            if file_id is None:
                return False
            attached = vector_store_files.c.file_id == file_id
            await connection.execute(
                update(vector_store_files)
                .where(attached, vector_store_files.c.status.in_(("in_progress", "completed")))
                .values(status="cancelled", owner=None)
            )
            vector_store_ids = (await connection.execute(select(vector_store_files.c.vector_store_id).where(attached))).scalars().all()
        for vector_store_id in vector_store_ids:
            await clear_chunks(self.database, vector_store_id, file_id)
        async with self.database.write() as connection:
            deleted = await connection.execute(delete(files).where(*where))
        return bool(deleted.rowcount)

    async def remove_incomplete(self, started_before: int) -> int:
        """Remove uploads begun before `started_before` and never finished: their process died."""
        async with self.database.write() as connection:
            deleted = await connection.execute(delete(files).where(files.c.complete.is_(False), files.c.created_at < started_before))
        return deleted.rowcount


def _visible(project: str):
    """The project's files that are whole and not expired."""
    unexpired = or_(files.c.expires_at.is_(None), files.c.expires_at > int(time.time()))
    return select(files).where(files.c.project == project, files.c.complete.is_(True), unexpired)

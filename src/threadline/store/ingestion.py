"""The ingestion queue: vector store files `in_progress` with no owner wait for a process.

As with background responses (store/jobs.py), each rule that keeps several processes honest
is a conditional UPDATE: a file is claimed by one process at a time, only its owner can
write its chunks (a batch per short transaction, each checking that it still owns the file)
and finish it, and a cancel or delete made meanwhile wins over both. A file whose owner
stopped heartbeating is released for any process to claim again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.store.chunks import ROWS_PER_WRITE, remove_chunks
from threadline.store.database import Database
from threadline.store.tables import files, vector_store_files, vector_stores, workers


@dataclass
class ClaimedFile:
    vector_store_id: str
    file_id: str
    filename: str
    chunking_strategy: dict
    # As stored: the finish is conditional on it, so a file attached anew with another
    # strategy while this run went on is not finished with chunks of the old one.
    chunking_strategy_text: str
    # When the File expires (None: never); an expired one is not ingested.
    expires_at: int | None = None
    # Earlier runs of this attachment that the embedder failed transiently.
    attempts: int = 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class EmbedderMismatch(Exception):
    """The vector store's chunks were embedded by another embedder than this process's."""

    def __init__(self, recorded: str) -> None:
        super().__init__(recorded)
        self.recorded = recorded


class IngestionQueue:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def claim(self, owner: str) -> ClaimedFile | None:
        """Take the oldest waiting file, or None; no two processes get the same one."""
        oldest = (
            select(vector_store_files.c.vector_store_id, vector_store_files.c.file_id)
            .where(vector_store_files.c.status == "in_progress", vector_store_files.c.owner.is_(None), _due(time.time()))
            .order_by(vector_store_files.c.created_at)
            .limit(1)
        )
        if not self.database.is_sqlite:
            oldest = oldest.with_for_update(skip_locked=True)
        async with self.database.write() as connection:
            found = (await connection.execute(oldest)).first()
            if found is None:
                return None
            claimed = await connection.execute(
                update(vector_store_files)
                .where(
                    _file(found.vector_store_id, found.file_id),
                    vector_store_files.c.status == "in_progress",
                    vector_store_files.c.owner.is_(None),
                )
                .values(owner=owner)
            )
            if not claimed.rowcount:
                return None
            row = (
                await connection.execute(
                    select(vector_store_files.c.chunking_strategy, vector_store_files.c.attempts, files.c.filename, files.c.expires_at)
                    .join(files, files.c.id == vector_store_files.c.file_id)
                    .where(_file(found.vector_store_id, found.file_id))
                )
            ).one()
        return ClaimedFile(
            found.vector_store_id, found.file_id, row.filename, orjson.loads(row.chunking_strategy), row.chunking_strategy,
            row.expires_at, row.attempts,
        )

    async def still_owned(self, claimed: ClaimedFile, owner: str) -> bool:
        """Whether the file is still this process's to finish (not cancelled, deleted or reattached)."""
        async with self.database.read() as connection:
            return (await connection.execute(select(vector_store_files.c.file_id).where(*_owned(claimed, owner)))).first() is not None

    async def recorded_embedder(self, vector_store_id: str) -> str | None:
        async with self.database.read() as connection:
            return (await connection.execute(select(vector_stores.c.embedder).where(vector_stores.c.id == vector_store_id))).scalar()

    async def clear_chunks(self, claimed: ClaimedFile, owner: str) -> bool:
        """The file's chunks in its vector store (a run before this one may have left some)
        removed, a batch per transaction, each only while the file is this process's; False as
        soon as it is not."""
        while True:
            owned, removed = await self._while_owned(claimed, owner, partial(remove_chunks, vector_store_id=claimed.vector_store_id, file_id=claimed.file_id))
            if not owned:
                return False
            if removed < ROWS_PER_WRITE:
                return True

    async def write_chunks(self, claimed: ClaimedFile, owner: str, write: Callable[[AsyncConnection], Awaitable[Any]]) -> bool:
        """`write` (a batch of the file's chunks) in one short transaction, if the file is still
        this process's; False, with nothing written, if not. Until the file is completed its
        chunks are searched by nobody."""
        owned, _ = await self._while_owned(claimed, owner, write)
        return owned

    async def complete(self, claimed: ClaimedFile, owner: str, *, usage_bytes: int, embedder: str) -> bool:
        """The file completed and unowned (its chunks written already, by `write_chunks`), and
        the store's embedder recorded if it had none. False, with nothing written, if the file
        is no longer this process's; raises EmbedderMismatch (nothing written) if the store's
        chunks came from another embedder."""
        async with self.database.write() as connection:
            finished = await connection.execute(
                update(vector_store_files)
                .where(*_owned(claimed, owner))
                .values(status="completed", usage_bytes=usage_bytes, last_error=None, owner=None, attempts=0, retry_at=None)
            )
            if not finished.rowcount:
                return False
            await connection.execute(
                update(vector_stores)
                .where(vector_stores.c.id == claimed.vector_store_id, vector_stores.c.embedder.is_(None))
                .values(embedder=embedder)
            )
            recorded = (
                await connection.execute(select(vector_stores.c.embedder).where(vector_stores.c.id == claimed.vector_store_id))
            ).scalar()
            if recorded != embedder:
                raise EmbedderMismatch(recorded)
            return True

    async def fail(self, claimed: ClaimedFile, owner: str, code: str, message: str) -> bool:
        """The file failed with `last_error` {code, message}, any chunks of it removed first;
        False if it was no longer this process's."""
        if not await self.clear_chunks(claimed, owner):
            return False
        last_error = orjson.dumps({"code": code, "message": message}).decode()
        async with self.database.write() as connection:
            failed = await connection.execute(
                update(vector_store_files)
                .where(*_owned(claimed, owner))
                .values(status="failed", last_error=last_error, owner=None, attempts=0, retry_at=None)
            )
            return bool(failed.rowcount)

    async def retry_later(self, claimed: ClaimedFile, owner: str, retry_at: float) -> bool:
        """Give the file back to the queue, one attempt more, for any process to take up again
        from `retry_at` on (the chunks written so far go when it is); False if it was no longer
        this process's."""
        async with self.database.write() as connection:
            released = await connection.execute(
                update(vector_store_files)
                .where(*_owned(claimed, owner))
                .values(owner=None, attempts=claimed.attempts + 1, retry_at=retry_at)
            )
            return bool(released.rowcount)

    async def _while_owned(self, claimed: ClaimedFile, owner: str, work: Callable[[AsyncConnection], Awaitable[Any]]) -> tuple[bool, Any]:
        """(True, what `work` returned), `work` done in one transaction that first makes sure the
        file is still this process's; (False, None), with nothing done, if it is not. On
        PostgreSQL the file's row stays locked till the commit, so a cancel, delete or claim
        made meanwhile waits for this transaction rather than slipping in under it."""
        check = select(vector_store_files.c.file_id).where(*_owned(claimed, owner))
        if not self.database.is_sqlite:
            check = check.with_for_update()
        async with self.database.write() as connection:
            if (await connection.execute(check)).first() is None:
                return False, None
            return True, await work(connection)

    async def release(self, owner: str) -> int:
        """Give back the files this process holds (it is stopping), for any process to claim."""
        async with self.database.write() as connection:
            released = await connection.execute(
                update(vector_store_files)
                .where(vector_store_files.c.owner == owner, vector_store_files.c.status == "in_progress")
                .values(owner=None)
            )
            return released.rowcount

    async def release_abandoned(self) -> int:
        """Give back the files held by processes whose lease ran out; how many."""
        live = select(workers.c.id).where(workers.c.lease_expires_at >= time.time())
        async with self.database.write() as connection:
            released = await connection.execute(
                update(vector_store_files)
                .where(
                    vector_store_files.c.status == "in_progress",
                    vector_store_files.c.owner.is_not(None),
                    vector_store_files.c.owner.not_in(live),
                )
                .values(owner=None)
            )
            return released.rowcount


def _due(now: float):
    """Not waiting to be tried again later."""
    return or_(vector_store_files.c.retry_at.is_(None), vector_store_files.c.retry_at <= now)


def _file(vector_store_id: str, file_id: str):
    return (vector_store_files.c.vector_store_id == vector_store_id) & (vector_store_files.c.file_id == file_id)


def _owned(claimed: ClaimedFile, owner: str) -> tuple:
    return (
        _file(claimed.vector_store_id, claimed.file_id),
        vector_store_files.c.owner == owner,
        vector_store_files.c.status == "in_progress",
        vector_store_files.c.chunking_strategy == claimed.chunking_strategy_text,
    )

"""Vector stores, their files and file batches, scoped to the caller's project.

Counts and sizes are read from the files' rows every time (COUNT and SUM), never kept as
counters, so a file retried after a crash is counted once, and a store's status is what
its files' statuses say. The chunks belong to the retrieval index; a delete cascades to
those left, after the caller has removed them a batch at a time (see `withdraw`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
from sqlalchemy import ColumnElement, Select, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import invalid, not_found
from threadline.store.database import Database
from threadline.store.pagination import Page, read_page
from threadline.store.tables import files, vector_store_file_batches, vector_store_files, vector_stores

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
DAY_S = 86400


@dataclass
class Attachment:
    """A file to attach to a vector store, as a request names it."""

    file_id: str
    attributes: dict
    chunking_strategy: dict  # always static: what `auto` means is stored


@dataclass
class Listing:
    after: str | None
    before: str | None
    limit: int
    order: Literal["asc", "desc"]


def expired(expires_at: int | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


def expiry(expires_after: dict | None, last_active_at: int) -> int | None:
    return last_active_at + expires_after["days"] * DAY_S if expires_after else None


# -- objects as the API returns them ------------------------------------------------------


def _counts(by_status: dict[str, int]) -> dict:
    counts = {status: by_status.get(status, 0) for status in FILE_STATUSES}
    return counts | {"total": sum(counts.values())}


def vector_store_object(row, by_status: dict[str, int], usage_bytes: int) -> dict:
    data = orjson.loads(row.data)
    if expired(row.expires_at, time.time()):
        status = "expired"
    else:
        status = "in_progress" if by_status.get("in_progress") else "completed"
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": int(row.created_at),
        "name": data.get("name") or "",
        "usage_bytes": usage_bytes,
        "file_counts": _counts(by_status),
        "status": status,
        "expires_after": data.get("expires_after"),
        "expires_at": row.expires_at,
        "last_active_at": row.last_active_at,
        "metadata": data.get("metadata") or {},
    }


def vector_store_file_object(row) -> dict:
    return {
        "id": row.file_id,
        "object": "vector_store.file",
        "usage_bytes": row.usage_bytes,
        "created_at": int(row.created_at),
        "vector_store_id": row.vector_store_id,
        "status": row.status,
        "last_error": orjson.loads(row.last_error) if row.last_error else None,
        "chunking_strategy": orjson.loads(row.chunking_strategy),
        "attributes": orjson.loads(row.attributes),
    }


def batch_object(row, by_status: dict[str, int]) -> dict:
    counts = _counts(by_status)
    if row.cancelled:
        status = "cancelled"
    elif counts["in_progress"]:
        status = "in_progress"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return {
        "id": row.id,
        "object": "vector_store.files_batch",
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": status,
        "file_counts": counts,
    }


class VectorStoreStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- vector stores -----------------------------------------------------------------

    async def create(
        self, project: str, vector_store_id: str, data: dict, attachments: Sequence[Attachment], *, file_param: str = "file_ids"
    ) -> dict:
        """Store a new vector store with `data` (name, description, metadata, expires_after),
        its files attached and queued for ingestion; a file that is not the project's is a 404."""
        now = time.time()
        async with self.database.write() as connection:
            await connection.execute(
                insert(vector_stores).values(
                    id=vector_store_id, project=project, created_at=now, last_active_at=int(now),
                    expires_at=expiry(data.get("expires_after"), int(now)), data=orjson.dumps(data).decode(),
                )
            )
            await _attach(connection, project, vector_store_id, attachments, batch_id=None, now=now, file_param=file_param)
            return await _vector_store(connection, project, vector_store_id)

    async def get(self, project: str, vector_store_id: str) -> dict:
        async with self.database.read() as connection:
            return await _vector_store(connection, project, vector_store_id)

    async def list(self, project: str, listing: Listing) -> Page:
        query = select(vector_stores).where(vector_stores.c.project == project)
        async with self.database.read() as connection:
            page = await _page(
                connection, query, listing, order_by=[vector_stores.c.created_at, vector_stores.c.id],
                id_column=vector_stores.c.id, noun="Vector store", read=lambda row: row,
            )
            counts = await _file_counts(connection, [row.id for row in page.data])
        page.data = [vector_store_object(row, *counts.get(row.id, ({}, 0))) for row in page.data]
        return page

    async def modify(self, project: str, vector_store_id: str, changes: dict) -> dict:
        """Replace the fields in `changes` (name, expires_after, metadata); a new expires_after
        counts from the store's last activity."""
        async with self.database.write() as connection:
            row = await _vector_store_row(connection, project, vector_store_id)
            data = orjson.loads(row.data) | changes
            await connection.execute(
                update(vector_stores)
                .where(vector_stores.c.id == vector_store_id)
                .values(data=orjson.dumps(data).decode(), expires_at=expiry(data.get("expires_after"), row.last_active_at))
            )
            return await _vector_store(connection, project, vector_store_id)

    async def withdraw(self, project: str, vector_store_id: str, file_id: str | None = None) -> None:
        """Before a delete: the vector store's files (or this one) that are in progress or
        completed end `cancelled`, in one short transaction, so search stops seeing their
        chunks and an ingestion under way loses its next write; their chunks can then go a
        batch at a time. A 404 if the store (or the file in it) is not the project's."""
        async with self.database.write() as connection:
            where = [vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.status.in_(("in_progress", "completed"))]
            if file_id is None:
                await _vector_store_row(connection, project, vector_store_id)
            else:
                await _file_row(connection, project, vector_store_id, file_id)
                where.append(vector_store_files.c.file_id == file_id)
            await connection.execute(update(vector_store_files).where(*where).values(status="cancelled", owner=None))

    async def delete(self, project: str, vector_store_id: str) -> None:
        """Delete the vector store, its files and batches, and what chunks are left of them
        (`withdraw` and remove them first when there may be many). The Files themselves remain."""
        async with self.database.write() as connection:
            await _vector_store_row(connection, project, vector_store_id)
            await connection.execute(delete(vector_store_files).where(vector_store_files.c.vector_store_id == vector_store_id))
            await connection.execute(delete(vector_store_file_batches).where(vector_store_file_batches.c.vector_store_id == vector_store_id))
            await connection.execute(delete(vector_stores).where(vector_stores.c.id == vector_store_id))

    async def check_searchable(self, project: str, vector_store_id: str) -> None:
        """A 404 unless the project has the vector store, a 400 if it is expired (its files
        are not counted: a search does not show them)."""
        async with self.database.read() as connection:
            _not_expired(await _vector_store_row(connection, project, vector_store_id))

    async def touch(self, project: str, vector_store_id: str) -> None:
        """Mark the vector store active now (which moves its expiry on); an expired store stays expired."""
        async with self.database.write() as connection:
            await _touch(connection, await _vector_store_row(connection, project, vector_store_id), int(time.time()))

    # -- files ---------------------------------------------------------------------------

    async def attach(
        self, project: str, vector_store_id: str, attachments: Sequence[Attachment], *, batch_id: str | None = None, file_param: str = "file_id"
    ) -> list[dict]:
        """Attach files and queue them for ingestion, in one transaction (with the batch, if
        one is given); their objects. A file already attached is attached anew: its new
        attributes and strategy, ingested again, and moved into the batch if one is given (a
        single attach leaves it in the batch it came with)."""
        now = time.time()
        async with self.database.write() as connection:
            row = await _vector_store_row(connection, project, vector_store_id)
            _not_expired(row)
            if batch_id is not None:
                await connection.execute(
                    insert(vector_store_file_batches).values(id=batch_id, vector_store_id=vector_store_id, project=project, created_at=int(now))
                )
            await _attach(connection, project, vector_store_id, attachments, batch_id=batch_id, now=now, file_param=file_param)
            await _touch(connection, row, int(now))
            rows = await connection.execute(
                _files_of(vector_store_id).where(vector_store_files.c.file_id.in_([attachment.file_id for attachment in attachments]))
            )
            return [vector_store_file_object(row) for row in rows]

    async def get_file(self, project: str, vector_store_id: str, file_id: str) -> dict:
        async with self.database.read() as connection:
            return vector_store_file_object(await _file_row(connection, project, vector_store_id, file_id))

    async def list_files(
        self, project: str, vector_store_id: str, listing: Listing, *, status: str | None, batch_id: str | None = None
    ) -> Page:
        async with self.database.read() as connection:
            await _vector_store_row(connection, project, vector_store_id)
            if batch_id is not None:
                await _batch_row(connection, project, vector_store_id, batch_id)
            query = _files_of(vector_store_id)
            if status is not None:
                query = query.where(vector_store_files.c.status == status)
            if batch_id is not None:
                query = query.where(vector_store_files.c.batch_id == batch_id)
            return await _page(
                connection, query, listing, order_by=[vector_store_files.c.created_at, vector_store_files.c.file_id],
                id_column=vector_store_files.c.file_id, noun="File", read=vector_store_file_object,
            )

    async def update_attributes(self, project: str, vector_store_id: str, file_id: str, attributes: dict) -> dict:
        async with self.database.write() as connection:
            await _file_row(connection, project, vector_store_id, file_id)
            await connection.execute(
                update(vector_store_files)
                .where(vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.file_id == file_id)
                .values(attributes=orjson.dumps(attributes).decode())
            )
            return vector_store_file_object(await _file_row(connection, project, vector_store_id, file_id))

    async def delete_file(self, project: str, vector_store_id: str, file_id: str) -> None:
        """Take the file out of the vector store, with what chunks are left of it (`withdraw`
        and remove them first when there may be many); an ingestion under way loses its
        finish. The File remains."""
        async with self.database.write() as connection:
            await _file_row(connection, project, vector_store_id, file_id)
            await connection.execute(
                delete(vector_store_files).where(vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.file_id == file_id)
            )

    # -- batches -------------------------------------------------------------------------

    async def get_batch(self, project: str, vector_store_id: str, batch_id: str) -> dict:
        async with self.database.read() as connection:
            return await _batch(connection, project, vector_store_id, batch_id)

    async def cancel_batch(self, project: str, vector_store_id: str, batch_id: str) -> dict:
        """Cancel the batch: its files still in progress end cancelled (an ingestion under way
        loses its finish); those done stay done."""
        async with self.database.write() as connection:
            await _batch_row(connection, project, vector_store_id, batch_id)
            await connection.execute(
                update(vector_store_files)
                .where(vector_store_files.c.batch_id == batch_id, vector_store_files.c.status == "in_progress")
                .values(status="cancelled", owner=None)
            )
            await connection.execute(
                update(vector_store_file_batches).where(vector_store_file_batches.c.id == batch_id).values(cancelled=True)
            )
            return await _batch(connection, project, vector_store_id, batch_id)


# -- queries --------------------------------------------------------------------------------


async def _vector_store_row(connection: AsyncConnection, project: str, vector_store_id: str):
    row = (
        await connection.execute(
            select(vector_stores).where(vector_stores.c.id == vector_store_id, vector_stores.c.project == project)
        )
    ).first()
    if row is None:
        raise not_found("Vector store", vector_store_id, param="vector_store_id")
    return row


async def _vector_store(connection: AsyncConnection, project: str, vector_store_id: str) -> dict:
    row = await _vector_store_row(connection, project, vector_store_id)
    counts = await _file_counts(connection, [vector_store_id])
    return vector_store_object(row, *counts.get(vector_store_id, ({}, 0)))


async def _file_counts(connection: AsyncConnection, vector_store_ids: list[str]) -> dict[str, tuple[dict[str, int], int]]:
    """Per vector store: its files' count by status, and the bytes they use."""
    if not vector_store_ids:
        return {}
    rows = await connection.execute(
        select(
            vector_store_files.c.vector_store_id, vector_store_files.c.status,
            func.count(), func.coalesce(func.sum(vector_store_files.c.usage_bytes), 0),
        )
        .where(vector_store_files.c.vector_store_id.in_(vector_store_ids))
        .group_by(vector_store_files.c.vector_store_id, vector_store_files.c.status)
    )
    counts: dict[str, tuple[dict[str, int], int]] = {}
    for vector_store_id, status, count, usage_bytes in rows:
        by_status, total_bytes = counts.get(vector_store_id, ({}, 0))
        by_status[status] = count
        counts[vector_store_id] = (by_status, total_bytes + int(usage_bytes))
    return counts


def _not_expired(row) -> None:
    if expired(row.expires_at, time.time()):
        raise invalid(f"Vector store {row.id} is expired. Create a new vector store and try again.", param="vector_store_id")


async def _touch(connection: AsyncConnection, row, now: int) -> None:
    expires_after = orjson.loads(row.data).get("expires_after")
    if expired(row.expires_at, now):
        return
    await connection.execute(
        update(vector_stores).where(vector_stores.c.id == row.id).values(last_active_at=now, expires_at=expiry(expires_after, now))
    )


async def _attach(
    connection: AsyncConnection, project: str, vector_store_id: str, attachments: Sequence[Attachment], *, batch_id: str | None, now: float, file_param: str
) -> None:
    if not attachments:
        return
    wanted = [attachment.file_id for attachment in attachments]
    unexpired = or_(files.c.expires_at.is_(None), files.c.expires_at > now)
    found = set(
        (
            await connection.execute(
                select(files.c.id).where(files.c.id.in_(wanted), files.c.project == project, files.c.complete.is_(True), unexpired)
            )
        ).scalars()
    )
    for index, file_id in enumerate(wanted):
        if file_id not in found:
            param = file_param.format(index=index)
            raise not_found("File", file_id, param=param)
    present = set(
        (
            await connection.execute(
                select(vector_store_files.c.file_id).where(
                    vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.file_id.in_(wanted)
                )
            )
        ).scalars()
    )
    queued = {"status": "in_progress", "batch_id": batch_id, "usage_bytes": 0, "last_error": None, "owner": None, "attempts": 0, "retry_at": None}
    for attachment in attachments:
        values = queued | {
            "attributes": orjson.dumps(attachment.attributes).decode(),
            "chunking_strategy": orjson.dumps(attachment.chunking_strategy).decode(),
        }
        if attachment.file_id in present:
            if batch_id is None:
                # Attached again on its own, it stays in the batch it was attached with (if any).
                del values["batch_id"]
            await connection.execute(
                update(vector_store_files)
                .where(vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.file_id == attachment.file_id)
                .values(created_at=now, **values)
            )
        else:
            await connection.execute(
                insert(vector_store_files).values(
                    vector_store_id=vector_store_id, file_id=attachment.file_id, project=project, created_at=now, **values
                )
            )


def _files_of(vector_store_id: str) -> Select:
    return select(vector_store_files).where(vector_store_files.c.vector_store_id == vector_store_id)


async def _file_row(connection: AsyncConnection, project: str, vector_store_id: str, file_id: str):
    await _vector_store_row(connection, project, vector_store_id)
    row = (await connection.execute(_files_of(vector_store_id).where(vector_store_files.c.file_id == file_id))).first()
    if row is None:
        raise not_found("File", file_id, param="file_id")
    return row


async def _batch_row(connection: AsyncConnection, project: str, vector_store_id: str, batch_id: str):
    await _vector_store_row(connection, project, vector_store_id)
    row = (
        await connection.execute(
            select(vector_store_file_batches).where(
                vector_store_file_batches.c.id == batch_id, vector_store_file_batches.c.vector_store_id == vector_store_id
            )
        )
    ).first()
    if row is None:
        raise not_found("Vector store file batch", batch_id, param="batch_id")
    return row


async def _batch(connection: AsyncConnection, project: str, vector_store_id: str, batch_id: str) -> dict:
    row = await _batch_row(connection, project, vector_store_id, batch_id)
    counts = await connection.execute(
        select(vector_store_files.c.status, func.count())
        .where(vector_store_files.c.vector_store_id == vector_store_id, vector_store_files.c.batch_id == batch_id)
        .group_by(vector_store_files.c.status)
    )
    return batch_object(row, {status: count for status, count in counts})


async def _page(
    connection: AsyncConnection,
    query: Select,
    listing: Listing,
    *,
    order_by: Iterable[ColumnElement],
    id_column: ColumnElement,
    noun: str,
    read: Callable,
) -> Page:
    """A page after `listing.after`, or the page just before `listing.before` (read backwards
    from it, then turned round), in the listing's order."""
    order_by = list(order_by)
    if listing.before is None:
        return await read_page(
            connection, query, order_by=order_by, id_column=id_column, after=listing.after,
            limit=listing.limit, order=listing.order, noun=noun, read=read,
        )
    if listing.after is not None:
        raise invalid("Only one of 'after' and 'before' may be given.", param="before")
    backwards: Literal["asc", "desc"] = "desc" if listing.order == "asc" else "asc"
    page = await read_page(
        connection, query, order_by=order_by, id_column=id_column, after=listing.before,
        limit=listing.limit, order=backwards, noun=noun, read=read, cursor_param="before",
    )
    page.data.reverse()
    return page

"""Conversations and their items: every query is scoped to the caller's project."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import not_found
from threadline.ids import new_id
from threadline.store.database import Database
from threadline.store.pagination import Page, read_page
from threadline.store.tables import conversation_items, conversations

# Items in the first batch of a conversation read backwards; then as many as the reader asks for.
ITEMS_BATCH = 128


def conversation_object(row) -> dict:
    return {
        "id": row.id,
        "object": "conversation",
        "created_at": row.created_at,
        "metadata": orjson.loads(row.metadata),
    }


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, project: str, metadata: dict | None, items: list[dict]) -> dict:
        conversation_id = new_id("conv")
        now = int(time.time())
        async with self.database.write() as connection:
            await connection.execute(
                insert(conversations).values(
                    id=conversation_id,
                    project=project,
                    created_at=now,
                    metadata=orjson.dumps(metadata or {}).decode(),
                    next_position=0,
                )
            )
            if items:
                await append_items(connection, project, conversation_id, items)
        return {"id": conversation_id, "object": "conversation", "created_at": now, "metadata": metadata or {}}

    async def get(self, project: str, conversation_id: str) -> dict:
        async with self.database.read() as connection:
            return conversation_object(await _conversation_row(connection, project, conversation_id))

    async def update(self, project: str, conversation_id: str, metadata: dict | None) -> dict:
        """Replace the conversation's metadata; None clears it."""
        async with self.database.write() as connection:
            row = (
                await connection.execute(
                    update(conversations)
                    .where(conversations.c.id == conversation_id, conversations.c.project == project)
                    .values(metadata=orjson.dumps(metadata or {}).decode())
                    .returning(conversations.c.id, conversations.c.created_at, conversations.c.metadata)
                )
            ).first()
        if row is None:
            raise not_found("Conversation", conversation_id)
        return conversation_object(row)

    async def delete(self, project: str, conversation_id: str, *, along: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        """Delete the conversation and its items, and do `along` in the same transaction; what it returns."""
        async with self.database.write() as connection:
            await _conversation_row(connection, project, conversation_id)
            await connection.execute(
                delete(conversation_items).where(conversation_items.c.conversation_id == conversation_id)
            )
            await connection.execute(delete(conversations).where(conversations.c.id == conversation_id))
            return await along(connection)

    async def add_items(self, project: str, conversation_id: str, items: list[dict]) -> list[dict]:
        async with self.database.write() as connection:
            return await append_items(connection, project, conversation_id, items)

    async def list_items(
        self, project: str, conversation_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> Page:
        async with self.database.read() as connection:
            await _conversation_row(connection, project, conversation_id)
            items = select(conversation_items.c.data).where(conversation_items.c.conversation_id == conversation_id)
            return await read_page(
                connection, items, order_by=[conversation_items.c.position], id_column=conversation_items.c.id, after=after, limit=limit, order=order
            )

    async def items_newest_first(self, project: str, conversation_id: str, param: str | None = None) -> AsyncGenerator[list[dict], int | None]:
        """The conversation's items, newest first, a batch at a time: the context a response continues.

        A batch is read only when asked for, so a caller that stops early never moves the rest
        of a long conversation; `asend(n)` asks for n items next, else the batch doubles.
        """
        position = conversation_items.c.position
        newest = (
            select(position, conversation_items.c.data)
            .where(conversation_items.c.conversation_id == conversation_id)
            .order_by(position.desc())
        )
        before, batch = None, ITEMS_BATCH
        while True:
            async with self.database.read() as connection:
                if before is None:
                    await _conversation_row(connection, project, conversation_id, param=param)
                query = newest if before is None else newest.where(position < before)
                rows = (await connection.execute(query.limit(batch))).all()
            if not rows:
                return
            items_wanted = yield [orjson.loads(row.data) for row in rows]
            if len(rows) < batch:
                return
            before, batch = rows[-1].position, items_wanted or batch * 2

    async def get_item(self, project: str, conversation_id: str, item_id: str) -> dict:
        async with self.database.read() as connection:
            await _conversation_row(connection, project, conversation_id)
            data = (
                await connection.execute(
                    select(conversation_items.c.data).where(
                        conversation_items.c.conversation_id == conversation_id,
                        conversation_items.c.id == item_id,
                    )
                )
            ).scalar()
        if data is None:
            raise not_found("Item", item_id)
        return orjson.loads(data)

    async def delete_item(self, project: str, conversation_id: str, item_id: str) -> dict:
        async with self.database.write() as connection:
            row = await _conversation_row(connection, project, conversation_id)
            deleted = await connection.execute(
                delete(conversation_items).where(
                    conversation_items.c.conversation_id == conversation_id,
                    conversation_items.c.id == item_id,
                )
            )
            if deleted.rowcount == 0:
                raise not_found("Item", item_id)
        return conversation_object(row)


async def append_items(
    connection: AsyncConnection, project: str, conversation_id: str, items: list[dict]
) -> list[dict]:
    """Append items (references already resolved) in one statement, contiguous and in order.

    Taking the position range locks the conversation's row until commit, so concurrent
    appends to one conversation land one after another, never interleaved.
    """
    end = (
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.project == project)
            .values(next_position=conversations.c.next_position + len(items))
            .returning(conversations.c.next_position)
        )
    ).scalar()
    if end is None:
        raise not_found("Conversation", conversation_id)
    now = int(time.time())
    await connection.execute(
        insert(conversation_items),
        [
            {
                "conversation_id": conversation_id,
                "position": end - len(items) + index,
                "id": item["id"],
                "created_at": now,
                "data": orjson.dumps(item).decode(),
            }
            for index, item in enumerate(items)
        ],
    )
    return items


async def _conversation_row(connection: AsyncConnection, project: str, conversation_id: str, param: str | None = None):
    row = (
        await connection.execute(
            select(conversations.c.id, conversations.c.created_at, conversations.c.metadata).where(
                conversations.c.id == conversation_id, conversations.c.project == project
            )
        )
    ).first()
    if row is None:
        raise not_found("Conversation", conversation_id, param=param)
    return row

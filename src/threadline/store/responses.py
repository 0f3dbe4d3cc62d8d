"""Stored responses: the Response object, its input and output items, and chains of them."""

from __future__ import annotations

import orjson
from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import APIError, not_found
from threadline.store.conversations import ItemPage, append_items
from threadline.store.database import Database
from threadline.store.tables import response_items, responses

# Every ancestor of a response through previous_response_id, oldest first, with its items.
CHAIN_ITEMS = text(
    """
    WITH RECURSIVE chain(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses WHERE id = :response_id AND project = :project
        UNION ALL
        SELECT r.id, r.previous_response_id, chain.depth + 1
        FROM responses r JOIN chain ON r.id = chain.previous_response_id
        WHERE r.project = :project
    )
    SELECT chain.id AS response_id, response_items.data AS data
    FROM chain LEFT JOIN response_items ON response_items.response_id = chain.id
    ORDER BY chain.depth DESC, response_items.position
    """
)

APPENDED_STATUSES = ("completed", "incomplete")


class ResponseStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(self, project: str, response: dict, input_items: list[dict]) -> None:
        """Store a finished response in one transaction, appending it to its conversation.

        A response that failed or was cancelled adds nothing to its conversation.
        """
        conversation_id = (response.get("conversation") or {}).get("id")
        async with self.database.write() as connection:
            await connection.execute(
                insert(responses).values(
                    id=response["id"],
                    project=project,
                    created_at=response["created_at"],
                    status=response["status"],
                    previous_response_id=response.get("previous_response_id"),
                    conversation_id=conversation_id,
                    data=orjson.dumps(response).decode(),
                )
            )
            await _insert_items(connection, response["id"], input_items, response["output"])
            if conversation_id and response["status"] in APPENDED_STATUSES:
                await append_items(connection, project, conversation_id, input_items + response["output"])

    async def get(self, project: str, response_id: str) -> dict:
        async with self.database.read() as connection:
            data = (
                await connection.execute(
                    select(responses.c.data).where(responses.c.id == response_id, responses.c.project == project)
                )
            ).scalar()
        if data is None:
            raise not_found("Response", response_id)
        return orjson.loads(data)

    async def delete(self, project: str, response_id: str) -> None:
        async with self.database.write() as connection:
            deleted = await connection.execute(
                delete(responses).where(responses.c.id == response_id, responses.c.project == project)
            )
            if deleted.rowcount == 0:
                raise not_found("Response", response_id)
            await connection.execute(delete(response_items).where(response_items.c.response_id == response_id))

    async def chain_items(self, project: str, previous_response_id: str) -> list[dict]:
        """The items of a response and all its ancestors, in the order the model saw them."""
        async with self.database.read() as connection:
            rows = (
                await connection.execute(CHAIN_ITEMS, {"response_id": previous_response_id, "project": project})
            ).all()
        if not rows:
            raise APIError(
                400,
                f"Previous response with id '{previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return [orjson.loads(row.data) for row in rows if row.data is not None]

    async def list_input_items(
        self, project: str, response_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage:
        async with self.database.read() as connection:
            exists = (
                await connection.execute(
                    select(responses.c.id).where(responses.c.id == response_id, responses.c.project == project)
                )
            ).scalar()
            if exists is None:
                raise not_found("Response", response_id)
            position = response_items.c.position
            query = select(response_items.c.data).where(
                response_items.c.response_id == response_id, response_items.c.is_output.is_(False)
            )
            if after is not None:
                cursor = (
                    await connection.execute(
                        select(position).where(response_items.c.response_id == response_id, response_items.c.id == after)
                    )
                ).scalar()
                if cursor is None:
                    raise not_found("Item", after, param="after")
                query = query.where(position > cursor if order == "asc" else position < cursor)
            query = query.order_by(position.asc() if order == "asc" else position.desc()).limit(limit + 1)
            rows = (await connection.execute(query)).all()
        return ItemPage([orjson.loads(row.data) for row in rows[:limit]], len(rows) > limit)


async def _insert_items(connection: AsyncConnection, response_id: str, input_items: list[dict], output: list[dict]) -> None:
    rows = [
        {"response_id": response_id, "position": position, "id": item["id"], "is_output": is_output, "data": orjson.dumps(item).decode()}
        for position, (item, is_output) in enumerate(
            [(item, False) for item in input_items] + [(item, True) for item in output]
        )
    ]
    if rows:
        await connection.execute(insert(response_items), rows)

"""Finding stored items by id, wherever they live: a response's items or a conversation's."""

from __future__ import annotations

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import not_found
from threadline.items import is_item_reference, new_item_id, normalize_item
from threadline.store.tables import conversation_items, conversations, response_items, responses


async def find_item(connection: AsyncConnection, project: str, item_id: str) -> dict | None:
    for items, owners, owner_id in (
        (response_items, responses, response_items.c.response_id),
        (conversation_items, conversations, conversation_items.c.conversation_id),
    ):
        data = (
            await connection.execute(
                select(items.c.data)
                .join(owners, owners.c.id == owner_id)
                .where(items.c.id == item_id, owners.c.project == project)
                .limit(1)
            )
        ).scalar()
        if data is not None:
            return orjson.loads(data)
    return None


async def resolve_item_references(
    connection: AsyncConnection, project: str, items: list[dict], param: str = "items"
) -> list[dict]:
    """Replace each item_reference with a copy of the item it names, under a new id."""
    resolved = []
    for index, item in enumerate(items):
        if not is_item_reference(item):
            resolved.append(item)
            continue
        referenced = await find_item(connection, project, item["id"])
        if referenced is None:
            raise not_found("Item", item["id"], param=f"{param}[{index}].id")
        resolved.append(normalize_item(referenced, new_item_id(referenced["type"])))
    return resolved

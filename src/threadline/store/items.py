"""Finding stored items by id, wherever they live: a response's items or a conversation's."""

from __future__ import annotations

import orjson
from sqlalchemy import BigInteger, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from threadline.errors import APIError, not_found
from threadline.items import is_item_reference, new_item_id, normalize_item
from threadline.store.tables import conversation_items, conversations, response_items, responses

# Where an item can live: its table, the table of its owners, and the column naming its owner.
ITEM_HOMES = (
    (response_items, responses, response_items.c.response_id),
    (conversation_items, conversations, conversation_items.c.conversation_id),
)


class stored_size(FunctionElement):
    """The size in bytes of a stored text value, measured by the database without sending it."""

    type = BigInteger()
    inherit_cache = True
    name = "stored_size"


@compiles(stored_size)
def _octet_length(element, compiler, **kw) -> str:
    return f"octet_length({compiler.process(element.clauses, **kw)})"


@compiles(stored_size, "sqlite")
def _blob_length(element, compiler, **kw) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


async def stored_items(connection: AsyncConnection, project: str, item_ids: set[str]) -> dict[str, dict]:
    """Each of these items the project has, by id: one query per place items live."""
    found: dict[str, dict] = {}
    for items, owners, owner_id in ITEM_HOMES if item_ids else ():
        rows = await connection.execute(
            select(items.c.id, items.c.data)
            .join(owners, owners.c.id == owner_id)
            .where(items.c.id.in_(item_ids), owners.c.project == project)
        )
        for item_id, data in rows:
            found.setdefault(item_id, orjson.loads(data))
    return found


async def stored_sizes(connection: AsyncConnection, project: str, item_ids: set[str]) -> dict[str, int]:
    """The stored size in bytes of each of these items the project has; none of them is read."""
    sizes: dict[str, int] = {}
    for items, owners, owner_id in ITEM_HOMES:
        rows = await connection.execute(
            select(items.c.id, stored_size(items.c.data))
            .join(owners, owners.c.id == owner_id)
            .where(items.c.id.in_(item_ids), owners.c.project == project)
        )
        sizes.update(rows.tuples().all())
    return sizes


async def resolve_item_references(
    connection: AsyncConnection, project: str, items: list[dict], *, max_bytes: int, param: str = "items"
) -> list[dict]:
    """Replace each item_reference with a copy of the item it names, under a new id.

    Each reference counts at the stored size of the item it names. Items that would come to
    more than `max_bytes` that way are refused with a 413 naming the item that went over,
    before any referenced item is read; an unknown reference is a 404 naming it.
    """
    sizes = await stored_sizes(connection, project, {item["id"] for item in items if is_item_reference(item)})
    total = 0
    for index, item in enumerate(items):
        if is_item_reference(item):
            if item["id"] not in sizes:
                raise not_found("Item", item["id"], param=f"{param}[{index}].id")
            total += sizes[item["id"]]
        else:
            total += len(orjson.dumps(item))
        if total > max_bytes:
            raise APIError(
                413,
                f"The items, with each item_reference counted at the size of the item it names, come to more than "
                f"this server accepts in one request ({max_bytes} bytes).",
                param=f"{param}[{index}]",
                code="request_too_large",
            )
    referenced = await stored_items(connection, project, set(sizes))  # each read once, however often named
    resolved = []
    for index, item in enumerate(items):
        if not is_item_reference(item):
            resolved.append(item)
            continue
        original = referenced.get(item["id"])
        if original is None:  # deleted since it was measured
            raise not_found("Item", item["id"], param=f"{param}[{index}].id")
        resolved.append(normalize_item(original, new_item_id(original["type"])))
    return resolved

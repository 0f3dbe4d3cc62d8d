"""The items a request adds, to a response's input or to a conversation: one path for both."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from threadline.items import is_item_reference, new_item_id, normalize_item
from threadline.store.database import Database
from threadline.store.items import resolve_item_references


async def new_items(database: Database, project: str, items: Sequence[dict | BaseModel], *, param: str, max_bytes: int) -> list[dict]:
    """The items as stored: each validated input item normalized under a new id, and each
    item_reference replaced by a copy of the item it names (a 404 naming `param[i].id`
    when the project has no such item, a 413 when the copies would take the items over
    `max_bytes`)."""
    added = normalized(items)
    if any(is_item_reference(item) for item in added):
        async with database.read() as connection:
            added = await resolve_item_references(connection, project, added, param=param, max_bytes=max_bytes)
    return added


def normalized(items: Sequence[dict | BaseModel]) -> list[dict]:
    """Each validated input item in its stored shape under a new id; item references as they are."""
    added = []
    for item in items:
        data = item.model_dump(mode="json", exclude_unset=True) if isinstance(item, BaseModel) else item
        added.append(data if is_item_reference(data) else normalize_item(data, new_item_id(data.get("type"))))
    return added

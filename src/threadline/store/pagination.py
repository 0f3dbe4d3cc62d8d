"""Cursor pagination, as OpenAI's list endpoints have it: `after` an object's id, `limit`, `order`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
from sqlalchemy import ColumnElement, Row, Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import not_found


@dataclass
class Page:
    """One page of a list: its objects, and whether more follow in the same order."""

    data: list[dict]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return self.data[0]["id"] if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1]["id"] if self.data else None

    def list_object(self) -> dict:
        """The page as the API returns it: OpenAI's list object."""
        return {"object": "list", "data": self.data, "first_id": self.first_id, "last_id": self.last_id, "has_more": self.has_more}


def stored_data(row: Row) -> dict:
    """The object kept whole as JSON in the row's `data` column."""
    return orjson.loads(row.data)


async def read_page(
    connection: AsyncConnection,
    query: Select,
    *,
    order_by: Sequence[ColumnElement],
    id_column: ColumnElement,
    after: str | None,
    limit: int,
    order: Literal["asc", "desc"],
    noun: str = "Item",
    read: Callable[[Row], dict] = stored_data,
    cursor_param: str = "after",
    cursor_query: Select | None = None,
) -> Page:
    """Up to `limit` objects of `query` (a SELECT of the whole list), in `order` of the
    columns `order_by`, which together tell every object apart; after the object whose id
    (`id_column`) is `after`, when given.

    An `after` that names no object of the list is a 404 naming it (`noun` says what it is),
    its param `cursor_param` (a page read backwards from `before` passes "before"). The
    object is looked up in `cursor_query` when given: a wider list than `query`, for a
    filter an object can leave (a status) without its place in the order being lost.
    """
    if after is not None:
        cursor_query = query if cursor_query is None else cursor_query
        cursor = (await connection.execute(cursor_query.with_only_columns(*order_by).where(id_column == after).limit(1))).first()
        if cursor is None:
            raise not_found(noun, after, param=cursor_param)
        values = [literal(value, column.type) for value, column in zip(cursor, order_by)]
        key, position = (order_by[0], values[0]) if len(order_by) == 1 else (tuple_(*order_by), tuple_(*values))
        query = query.where(key > position if order == "asc" else key < position)
    sorted_by = [column.asc() if order == "asc" else column.desc() for column in order_by]
    rows = (await connection.execute(query.order_by(*sorted_by).limit(limit + 1))).all()
    return Page([read(row) for row in rows[:limit]], has_more=len(rows) > limit)

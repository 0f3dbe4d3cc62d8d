"""Cursor pagination, written once for every list: pages in either order, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select

from threadline.errors import APIError
from threadline.store.database import Database
from threadline.store.pagination import Page, read_page

pytestmark = pytest.mark.asyncio

metadata = MetaData()
# Files are listed by creation time, and many share a second: the id tells those apart.
files = Table(
    "files",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("owner", String(20), nullable=False),
)
# Created in this order, three to a second; another owner's files are not in the list.
CREATED = [(f"file-{n:02d}", 1000 + n // 3) for n in range(10)]
ORDERED = [file_id for file_id, _ in sorted(CREATED, key=lambda file: (file[1], file[0]))]


async def with_files(url: str) -> Database:
    database = Database(url)
    async with database.write() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(files), [{"id": file_id, "created_at": at, "owner": "a"} for file_id, at in CREATED])
        await connection.execute(insert(files), [{"id": "file-other", "created_at": 1001, "owner": "b"}])
    return database


async def page(database: Database, *, after: str | None, limit: int, order: str) -> Page:
    async with database.read() as connection:
        return await read_page(
            connection,
            select(files.c.id).where(files.c.owner == "a"),
            order_by=[files.c.created_at, files.c.id],
            id_column=files.c.id,
            after=after,
            limit=limit,
            order=order,
            noun="File",
            read=lambda row: {"id": row.id},
        )


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pages_walk_the_whole_list_once_in_order(fresh_database_url, order):
    database = await with_files(fresh_database_url)
    try:
        walked, after, pages = [], None, []
        while True:
            current = await page(database, after=after, limit=4, order=order)
            pages.append(current)
            walked += [file["id"] for file in current.data]
            if not current.has_more:
                break
            after = current.last_id
        assert walked == (ORDERED if order == "asc" else ORDERED[::-1])
        assert [len(current.data) for current in pages] == [4, 4, 2]
        assert pages[0].list_object() == {
            "object": "list",
            "data": [{"id": file_id} for file_id in walked[:4]],
            "first_id": walked[0],
            "last_id": walked[3],
            "has_more": True,
        }
    finally:
        await database.dispose()


async def test_a_page_that_ends_the_list_says_so_and_an_empty_page_has_no_ids(fresh_database_url):
    database = await with_files(fresh_database_url)
    try:
        assert (await page(database, after=None, limit=10, order="asc")).has_more is False
        last = await page(database, after=ORDERED[-1], limit=5, order="asc")
        assert last.list_object() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    finally:
        await database.dispose()


@pytest.mark.parametrize("after", ["file-missing", "file-other"])
async def test_after_must_name_an_object_of_the_list(fresh_database_url, after):
    database = await with_files(fresh_database_url)
    try:
        with pytest.raises(APIError) as refused:
            await page(database, after=after, limit=5, order="desc")
        assert (refused.value.status, refused.value.param) == (404, "after")
        assert refused.value.message == f"File with id '{after}' not found."
    finally:
        await database.dispose()

"""The console's reading of responses and conversations on both databases: a chain too large to
show whole is cut, and says so, keeping the path from the root to the response asked for; the
listings' pages are read from indexes; a database made before the console is upgraded to them."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import event, insert, inspect, text

from threadline.store.conversation_listing import list_conversations
from threadline.store.database import Database
from threadline.store.migrate import _alembic_config, migrate
from threadline.store.response_listing import (
    TREE_NODES,
    ResponseFilters,
    ResponseListing,
)
from threadline.store.responses import response_row
from threadline.store.tables import conversations, responses

pytestmark = pytest.mark.asyncio


def stored(response_id: str, previous: str | None, created_at: int, project: str = "alpha") -> dict:
    response = {"id": response_id, "created_at": created_at, "status": "completed", "model": "m", "previous_response_id": previous, "output": []}
    return response_row(project, response, owner=None, job=None)


async def test_a_tree_larger_than_the_console_shows_is_cut_keeping_the_path(fresh_database_url):
    database = Database(fresh_database_url)
    await migrate(database)
    # A root with TREE_NODES children, then a chain of three under the last of them, which
    # breadth first comes after the cut; and another project's response continuing the root.
    rows = [stored("resp_root", None, 1)]
    rows += [stored(f"resp_child_{n:04d}", "resp_root", 2) for n in range(TREE_NODES)]
    rows += [stored("resp_deep_1", f"resp_child_{TREE_NODES - 1:04d}", 3), stored("resp_deep_2", "resp_deep_1", 4)]
    rows += [stored("resp_other_project", "resp_root", 5, project="beta")]
    async with database.write() as connection:
        await connection.execute(insert(responses), rows)
    listing = ResponseListing(database)
    try:
        tree = await listing.tree("alpha", "resp_deep_2")
        ids = [node["id"] for node in tree.nodes]
        assert tree.root_id == "resp_root" and tree.truncated is True
        assert {"resp_root", f"resp_child_{TREE_NODES - 1:04d}", "resp_deep_1", "resp_deep_2"} <= set(ids)
        assert "resp_other_project" not in ids and len(ids) == TREE_NODES
        kept = set(ids)
        assert all(node["previous_response_id"] in kept for node in tree.nodes if node["id"] != "resp_root")

        small = await listing.tree("alpha", "resp_deep_1")
        assert small.root_id == "resp_root"
        assert await listing.tree("beta", "resp_deep_1") is None
        assert await listing.project_of("resp_other_project") == "beta"
    finally:
        await database.dispose()


async def test_a_database_at_revision_0006_is_upgraded_and_its_responses_listed(fresh_database_url):
    """A database made by the Threadline before the console keeps its responses, gains the
    console's indexes, and is listed by them."""
    database = Database(fresh_database_url)
    config = _alembic_config()

    def upgrade_to_0006(connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")

    try:
        async with database.write() as connection:
            await connection.run_sync(upgrade_to_0006)
            await connection.execute(insert(responses), [stored("resp_old_1", None, 1), stored("resp_old_2", "resp_old_1", 2), stored("resp_old_3", None, 3, "beta")])
        await migrate(database)
        async with database.read() as connection:
            assert (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0009"
            indexes = await connection.run_sync(lambda sync: {index["name"] for table in ("responses", "conversations") for index in inspect(sync).get_indexes(table)})
        assert {"ix_responses_project_created_at", "ix_responses_created_at", "ix_responses_previous_response_id", "ix_conversations_project_created_at", "ix_conversations_created_at"} <= indexes
        listing = ResponseListing(database)
        assert [entry["id"] for entry in (await listing.list("alpha", ResponseFilters(), after=None, limit=10)).data] == ["resp_old_2", "resp_old_1"]
        assert [entry["id"] for entry in (await listing.list(None, ResponseFilters(), after="resp_old_2", limit=10)).data] == ["resp_old_1"]
        assert [node["id"] for node in (await listing.tree("alpha", "resp_old_1")).nodes] == ["resp_old_1", "resp_old_2"]
    finally:
        await database.dispose()


@pytest.mark.parametrize("project", ["alpha", None], ids=["a project", "an admin"])
@pytest.mark.parametrize("filters", [ResponseFilters(), ResponseFilters(since=5, until=50)], ids=["all", "a time range"])
async def test_each_page_of_the_responses_listing_is_read_in_order_from_an_index(fresh_database_url, project, filters):
    """No page reads the whole table: a project's responses and every project's (an admin's)
    are read newest first from an index, the first page and the ones after."""
    database = Database(fresh_database_url)
    await migrate(database)
    rows = [stored(f"resp_{n:04d}", None, n // 3, ("alpha", "beta", "gamma")[n % 3]) for n in range(300)]
    listing = ResponseListing(database)

    async def two_pages() -> None:
        first = await listing.list(project, filters, after=None, limit=10)
        await listing.list(project, filters, after=first.last_id, limit=10)

    try:
        await assert_pages_read_from_an_index(database, responses, rows, two_pages)
    finally:
        await database.dispose()


@pytest.mark.parametrize("project", ["alpha", None], ids=["a project", "an admin"])
async def test_each_page_of_the_conversations_listing_is_read_in_order_from_an_index(fresh_database_url, project):
    database = Database(fresh_database_url)
    await migrate(database)
    rows = [
        {"id": f"conv_{n:04d}", "project": ("alpha", "beta", "gamma")[n % 3], "created_at": n // 3, "metadata": "{}"}
        for n in range(300)
    ]

    async def two_pages() -> None:
        first = await list_conversations(database, project, limit=10)
        await list_conversations(database, project, after=first.last_id, limit=10)

    try:
        await assert_pages_read_from_an_index(database, conversations, rows, two_pages)
    finally:
        await database.dispose()


async def assert_pages_read_from_an_index(database: Database, table, rows: list[dict], read_two_pages) -> None:
    """Stores `rows` in `table`, reads two pages of a listing, and checks that the database
    planned each page's query on an index, in order, never reading or sorting the table."""
    async with database.write() as connection:
        await connection.execute(insert(table), rows)
        await connection.execute(text("ANALYZE"))
    pages: list[tuple[str, tuple]] = []

    def keep(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT") and "ORDER BY" in statement and f"FROM {table.name}" in statement:
            pages.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", keep)
    try:
        await read_two_pages()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", keep)
    assert len(pages) == 2
    async with database.read() as connection:
        if not database.is_sqlite:
            await connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small is otherwise read whole
        for statement, parameters in pages:
            explain = "EXPLAIN QUERY PLAN " if database.is_sqlite else "EXPLAIN "
            plan = "\n".join(str(row[-1]) for row in await connection.exec_driver_sql(explain + statement, parameters))
            if database.is_sqlite:
                assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
            else:  # PostgreSQL may sort the few rows an index range holds: never the table
                assert "Index" in plan and "Seq Scan" not in plan, plan

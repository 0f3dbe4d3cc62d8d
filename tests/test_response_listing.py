"""The console's response tree on both databases: a chain too large to show whole is cut,
and says so, keeping the path from the root to the response asked for."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from threadline.store.database import Database
from threadline.store.migrate import migrate
from threadline.store.response_listing import TREE_NODES, ResponseListing
from threadline.store.responses import response_row
from threadline.store.tables import responses

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

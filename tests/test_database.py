"""Writes that share a transaction: each keeps its own outcome, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from threadline.store.database import Database

pytestmark = pytest.mark.asyncio


async def with_table(url: str) -> Database:
    database = Database(url)
    async with database.write() as connection:
        await connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    return database


def insert_note(note_id: int, body: str | None = "kept"):
    async def write(connection) -> int:
        await connection.execute(text("INSERT INTO notes (id, body) VALUES (:id, :body)"), {"id": note_id, "body": body})
        return note_id

    return write


async def stored_ids(database: Database) -> list[int]:
    async with database.read() as connection:
        return [row.id for row in await connection.execute(text("SELECT id FROM notes ORDER BY id"))]


async def test_writes_waiting_together_are_all_stored_with_their_results(fresh_database_url):
    database = await with_table(fresh_database_url)
    try:
        results = await asyncio.gather(*(database.write_together(insert_note(i)) for i in range(50)))
        assert results == list(range(50))
        assert await stored_ids(database) == list(range(50))
    finally:
        await database.dispose()


async def test_a_failing_write_fails_alone_and_the_others_are_stored(fresh_database_url):
    database = await with_table(fresh_database_url)
    try:
        writes = [insert_note(i) for i in range(20)]
        writes[7] = insert_note(7, body=None)  # NOT NULL: refused by the database
        outcomes = await asyncio.gather(*(database.write_together(write) for write in writes), return_exceptions=True)
        assert isinstance(outcomes[7], Exception)
        assert [outcome for index, outcome in enumerate(outcomes) if index != 7] == [i for i in range(20) if i != 7]
        assert await stored_ids(database) == [i for i in range(20) if i != 7]
    finally:
        await database.dispose()


async def test_a_cancelled_caller_does_not_undo_its_write(fresh_database_url):
    database = await with_table(fresh_database_url)
    try:
        waiting = asyncio.ensure_future(database.write_together(insert_note(1)))
        await asyncio.sleep(0)
        waiting.cancel()
        await database.write_together(insert_note(2))
        assert await stored_ids(database) == [1, 2]
    finally:
        await database.dispose()


INSERT_NOTE = text("INSERT INTO notes (id, body) VALUES (:id, :body)")


async def test_inserts_waiting_together_share_a_statement_and_a_failing_one_fails_alone(fresh_database_url):
    database = await with_table(fresh_database_url)
    try:
        rows = [[{"id": i, "body": "kept"}, {"id": 100 + i, "body": "kept"}] for i in range(20)]
        rows[7][1]["body"] = None  # NOT NULL: refused by the database, and with it the whole write
        outcomes = await asyncio.gather(*(database.write_together(None, [(INSERT_NOTE, write)]) for write in rows), return_exceptions=True)
        assert isinstance(outcomes[7], Exception)
        assert all(outcome is None for index, outcome in enumerate(outcomes) if index != 7)
        kept = [i for i in range(20) if i != 7]
        assert await stored_ids(database) == kept + [100 + i for i in kept]
    finally:
        await database.dispose()


async def test_a_writes_inserts_come_before_its_work(fresh_database_url):
    database = await with_table(fresh_database_url)

    async def count_notes(connection) -> int:
        return (await connection.execute(text("SELECT count(*) FROM notes"))).scalar()

    try:
        counted = await asyncio.gather(*(database.write_together(count_notes, [(INSERT_NOTE, [{"id": i, "body": "kept"}])]) for i in range(5)))
        assert counted[-1] == 5 and all(count >= 1 for count in counted)
    finally:
        await database.dispose()

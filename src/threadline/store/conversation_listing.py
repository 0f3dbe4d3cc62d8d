"""The console's listing of conversations, which the public API lacks: a project's (or, for an
admin, every project's), newest first, found by id prefix and by metadata values."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, cast, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from threadline.store.conversations import conversation_object
from threadline.store.database import Database
from threadline.store.pagination import Page, read_page
from threadline.store.tables import conversations


async def list_conversations(
    database: Database,
    project: str | None,
    *,
    id_prefix: str | None = None,
    metadata: Iterable[tuple[str, str]] = (),
    after: str | None = None,
    limit: int = 20,
) -> Page:
    """Conversations of `project` (None: every project), newest first, each with its project.

    `id_prefix` keeps those whose id starts with it (a whole id finds just that one);
    `metadata` those whose metadata holds every one of these key-value pairs."""
    query = select(conversations.c.id, conversations.c.project, conversations.c.created_at, conversations.c.metadata)
    if project is not None:
        query = query.where(conversations.c.project == _without_nul(project))
    if id_prefix:
        # Not LIKE: SQLite's ignores case, PostgreSQL's does not.
        query = query.where(func.substr(conversations.c.id, 1, len(id_prefix), type_=conversations.c.id.type) == id_prefix)
    for key, value in metadata:
        query = query.where(_metadata_holds(database, key, value))
    async with database.read() as connection:
        return await read_page(
            connection,
            query,
            order_by=[conversations.c.created_at, conversations.c.id],
            id_column=conversations.c.id,
            after=after,
            limit=limit,
            order="desc",
            noun="Conversation",
            read=lambda row: {**conversation_object(row), "project": row.project},
        )


async def project_of(database: Database, conversation_id: str) -> str | None:
    """The project a conversation belongs to, None when there is no such conversation: for an
    admin, who then reads it through the services as that project."""
    async with database.read() as connection:
        return (await connection.execute(select(conversations.c.project).where(conversations.c.id == conversation_id))).scalar()


def _metadata_holds(database: Database, key: str, value: str) -> ColumnElement[bool]:
    """Metadata (a JSON object kept as text) has `key` set to `value`; any key, quotes included,
    is passed as a bound value, never spliced into a JSON path."""
    # PostgreSQL refuses a NUL in text, and in JSON as \u0000: on either database a NUL, stored
    # or searched for, is read as U+FFFD, so one such conversation breaks no search.
    document = func.replace(conversations.c.metadata, r"\u0000", r"\ufffd")
    key, value = _without_nul(key), _without_nul(value)
    if database.is_sqlite:
        pairs = func.json_each(document).table_valued("key", "value")
        return select(literal(1)).select_from(pairs).where(pairs.c.key == key, pairs.c.value == value).exists()
    return cast(document, JSONB)[key].astext == value


def _without_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")

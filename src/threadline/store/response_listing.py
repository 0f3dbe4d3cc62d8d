"""The console's reading of responses: a project's responses by time, model and status (or
every project's, for an admin), which project holds a response, and a previous_response_id
chain as a tree. The public API has none of these."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Row, bindparam, func, select, text

from threadline.store.database import Database
from threadline.store.pagination import Page, read_page
from threadline.store.tables import ObjectId, response_items, responses

STATUSES = ("queued", "in_progress", "completed", "failed", "incomplete", "cancelled")
# A tree is cut at this many responses, so a chain with thousands of branches stays one page.
TREE_NODES = 500
PREVIEW_CHARS = 120

# A response's ancestors through previous_response_id, itself first, up to the root (or TREE_NODES of them).
ANCESTORS = text(
    """
    WITH RECURSIVE up(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses WHERE id = :response_id AND project = :project
        UNION ALL
        SELECT r.id, r.previous_response_id, up.depth + 1
        FROM responses r JOIN up ON r.id = up.previous_response_id
        WHERE r.project = :project AND up.depth + 1 < :nodes
    )
    SELECT id FROM up ORDER BY depth
    """
).bindparams(bindparam("response_id", type_=ObjectId(80)))

# Every response continuing the root, breadth first, up to :nodes of them.
DESCENDANTS = text(
    """
    WITH RECURSIVE down(id, depth) AS (
        SELECT id, 0 FROM responses WHERE id = :root_id AND project = :project
        UNION ALL
        SELECT r.id, down.depth + 1
        FROM responses r JOIN down ON r.previous_response_id = down.id
        WHERE r.project = :project
    )
    SELECT id FROM down LIMIT :nodes
    """
).bindparams(bindparam("root_id", type_=ObjectId(80)))


@dataclass(frozen=True)
class ResponseFilters:
    """What a listing is narrowed to; None leaves that out."""

    model: str | None = None
    status: str | None = None
    since: int | None = None  # created at or after (Unix seconds)
    until: int | None = None  # created before
    background: bool | None = None


@dataclass
class Tree:
    """A chain as a tree: `nodes` (summaries, each naming its previous_response_id) from the root down."""

    root_id: str
    nodes: list[dict]
    truncated: bool

    @property
    def root(self) -> dict:
        return next(node for node in self.nodes if node["id"] == self.root_id)


class ResponseListing:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def list(self, project: str | None, filters: ResponseFilters, *, after: str | None, limit: int) -> Page:
        """Summaries of the project's responses (every project's when None), newest first.
        `after` is looked up among all of them: a response that has left a status since its
        page was read still marks where the next page starts."""
        if filters.model is not None and "\x00" in filters.model:
            return Page([], has_more=False)  # no model id has one (and PostgreSQL refuses a NUL in a query)
        scope = _SUMMARY if project is None else _SUMMARY.where(responses.c.project == project)
        query = scope
        if filters.model is not None:
            query = query.where(responses.c.model == filters.model)
        if filters.status is not None:
            query = query.where(responses.c.status == filters.status)
        if filters.since is not None:
            query = query.where(responses.c.created_at >= filters.since)
        if filters.until is not None:
            query = query.where(responses.c.created_at < filters.until)
        if filters.background is not None:
            query = query.where(responses.c.background.is_(filters.background))
        async with self.database.read() as connection:
            page = await read_page(
                connection,
                query,
                order_by=[responses.c.created_at, responses.c.id],
                id_column=responses.c.id,
                after=after,
                limit=limit,
                order="desc",
                noun="Response",
                read=summary,
                cursor_query=scope,
            )
            await _add_input_previews(connection, page.data)
        return page

    async def summary(self, project: str, response_id: str) -> dict | None:
        async with self.database.read() as connection:
            row = (await connection.execute(_SUMMARY.where(responses.c.id == response_id, responses.c.project == project))).first()
            if row is None:
                return None
            found = [summary(row)]
            await _add_input_previews(connection, found)
        return found[0]

    async def project_of(self, response_id: str) -> str | None:
        """The project holding a response, for an admin, who may open any."""
        async with self.database.read() as connection:
            return (await connection.execute(select(responses.c.project).where(responses.c.id == response_id))).scalar()

    async def tree(self, project: str, response_id: str) -> Tree | None:
        """The response's chain: its ancestors to the root, then every response continuing the
        root, branches included, breadth first; cut at TREE_NODES responses, keeping the path
        from the root to `response_id`. None if the response is not the project's."""
        async with self.database.read() as connection:
            path = (await connection.execute(ANCESTORS, {"response_id": response_id, "project": project, "nodes": TREE_NODES})).scalars().all()
            if not path:
                return None
            root_id = path[-1]
            below = (await connection.execute(DESCENDANTS, {"root_id": root_id, "project": project, "nodes": TREE_NODES + 1})).scalars().all()
            # The path first, then the others breadth first: every kept response's parent is kept too.
            ids = list(dict.fromkeys(list(reversed(path)) + below))
            truncated = len(ids) > TREE_NODES or len(path) == TREE_NODES
            ids = ids[:TREE_NODES]
            rows = (await connection.execute(_SUMMARY.where(responses.c.id.in_(ids)))).all()
            nodes = sorted((summary(row) for row in rows), key=lambda node: (node["created_at"], node["id"]))
            await _add_input_previews(connection, nodes)
        return Tree(root_id, nodes, truncated)


_SUMMARY = select(
    responses.c.id,
    responses.c.project,
    responses.c.created_at,
    responses.c.status,
    responses.c.model,
    responses.c.background,
    responses.c.previous_response_id,
    responses.c.conversation_id,
    responses.c.data,
)


def summary(row: Row) -> dict:
    """A listing's row: what the console shows of a response without opening it."""
    response = orjson.loads(row.data)
    usage = response.get("usage") or {}
    return {
        "id": row.id,
        "object": "response",
        "project": row.project,
        "created_at": row.created_at,
        "completed_at": response.get("completed_at"),
        "status": row.status,  # the column moves first (a worker claiming a queued response sets only it)
        "model": row.model,
        "background": bool(row.background),
        "previous_response_id": row.previous_response_id,
        "conversation_id": row.conversation_id,
        "total_tokens": usage.get("total_tokens"),
        "input_preview": None,
        "output_preview": preview(output_text(response.get("output") or [])),
    }


async def _add_input_previews(connection, summaries: list[dict]) -> None:
    """Sets each summary's input_preview from the last item of its input."""
    if not summaries:
        return
    ids = [entry["id"] for entry in summaries]
    last = (
        select(response_items.c.response_id, func.max(response_items.c.position).label("position"))
        .where(response_items.c.response_id.in_(ids), response_items.c.is_output.is_(False))
        .group_by(response_items.c.response_id)
        .subquery()
    )
    rows = await connection.execute(
        select(response_items.c.response_id, response_items.c.data).join(
            last, (response_items.c.response_id == last.c.response_id) & (response_items.c.position == last.c.position)
        )
    )
    previews = {row.response_id: preview(item_text(orjson.loads(row.data))) for row in rows}
    for entry in summaries:
        entry["input_preview"] = previews.get(entry["id"])


def item_text(item: dict) -> str:
    """An item in a few words: a message's text, a call's name and arguments, else its type."""
    if item.get("type", "message") == "message":
        content = item.get("content")
        if isinstance(content, str):
            return content
        return " ".join(part.get("text") or part.get("refusal") or f"[{part.get('type')}]" for part in content or ())
    if item.get("type") == "function_call":
        return f"{item.get('name')}({item.get('arguments', '')})"
    if item.get("type") == "function_call_output":
        output = item.get("output")
        return f"output: {output if isinstance(output, str) else '[content]'}"
    return f"[{item.get('type')}]"


def output_text(output: list[dict]) -> str:
    texts = [item_text(item) for item in output if item.get("type") != "reasoning"]
    return " ".join(text for text in texts if text)


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

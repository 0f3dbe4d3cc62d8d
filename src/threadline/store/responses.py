"""Stored responses: the Response object, its input and output items, and chains of them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncGenerator
from typing import Literal

import orjson
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import APIError, not_found
from threadline.items.ended import EndedItem
from threadline.spec.response import with_status
from threadline.store.chain_cache import ChainCache, KeptResponse
from threadline.store.conversations import append_items
from threadline.store.database import Database, Inserts
from threadline.store.pagination import Page, read_page
from threadline.store.tables import ObjectId, approval_claims, response_events, response_items, responses

# A response and at most :responses - 1 of its ancestors through previous_response_id, newest
# first, with their items newest first: one batch of a history read backwards. A response
# with no items is one row, with no data. Every row has the chain version (migration 0009) as
# the chain was read.
CHAIN_ITEMS = text(
    """
    WITH RECURSIVE chain(id, previous_response_id, status, depth) AS (
        SELECT id, previous_response_id, status, 0 FROM responses WHERE id = :response_id AND project = :project
        UNION ALL
        SELECT r.id, r.previous_response_id, r.status, chain.depth + 1
        FROM responses r JOIN chain ON r.id = chain.previous_response_id
        WHERE r.project = :project AND chain.depth + 1 < :responses
    )
    SELECT chain.id AS id, chain.previous_response_id AS previous_response_id, chain.status AS status, response_items.data AS data,
        (SELECT version FROM chain_version WHERE id = 1) AS chain_version
    FROM chain LEFT JOIN response_items ON response_items.response_id = chain.id
    ORDER BY chain.depth, response_items.position DESC
    """
).bindparams(bindparam("response_id", type_=ObjectId(80)))

# A chain kept in memory, checked before use: the chain version now (migration 0009; -1
# without its row) and, unless it is still :known, how many of the response and its ancestors,
# up to :responses, still exist (the chain's walk by primary key, without its items; none
# walked while the version stays, as nothing was deleted since the chain was last checked).
CHAIN_CHECK = text(
    """
    WITH RECURSIVE version(current) AS (
        SELECT coalesce((SELECT version FROM chain_version WHERE id = 1), -1)
    ),
    chain(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses, version
        WHERE id = :response_id AND project = :project AND (version.current <> :known OR version.current = -1)
        UNION ALL
        SELECT r.id, r.previous_response_id, chain.depth + 1
        FROM responses r JOIN chain ON r.id = chain.previous_response_id
        WHERE r.project = :project AND chain.depth + 1 < :responses
    )
    SELECT version.current AS version, (SELECT count(*) FROM chain) AS stored FROM version
    """
).bindparams(bindparam("response_id", type_=ObjectId(80)))

# A response in these states may still get items; in any other its items are final.
UNFINISHED_STATUSES = ("queued", "in_progress")

# Responses in the first batch of a chain read backwards; then as many as the reader asks for.
CHAIN_BATCH = 64

APPENDED_STATUSES = ("completed", "incomplete")

# Built once: SQLAlchemy then finds the compiled statement in its cache without rebuilding it.
INSERT_RESPONSE = insert(responses)
INSERT_ITEMS = insert(response_items)
INSERT_EVENTS = insert(response_events)
END_RESPONSE = (
    update(responses)
    .where(responses.c.id == bindparam("response_id"), responses.c.status == "in_progress", responses.c.owner == bindparam("running_owner"))
    .values(status=bindparam("new_status"), data=bindparam("new_data"), owner=None, job=None)
)

CHECKPOINT_RESPONSE = (
    update(responses)
    .where(responses.c.id == bindparam("response_id"), responses.c.status == "in_progress", responses.c.owner == bindparam("running_owner"))
    .values(data=bindparam("new_data"))
)


class ResponseStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.chains = ChainCache()  # chains read or stored by this process (store/chain_cache.py)

    async def begin(
        self,
        project: str,
        response: dict,
        input_items: list[dict],
        *,
        owner: str | None,
        job: dict | None = None,
        events: list[dict] = (),
    ) -> None:
        """Record a response as it starts (in_progress, owned by `owner`) or is queued (with its job).

        Recording it first is what lets a crash be noticed: a response whose owner stops
        heartbeating is marked failed instead of staying in progress forever.
        """
        await self.database.write_together(None, response_inserts(project, response, input_items, [], events, owner=owner, job=job))

    async def complete(
        self,
        project: str,
        response: dict,
        input_items: list[dict],
        *,
        owner: str,
        events: list[dict] = (),
        begun: bool = True,
    ) -> bool:
        """Store how a response ended, in one transaction with its conversation append.

        A response nobody could see before it ended (`begun` false: not streamed, not
        queued) is written here whole. Otherwise only the owner of a response still in
        progress can end it: False means it was cancelled or recovered meanwhile, and
        nothing was written. A response that failed or was cancelled adds nothing to its
        conversation.
        """
        conversation_id = conversation_id_of(response)

        async def write(connection: AsyncConnection) -> bool:
            if begun:
                updated = await connection.execute(
                    END_RESPONSE,
                    {"response_id": response["id"], "running_owner": owner, "new_status": response["status"], "new_data": orjson.dumps(response).decode()},
                )
                if updated.rowcount == 0:
                    return False
                await insert_rows(connection, INSERT_ITEMS, item_rows(response["id"], input_items, response["output"], inputs_stored=True))
                await insert_events(connection, response["id"], events)
            if conversation_id and response["status"] in APPENDED_STATUSES:
                await append_items(connection, project, conversation_id, input_items + response["output"])
            return True

        # Written here whole: plain inserts, which share their statements with the other writes waiting.
        inserts = () if begun else response_inserts(project, response, input_items, response["output"], events, owner=None, job=None)
        stored = await self.database.write_together(write, inserts)
        if stored and response.get("previous_response_id"):
            self._keep(project, response, input_items)
        return stored

    def _keep(self, project: str, response: dict, input_items: list[dict]) -> None:
        """Keep in memory a response just stored that continues a chain, its items as they
        would be read back (decoded from their JSON, so nothing shares the caller's objects),
        as the items of an ended response (items/ended.py)."""
        stored = orjson.dumps((input_items + response["output"])[::-1])
        previous = self.chains.get(response["previous_response_id"])
        reach = previous.reach + 1 if previous else 0
        # Stored after the version its previous response was checked at: while that stays, it exists.
        checked = previous.checked if previous else None
        items = [EndedItem(item) for item in orjson.loads(stored)]
        self.chains.keep(response["id"], KeptResponse(project, response["previous_response_id"], items, len(stored), reach, checked))

    async def checkpoint(self, response: dict, owner: str) -> bool:
        """Store a running response as it stands (its owner's, still in progress); False if
        it is no longer so (cancelled or recovered meanwhile), and nothing was written."""
        async with self.database.write() as connection:
            updated = await connection.execute(
                CHECKPOINT_RESPONSE, {"response_id": response["id"], "running_owner": owner, "new_data": orjson.dumps(response).decode()}
            )
            return bool(updated.rowcount)

    async def claim_approval(self, project: str, approval_request_id: str, response_id: str) -> bool:
        """Take on the call an approval approves, for this response; False if another
        response already did (it runs the call, or ran it). The approval is known by a digest
        of its id, which the client chose if it sent the request back itself."""
        key = hashlib.sha256(approval_request_id.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            async with self.database.write() as connection:
                await connection.execute(
                    insert(approval_claims).values(project=project, approval_request_id=key, response_id=response_id, created_at=time.time())
                )
        except IntegrityError:
            return False
        return True

    async def get(self, project: str, response_id: str) -> dict:
        async with self.database.read() as connection:
            row = (
                await connection.execute(
                    select(responses.c.data, responses.c.status).where(responses.c.id == response_id, responses.c.project == project)
                )
            ).first()
        if row is None:
            raise not_found("Response", response_id)
        # The status column moves first (a worker claiming a queued response sets only it).
        return with_status(orjson.loads(row.data), row.status)

    async def delete(self, project: str, response_id: str) -> None:
        async with self.database.write() as connection:
            deleted = await connection.execute(
                delete(responses).where(responses.c.id == response_id, responses.c.project == project)
            )
            if deleted.rowcount == 0:
                raise not_found("Response", response_id)
            await connection.execute(delete(response_items).where(response_items.c.response_id == response_id))
            await connection.execute(delete(response_events).where(response_events.c.response_id == response_id))
        self.chains.forget(response_id)

    async def chain_items(self, project: str, previous_response_id: str) -> AsyncGenerator[list[dict], int | None]:
        """The items of a response and its ancestors, newest first, a batch of responses at a time.

        A batch is read only when asked for, so a caller that stops early never moves the rest
        of a long chain; `asend(n)` asks for about n items next, else the batch doubles. An
        ancestor deleted meanwhile ends the chain there. A batch this process keeps in memory
        (store/chain_cache.py) is only checked against the database, and is the same batch.
        """
        response_id, batch = previous_response_id, CHAIN_BATCH
        checked: list[tuple[str, KeptResponse]] = []  # kept responses from response_id back, checked in this read
        ended = False  # the chain ends after the last of them (it starts there, or the next one is gone)
        head = self.chains.get(previous_response_id)
        reach = head.reach if head else 0  # how far the last turn from here read: the first check covers that
        read = 0
        while response_id is not None:
            if len(checked) < batch and not ended:
                checked, ended = await self._kept_chain(project, response_id, batch, reach)
            if checked or ended:
                chain, checked = checked[:batch], checked[batch:]
            else:
                chain = await self._read_chain(project, response_id, batch)
            if not chain:
                if response_id == previous_response_id:
                    raise APIError(
                        400,
                        f"Previous response with id '{previous_response_id}' not found.",
                        param="previous_response_id",
                        code="previous_response_not_found",
                    )
                return
            read += len(chain)
            if head is not None:
                head.reach = read
            items_wanted = yield [item for _, kept in chain for item in kept.items]
            # Fewer responses than asked for: the chain starts (or an ancestor is gone) here.
            response_id = chain[-1][1].previous_response_id if len(chain) == batch else None
            # The items per response so far tell how many responses hold the items wanted
            # (a response without items counts as one, as its row does).
            rows = sum(len(kept.items) or 1 for _, kept in chain)
            batch = items_wanted * len(chain) // rows + 1 if items_wanted else batch * 2

    async def _kept_chain(self, project: str, response_id: str, batch: int, reach: int) -> tuple[list[tuple[str, KeptResponse]], bool]:
        """The chain from `response_id` back as this process keeps it (at least `batch`
        responses, or all to its start; `reach` if kept), up to its first response deleted since
        by any process; and whether the chain ends after them. Nothing if too little is kept."""
        kept = self.chains.chain(project, response_id, at_least=batch, at_most=max(batch, reach))
        if kept is None:
            return [], False
        # All of them known to exist at one chain version: while it stays, they still do.
        known = kept[0][1].checked
        if known is None or any(response.checked != known for _, response in kept):
            known = -1  # walked whatever the version
        async with self.database.read() as connection:
            check = (
                await connection.execute(CHAIN_CHECK, {"response_id": response_id, "project": project, "responses": len(kept), "known": known})
            ).one()
        ended = kept[-1][1].previous_response_id is None
        if known != -1 and check.version == known:
            return kept, ended
        # A response's ancestor never changes: the chain still stored is the kept one, as far as it reaches.
        for _, response in kept[: check.stored]:
            response.checked = check.version
        if check.stored < len(kept):
            self.chains.forget(kept[check.stored][0])
            return kept[: check.stored], True
        return kept, ended

    async def _read_chain(self, project: str, response_id: str, responses: int) -> list[tuple[str, KeptResponse]]:
        """At most `responses` of the chain from `response_id` back, read from the database;
        those that ended are kept in memory for the next turn."""
        async with self.database.read() as connection:
            rows = (await connection.execute(CHAIN_ITEMS, {"response_id": response_id, "project": project, "responses": responses})).all()
        # Each response's rows are together, its items newest first (a row without data: no items).
        read: list[tuple[str, str | None, str, list[str]]] = []
        version = rows[0].chain_version if rows else None
        for row in rows:
            if not read or read[-1][0] != row.id:
                read.append((row.id, row.previous_response_id, row.status, []))
            if row.data is not None:
                read[-1][3].append(row.data)
        chain = []
        for read_id, previous_id, status, data in read:
            ended = status not in UNFINISHED_STATUSES
            items = [EndedItem(orjson.loads(text)) if ended else orjson.loads(text) for text in data]
            kept = KeptResponse(project, previous_id, items, sum(map(len, data)), checked=version)
            if ended:
                self.chains.keep(read_id, kept)
            chain.append((read_id, kept))
        return chain

    async def list_input_items(
        self, project: str, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> Page:
        async with self.database.read() as connection:
            exists = (
                await connection.execute(
                    select(responses.c.id).where(responses.c.id == response_id, responses.c.project == project)
                )
            ).scalar()
            if exists is None:
                raise not_found("Response", response_id)
            inputs = select(response_items.c.data).where(
                response_items.c.response_id == response_id, response_items.c.is_output.is_(False)
            )
            return await read_page(
                connection, inputs, order_by=[response_items.c.position], id_column=response_items.c.id, after=after, limit=limit, order=order
            )


def response_row(project: str, response: dict, *, owner: str | None, job: dict | None) -> dict:
    return {
        "id": response["id"],
        "project": project,
        "created_at": response["created_at"],
        "status": response["status"],
        "model": response["model"],
        "previous_response_id": response.get("previous_response_id"),
        "conversation_id": conversation_id_of(response),
        "data": orjson.dumps(response).decode(),
        "background": bool(response.get("background")),
        "owner": owner,
        "job": orjson.dumps(job).decode() if job is not None else None,
    }


def conversation_id_of(response: dict) -> str | None:
    return (response.get("conversation") or {}).get("id")


def response_inserts(
    project: str, response: dict, inputs: list[dict], outputs: list[dict], events: list[dict], *, owner: str | None, job: dict | None
) -> Inserts:
    """A response's row, its items' rows and its events' rows, to insert."""
    return [
        (INSERT_RESPONSE, [response_row(project, response, owner=owner, job=job)]),
        (INSERT_ITEMS, item_rows(response["id"], inputs, outputs)),
        (INSERT_EVENTS, event_rows(response["id"], events)),
    ]


def item_rows(response_id: str, inputs: list[dict], outputs: list[dict], *, inputs_stored: bool = False) -> list[dict]:
    """A response's items at their positions: inputs first, then outputs (the inputs left out
    when they were stored as the response began)."""
    tagged = [(item, False) for item in inputs] + [(item, True) for item in outputs]
    return [
        {"response_id": response_id, "position": position, "id": item["id"], "is_output": is_output, "data": orjson.dumps(item).decode()}
        for position, (item, is_output) in enumerate(tagged)
        if is_output or not inputs_stored
    ]


def event_rows(response_id: str, events: list[dict]) -> list[dict]:
    return [{"response_id": response_id, "sequence_number": event["sequence_number"], "data": orjson.dumps(event).decode()} for event in events]


async def insert_rows(connection: AsyncConnection, statement, rows: list[dict]) -> None:
    if rows:
        await connection.execute(statement, rows)


async def insert_events(connection: AsyncConnection, response_id: str, events: list[dict]) -> None:
    await insert_rows(connection, INSERT_EVENTS, event_rows(response_id, events))

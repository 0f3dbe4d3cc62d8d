"""Background work in the database: the queue, owners' heartbeats, cancels and event logs.

Every rule that keeps several processes honest is a conditional UPDATE here: a queued
response is claimed by exactly one process, only its owner can finish it, and work whose
owner stopped heartbeating is ended once, by whichever process notices first. How such work
ends is decided in jobs/, which runs it; this module only keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import not_found
from threadline.spec.events import terminal_event
from threadline.store.database import Database
from threadline.store.responses import insert_events
from threadline.store.tables import response_events, responses, workers

FINISHED = ("completed", "failed", "incomplete", "cancelled")


@dataclass
class OwnedResponse:
    """A response as its owner (a process) left it."""

    response_id: str
    owner: str
    status: str
    response: dict


@dataclass
class ClaimedJob:
    response_id: str
    project: str
    response: dict
    job: dict


class JobStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- processes ---------------------------------------------------------------

    async def heartbeat(self, owner: str, lease_s: float) -> None:
        """Say this process is alive for another `lease_s` seconds.

        Each process states its own lease, so processes configured differently still agree
        on when one of them is gone."""
        expires_at = time.time() + lease_s
        async with self.database.write() as connection:
            updated = await connection.execute(update(workers).where(workers.c.id == owner).values(lease_expires_at=expires_at))
            if updated.rowcount == 0:
                await connection.execute(insert(workers).values(id=owner, lease_expires_at=expires_at))

    async def retire(self, owner: str) -> None:
        async with self.database.write() as connection:
            await connection.execute(delete(workers).where(workers.c.id == owner))

    # -- the queue -----------------------------------------------------------------

    async def claim(self, owner: str, model_ids: list[str]) -> ClaimedJob | None:
        """Take the oldest queued response for one of these models, or None; no two
        processes get the same one."""
        oldest = (
            select(responses.c.id)
            .where(responses.c.status == "queued", responses.c.model.in_(model_ids))
            .order_by(responses.c.created_at)
            .limit(1)
        )
        if not self.database.is_sqlite:
            oldest = oldest.with_for_update(skip_locked=True)
        async with self.database.write() as connection:
            row = (
                await connection.execute(
                    update(responses)
                    .where(responses.c.id == oldest.scalar_subquery(), responses.c.status == "queued")
                    .values(status="in_progress", owner=owner)
                    .returning(responses.c.id, responses.c.project, responses.c.data, responses.c.job)
                )
            ).first()
        if row is None:
            return None
        return ClaimedJob(row.id, row.project, orjson.loads(row.data), orjson.loads(row.job))

    async def queued_by_model(self) -> list[tuple[str, int, float]]:
        """The queue by model: how many responses wait, and when the oldest was created."""
        query = select(responses.c.model, func.count(), func.min(responses.c.created_at)).where(responses.c.status == "queued").group_by(responses.c.model)
        async with self.database.read() as connection:
            return [(model, count, float(oldest)) for model, count, oldest in await connection.execute(query)]

    async def running_by_model(self) -> list[tuple[str, int]]:
        """Responses in progress, in any process, by model."""
        query = select(responses.c.model, func.count()).where(responses.c.status == "in_progress").group_by(responses.c.model)
        async with self.database.read() as connection:
            return [(model, count) for model, count in await connection.execute(query)]

    async def processes(self) -> list[tuple[str, float, int]]:
        """Every process that heartbeats here: its id, when its lease runs out, and how many
        responses it runs."""
        running = (
            select(func.count())
            .where(responses.c.owner == workers.c.id, responses.c.status == "in_progress")
            .scalar_subquery()
        )
        query = select(workers.c.id, workers.c.lease_expires_at, running).order_by(workers.c.id)
        async with self.database.read() as connection:
            return [(owner, float(expires_at), count) for owner, expires_at, count in await connection.execute(query)]

    async def cancel(self, response: dict, from_status: str) -> bool:
        """Store `response`, cancelled, in place of the response still `from_status`: a queued
        one leaves the queue and its log ends here, as nobody runs it. False, with nothing
        written, if its status moved meanwhile (claimed, finished, cancelled elsewhere).

        Claims and finishes are conditional on the status too, so only one of them wins."""
        queued = from_status == "queued"
        values = {"status": "cancelled", "data": orjson.dumps(response).decode()} | ({"job": None} if queued else {})
        async with self.database.write() as connection:
            updated = await connection.execute(
                update(responses).where(responses.c.id == response["id"], responses.c.status == from_status).values(**values)
            )
            if updated.rowcount and queued:
                await insert_events(connection, response["id"], [await _terminal_event(connection, response["id"], response)])
            return bool(updated.rowcount)

    async def end_queued(self, connection: AsyncConnection, conversation_id: str, ending: Callable[[dict], dict]) -> list[str]:
        """Take the conversation's queued responses off the queue, each stored as `ending` makes
        it and its log ended, within the caller's transaction; their ids. A response claimed
        meanwhile is left to its run."""
        queued = await connection.execute(
            select(responses.c.id, responses.c.data).where(responses.c.conversation_id == conversation_id, responses.c.status == "queued")
        )
        ended = []
        for response_id, data in queued.all():
            response = ending(orjson.loads(data))
            updated = await connection.execute(
                update(responses)
                .where(responses.c.id == response_id, responses.c.status == "queued")
                .values(status=response["status"], data=orjson.dumps(response).decode(), job=None)
            )
            if updated.rowcount:
                await insert_events(connection, response_id, [await _terminal_event(connection, response_id, response)])
                ended.append(response_id)
        return ended

    async def cancelled_among(self, owner: str) -> list[str]:
        """Responses this process runs that were cancelled, perhaps through another process."""
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(responses.c.id).where(responses.c.owner == owner, responses.c.status == "cancelled")
            )
            return [row.id for row in rows]

    async def end_cancelled(self, response: dict, owner: str, events: list[dict]) -> None:
        """Record what a cancelled response had produced, and end its event log."""
        async with self.database.write() as connection:
            await connection.execute(
                update(responses)
                .where(responses.c.id == response["id"], responses.c.owner == owner, responses.c.status == "cancelled")
                .values(data=orjson.dumps(response).decode(), owner=None, job=None)
            )
            await insert_events(connection, response["id"], events)

    async def requeue(self, response_id: str, owner: str, first_sequence_number: int) -> bool:
        """Give back a response that produced no output yet, so another process runs it anew."""
        async with self.database.write() as connection:
            updated = await connection.execute(
                update(responses)
                .where(responses.c.id == response_id, responses.c.owner == owner, responses.c.status == "in_progress")
                .values(status="queued", owner=None)
            )
            if updated.rowcount:
                await connection.execute(
                    delete(response_events).where(
                        response_events.c.response_id == response_id,
                        response_events.c.sequence_number >= first_sequence_number,
                    )
                )
            return bool(updated.rowcount)

    async def abandoned(self) -> list[OwnedResponse]:
        """Responses left in progress or cancelled by processes whose lease ran out without a heartbeat."""
        live = select(workers.c.id).where(workers.c.lease_expires_at >= time.time())
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(responses.c.id, responses.c.owner, responses.c.status, responses.c.data).where(
                    responses.c.status.in_(("in_progress", "cancelled")),
                    responses.c.owner.is_not(None),
                    responses.c.owner.not_in(live),
                )
            )
            return [OwnedResponse(row.id, row.owner, row.status, orjson.loads(row.data)) for row in rows]

    async def end(self, owned: OwnedResponse, response: dict) -> bool:
        """Store `response` as how an owned response ended, unowned, and end its event log;
        False (and nothing written) if it is no longer as `owned` says."""
        async with self.database.write() as connection:
            updated = await connection.execute(
                update(responses)
                .where(responses.c.id == owned.response_id, responses.c.status == owned.status, responses.c.owner == owned.owner)
                .values(status=response["status"], data=orjson.dumps(response).decode(), owner=None, job=None)
            )
            if updated.rowcount:
                await insert_events(connection, owned.response_id, [await _terminal_event(connection, owned.response_id, response)])
            return bool(updated.rowcount)

    async def forget_lapsed(self) -> None:
        """Remove the processes whose lease ran out."""
        async with self.database.write() as connection:
            await connection.execute(delete(workers).where(workers.c.lease_expires_at < time.time()))

    # -- event logs ------------------------------------------------------------------

    async def append_events(self, response_id: str, events: list[dict]) -> None:
        async with self.database.write() as connection:
            await insert_events(connection, response_id, events)

    async def events_after(self, response_id: str, after: int, limit: int = 500) -> list[dict]:
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(response_events.c.data)
                .where(response_events.c.response_id == response_id, response_events.c.sequence_number > after)
                .order_by(response_events.c.sequence_number)
                .limit(limit)
            )
            return [orjson.loads(row.data) for row in rows]

    async def exists(self, response_id: str) -> bool:
        """Whether the response is stored still (not deleted)."""
        async with self.database.read() as connection:
            return (await connection.execute(select(responses.c.id).where(responses.c.id == response_id))).first() is not None

    async def log_complete(self, project: str, response_id: str) -> bool:
        """Whether the response's event log has ended: it is finished and nobody owns it.

        Whoever ends a response writes its terminal event in the same transaction that
        clears its owner, so this never says True before the last event is readable.
        """
        async with self.database.read() as connection:
            row = (
                await connection.execute(
                    select(responses.c.status, responses.c.owner).where(
                        responses.c.id == response_id, responses.c.project == project
                    )
                )
            ).first()
        if row is None:
            raise not_found("Response", response_id)
        return row.status in FINISHED and row.owner is None


async def _terminal_event(connection, response_id: str, response: dict) -> dict:
    """The event that ends a log when no run is there to end it."""
    last = (
        await connection.execute(
            select(func.max(response_events.c.sequence_number)).where(response_events.c.response_id == response_id)
        )
    ).scalar()
    return terminal_event(response, (-1 if last is None else last) + 1)

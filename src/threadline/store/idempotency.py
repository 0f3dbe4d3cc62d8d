"""Idempotency keys: the first request with a key runs; a repeat gets its recorded answer.

A key is held by the process running its first request (`owner`, the process's id in the
`workers` table). A key still without an answer whose process has let its lease run out is
abandoned: the next request with it runs anew.

Repeats waiting for an answer sleep until it comes. One recorded in this process wakes them
at once; for one running in another process, a single poll per key (`workers.poll_s`) serves
every repeat waiting for it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from threadline.store.database import Database
from threadline.store.tables import idempotency_keys, workers

log = logging.getLogger("threadline")

Name = tuple[str, str]  # (project, key)


@dataclass
class Outcome:
    status_code: int | None  # None while the first request still runs
    body: dict | None
    fingerprint: str
    abandoned: bool = False  # no answer, and the process that ran the first request is gone


@dataclass
class _Waiting:
    """This process's repeats waiting for one key's answer."""

    answered: asyncio.Event
    waiters: int = 0
    poll: asyncio.Task | None = None


def _abandoned(now: float):
    """Keys without an answer whose owner's lease has run out (or whose owner never heartbeat)."""
    live = select(workers.c.id).where(workers.c.lease_expires_at >= now)
    return and_(idempotency_keys.c.status_code.is_(None), idempotency_keys.c.owner.is_not(None), idempotency_keys.c.owner.not_in(live))


def _named(project: str, key: str):
    return and_(idempotency_keys.c.project == project, idempotency_keys.c.key == key)


class IdempotencyStore:
    def __init__(self, database: Database, ttl_s: float) -> None:
        self.database = database
        self.ttl_s = ttl_s
        self._running_here: set[Name] = set()  # keys whose first request runs in this process
        self._waiting: dict[Name, _Waiting] = {}

    async def claim(self, project: str, key: str, fingerprint: str, owner: str) -> Outcome | None:
        """None if this request is the first with the key (it must then record its outcome, or
        release the key), else what the first one recorded so far. `owner` is this process's id.

        Keys expire here, lazily: each claim first removes every key older than the ttl
        (an index range, empty but for keys that just expired), and this key if abandoned."""
        now = time.time()
        try:
            async with self.database.write() as connection:
                await connection.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < now - self.ttl_s))
                await connection.execute(delete(idempotency_keys).where(_named(project, key), _abandoned(now)))
                await connection.execute(
                    insert(idempotency_keys).values(project=project, key=key, fingerprint=fingerprint, created_at=now, owner=owner)
                )
        except IntegrityError:
            return await self.outcome(project, key)
        self._running_here.add((project, key))
        return None

    async def outcome(self, project: str, key: str) -> Outcome | None:
        """What the key holds now; None if nobody holds it."""
        key_row = _named(project, key)
        async with self.database.read() as connection:
            row = (
                await connection.execute(
                    select(
                        idempotency_keys.c.status_code,
                        idempotency_keys.c.body,
                        idempotency_keys.c.fingerprint,
                        _abandoned(time.time()).label("abandoned"),
                    ).where(key_row)
                )
            ).first()
        if row is None:
            return None
        return Outcome(row.status_code, orjson.loads(row.body) if row.body else None, row.fingerprint, bool(row.abandoned))

    async def record(self, project: str, key: str, status_code: int, body: dict) -> None:
        try:
            async with self.database.write() as connection:
                await connection.execute(
                    update(idempotency_keys).where(_named(project, key)).values(status_code=status_code, body=orjson.dumps(body).decode())
                )
        finally:
            self._answered_here((project, key))

    async def release(self, project: str, key: str) -> None:
        """Forget a key whose first request failed in a way worth retrying, so a retry runs again."""
        try:
            async with self.database.write() as connection:
                await connection.execute(delete(idempotency_keys).where(_named(project, key)))
        finally:
            self._answered_here((project, key))

    async def wait(self, project: str, key: str, timeout_s: float, poll_s: float) -> Outcome | None:
        """The key's outcome once its first request has one (or is abandoned), or as it stands
        after `timeout_s`; None if the key was released meanwhile."""
        with self._waiting_for((project, key), poll_s) as answered:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await answered.wait()
        return await self.outcome(project, key)

    # -- waking the waiting ---------------------------------------------------------------

    @contextlib.contextmanager
    def _waiting_for(self, name: Name, poll_s: float) -> Iterator[asyncio.Event]:
        waiting = self._waiting.get(name) or self._waiting.setdefault(name, _Waiting(asyncio.Event()))
        waiting.waiters += 1
        if name not in self._running_here and waiting.poll is None:
            waiting.poll = asyncio.create_task(self._poll(name, waiting.answered, poll_s))
        try:
            yield waiting.answered
        finally:
            waiting.waiters -= 1
            if not waiting.waiters:
                if waiting.poll is not None:
                    waiting.poll.cancel()
                del self._waiting[name]

    def _answered_here(self, name: Name) -> None:
        self._running_here.discard(name)
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.answered.set()

    async def _poll(self, name: Name, answered: asyncio.Event, poll_s: float) -> None:
        """Set `answered` once the key, its first request running elsewhere, has an outcome."""
        while True:
            await asyncio.sleep(poll_s)
            try:
                # Shielded: a poll cancelled mid-read must not leave a database connection half closed.
                outcome = await asyncio.shield(self.outcome(*name))
            except Exception:  # a transient failure: the repeats wait on, and the next poll reads again
                log.exception("the outcome of an Idempotency-Key could not be read")
                continue
            if outcome is None or outcome.status_code is not None or outcome.abandoned:
                answered.set()
                return

"""Idempotency keys: the first request with a key runs; a repeat gets its recorded answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from threadline.store.database import Database
from threadline.store.tables import idempotency_keys


@dataclass
class Outcome:
    status_code: int | None  # None while the first request still runs
    body: dict | None
    fingerprint: str


class IdempotencyStore:
    def __init__(self, database: Database, ttl_s: float) -> None:
        self.database = database
        self.ttl_s = ttl_s

    async def claim(self, project: str, key: str, fingerprint: str) -> Outcome | None:
        """None if this request is the first with the key (it must then record its outcome),
        else what the first one recorded so far.

        Keys expire here, lazily: each claim first removes every key older than the ttl
        (an index range, empty but for keys that just expired)."""
        now = time.time()
        try:
            async with self.database.write() as connection:
                await connection.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < now - self.ttl_s))
                await connection.execute(insert(idempotency_keys).values(project=project, key=key, fingerprint=fingerprint, created_at=now))
            return None
        except IntegrityError:
            return await self.outcome(project, key)

    async def outcome(self, project: str, key: str) -> Outcome | None:
        async with self.database.read() as connection:
            row = (
                await connection.execute(
                    select(idempotency_keys.c.status_code, idempotency_keys.c.body, idempotency_keys.c.fingerprint).where(
                        idempotency_keys.c.project == project, idempotency_keys.c.key == key
                    )
                )
            ).first()
        if row is None:
            return None
        return Outcome(row.status_code, orjson.loads(row.body) if row.body else None, row.fingerprint)

    async def record(self, project: str, key: str, status_code: int, body: dict) -> None:
        async with self.database.write() as connection:
            await connection.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.project == project, idempotency_keys.c.key == key)
                .values(status_code=status_code, body=orjson.dumps(body).decode())
            )

    async def release(self, project: str, key: str) -> None:
        """Forget a key whose first request failed on our side, so a retry runs again."""
        async with self.database.write() as connection:
            await connection.execute(
                delete(idempotency_keys).where(idempotency_keys.c.project == project, idempotency_keys.c.key == key)
            )

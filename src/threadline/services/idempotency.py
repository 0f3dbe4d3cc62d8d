"""Idempotency-Key on create requests: a retried request gets the first one's answer.

The first request with a key records its outcome (the Response, or the 4xx it was refused
with); a repeat waits for that outcome and is answered with it. A failure worth retrying (a
5xx, or the model's 429) forgets the key, so a retry runs again; so does the crash of the
process running the first request, once its lease has run out. Keys are kept for
`server.idempotency_ttl_s` (24 hours by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from threadline.engine.runner import ResponseRun
from threadline.errors import APIError
from threadline.store.idempotency import IdempotencyStore, Outcome

log = logging.getLogger("threadline")


@dataclass(frozen=True)
class KeyedRequest:
    """A request sent with an Idempotency-Key: the key, and what tells its body apart."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, body: bytes) -> KeyedRequest:
        return cls(key, hashlib.sha256(body).hexdigest())


class Idempotency:
    def __init__(self, store: IdempotencyStore, *, owner: str, wait_s: float, poll_s: float) -> None:
        self.store = store
        self.owner = owner  # this process: it holds the keys of the requests it runs
        self.wait_s = wait_s
        self.poll_s = poll_s

    async def claim(self, project: str, request: KeyedRequest) -> Outcome | None:
        """None if this request is the first with its key: it must then record its outcome
        (`record`, `record_failure`, `record_run`) or `release` the key. Else what the first
        one recorded so far, to answer with (`earlier_answer`)."""
        return await self.store.claim(project, request.key, request.fingerprint, owner=self.owner)

    async def earlier_answer(self, project: str, request: KeyedRequest, earlier: Outcome) -> dict:
        """The Response the first request with the key was answered with, once it has one;
        the refusal it met is raised again, as is a 409 while it has no answer to give."""
        if earlier.fingerprint != request.fingerprint:
            raise APIError(422, "This Idempotency-Key was already used with a different request body.", code="idempotency_key_reused")
        if earlier.status_code is None and not earlier.abandoned:
            earlier = await self.store.wait(project, request.key, self.wait_s, self.poll_s)
        if earlier is None or earlier.abandoned:
            raise APIError(
                409, "The request that held this Idempotency-Key ended without an answer to repeat; send it again to run it.", code="idempotency_key_in_use"
            )
        if earlier.status_code is None:
            raise APIError(409, "A request with this Idempotency-Key is still being processed; retry later.", code="idempotency_key_in_use")
        if earlier.status_code != 200:
            raise APIError(earlier.status_code, **earlier.body["error"])
        return earlier.body

    async def record(self, project: str, request: KeyedRequest, response: dict) -> None:
        """Keep the Response as the key's answer."""
        await self.store.record(project, request.key, 200, response)

    async def record_failure(self, project: str, request: KeyedRequest, error: APIError) -> None:
        """Keep a refusal as the key's answer; forget the key after a failure a retry may not meet."""
        if error.status >= 500 or error.status == 429:
            await self.store.release(project, request.key)
        else:
            await self.store.record(project, request.key, error.status, error.envelope())

    async def record_run(self, project: str, request: KeyedRequest, run: ResponseRun) -> None:
        """Record a foreground response's outcome when it ends, whether or not its client stayed:
        its Response, or the refusal it met. Anything else (the run's own failure, a write that
        failed, a shutdown) is logged and releases the key, so a retry runs again."""
        try:
            await asyncio.wait([run.task])
            try:
                answer = await run.result()
            except APIError as error:
                await self.record_failure(project, request, error)
            else:
                await self.record(project, request, answer)
        except BaseException:
            log.exception("response %s: its Idempotency-Key is released, its outcome could not be recorded", run.response_id)
            await self.release(project, request)
            raise

    async def release(self, project: str, request: KeyedRequest) -> None:
        """Forget the key after the server's own failure: a retry runs again."""
        await self.store.release(project, request.key)

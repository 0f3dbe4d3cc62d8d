"""Idempotency-Key on create requests: a retried request gets the first one's answer.

The first request with a key records its outcome (the Response, or the 4xx it was refused
with); a repeat waits for that outcome and answers with it, streamed if it asks for a
stream. A failure worth retrying (a 5xx, or the model's 429) forgets the key, so a retry
runs again; so does the crash of the process running the first request, once its lease has
run out. Keys are kept for `server.idempotency_ttl_s` (24 hours by default).
"""

from __future__ import annotations

import asyncio
import hashlib

from starlette.datastructures import State
from starlette.responses import Response

from threadline.api.json import JSON
from threadline.api.sse import event_stream
from threadline.engine.replay import replay_events
from threadline.engine.runner import ResponseRun
from threadline.errors import APIError
from threadline.jobs.follow import follow
from threadline.store.idempotency import Outcome


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def repeat(state: State, project: str, key: str, request_fingerprint: str, earlier: Outcome, stream: bool) -> Response:
    """The answer to a request whose key was seen before."""
    if earlier.fingerprint != request_fingerprint:
        raise APIError(422, "This Idempotency-Key was already used with a different request body.", code="idempotency_key_reused")
    if earlier.status_code is None and not earlier.abandoned:
        earlier = await state.idempotency.wait(project, key, state.settings.server.idempotency_wait_s, state.settings.workers.poll_s)
    if earlier is None or earlier.abandoned:
        raise APIError(
            409, "The request that held this Idempotency-Key ended without an answer to repeat; send it again to run it.", code="idempotency_key_in_use"
        )
    if earlier.status_code is None:
        raise APIError(409, "A request with this Idempotency-Key is still being processed; retry later.", code="idempotency_key_in_use")
    answer = earlier.body
    if earlier.status_code != 200 or not stream or answer.get("object") != "response":
        return JSON(answer, status_code=earlier.status_code)
    if answer.get("background"):
        return event_stream(follow(state.runner, project, answer["id"], -1, state.settings.workers.poll_s))

    async def replayed():
        for event in replay_events(answer):
            yield event

    return event_stream(replayed())


async def record_failure(state: State, project: str, key: str, error: APIError) -> None:
    """Keep a refusal as the key's answer; forget the key after a failure a retry may not meet."""
    if error.status >= 500 or error.status == 429:
        await state.idempotency.release(project, key)
    else:
        await state.idempotency.record(project, key, error.status, error.envelope())


async def record_run(state: State, project: str, key: str, run: ResponseRun) -> None:
    """Record a foreground response's outcome when it ends, whether or not its client stayed."""
    await asyncio.wait([run.task])
    try:
        answer = await run.result()
    except APIError as error:
        await record_failure(state, project, key, error)
    else:
        await state.idempotency.record(project, key, 200, answer)

"""The Responses API's work: create, retrieve, stream again, cancel, delete, input items, token counts.

Every method acts for the caller's project and returns what the API answers with: a
Response, its events (an async generator of events, or of lists of events ready together),
or a Page, each shown as the request's `include` asks. Turning them into HTTP is the api's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection
from typing import Literal

from threadline.backends.base import BackendError
from threadline.backends.estimate import estimate_request_tokens
from threadline.engine.compaction import MARKER, compact
from threadline.engine.prepare import Preparer
from threadline.engine.replay import replay_events
from threadline.engine.runner import ResponseRun, Runner
from threadline.errors import APIError, invalid
from threadline.jobs.cancel import cancel_background
from threadline.jobs.follow import follow
from threadline.jobs.worker import Worker
from threadline.ops.metrics import tokens_used
from threadline.ids import new_id
from threadline.items import new_item_id
from threadline.services.idempotency import Idempotency, KeyedRequest
from threadline.spec.compact import CompactBody
from threadline.spec.request import CreateResponseBody
from threadline.spec.response import present, present_events, present_item, usage_object
from threadline.store.idempotency import Outcome
from threadline.store.pagination import Page
from threadline.store.responses import ResponseStore
from threadline.tools.model_view import model_view

Events = AsyncGenerator[dict | list[dict], None]
# Returns once the client waiting for a response has gone.
ClientGone = Callable[[], Awaitable[None]]


class ResponsesService:
    def __init__(
        self, *, preparer: Preparer, runner: Runner, worker: Worker, responses: ResponseStore, idempotency: Idempotency, poll_s: float
    ) -> None:
        self.preparer = preparer
        self.runner = runner
        self.worker = worker
        self.responses = responses
        self.idempotency = idempotency
        self.poll_s = poll_s  # how often a log written by another process is read again

    async def create(
        self, project: str, body: CreateResponseBody, *, keyed: KeyedRequest | None = None, client_gone: ClientGone | None = None
    ) -> dict | Events:
        """The Response, or its events when `body.stream` is set.

        A request with an Idempotency-Key (`keyed`) runs once: a repeat is answered with the
        first one's outcome. A response not streamed whose client leaves first (`client_gone`
        returns) stops if its model says so (on_disconnect)."""
        if keyed is not None:
            earlier = await self.idempotency.claim(project, keyed)
            if earlier is not None:
                return await self._repeat(project, body, keyed, earlier)
        started = await self._start(project, body, keyed)
        include = body.include or ()
        if not isinstance(started, ResponseRun):  # queued
            if body.stream:
                return present_events(self._stored_events(project, started, after=None, may_rebuild=False), include)
            return present(started, include)
        if not body.stream:
            return present(await _result(started, client_gone), include)
        batches = started.stream()
        # The first events go out once the response is recorded, without waiting for the model:
        # waiting for them keeps a response that cannot even be recorded a plain error.
        first = await anext(batches)
        return present_events(_prepend(first, batches), include)

    async def retrieve(self, project: str, response_id: str, include: Collection[str]) -> dict:
        return present(await self.responses.get(project, response_id), include)

    async def replay(self, project: str, response_id: str, *, starting_after: int | None, include: Collection[str]) -> Events:
        """A response's events streamed again by id, after event `starting_after` if given."""
        stored = await self.responses.get(project, response_id)
        return present_events(self._stored_events(project, stored, after=starting_after, may_rebuild=False), include)

    async def cancel(self, project: str, response_id: str) -> dict:
        """Cancel a background response (see jobs/cancel.py); the Response as it then stands."""
        return present(await cancel_background(self.runner, project, response_id), ())

    async def delete(self, project: str, response_id: str) -> None:
        await self.responses.delete(project, response_id)

    async def input_items(
        self, project: str, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"], include: Collection[str]
    ) -> Page:
        page = await self.responses.list_input_items(project, response_id, after=after, limit=limit, order=order)
        page.data = [present_item(item, include) for item in page.data]
        return page

    async def count_input_tokens(self, project: str, body: CreateResponseBody) -> int:
        """The input tokens the request would send the model: the model's count, else an estimate."""
        prepared = await self.preparer.prepare(body, project)
        # Counted as the model reads it: hosted tools' items as the calls and outputs they were,
        # before any compaction this request would bring about.
        items = [item for item in prepared.model_request.input if item.get("type") != MARKER]
        request = dataclasses.replace(prepared.model_request, input=model_view(items, prepared.tools))
        tokens = await prepared.backend.count_tokens(request)
        return estimate_request_tokens(request) if tokens is None else tokens

    async def compact(self, project: str, body: CompactBody) -> dict:
        """The context compacted (engine/compaction.py): its kept newest items, then the
        compaction item that stands for it all. Nothing is stored."""
        prepared = await self.preparer.prepare(body.as_create(), project)
        view = lambda items: model_view(items, prepared.tools)  # noqa: E731
        try:
            compacted = await compact(prepared.backend, prepared.model_request, self.preparer.tools.secrets, view=view)
        except BackendError as error:
            status = error.status or 500
            raise APIError(status, error.message, type="invalid_request_error" if status < 500 else "server_error", code=error.code) from error
        output = compacted.kept + [{"id": new_item_id("compaction"), **compacted.item}]
        usage = usage_object(compacted.usage)
        tokens_used(prepared.model_request.model, usage)
        return {"id": new_id("resp"), "object": "response.compaction", "created_at": int(time.time()), "output": output, "usage": usage}

    # -- create ----------------------------------------------------------------------

    async def _start(self, project: str, body: CreateResponseBody, keyed: KeyedRequest | None) -> ResponseRun | dict:
        """The response started: its run, or the Response of a background one, queued.

        A keyed request's outcome is recorded here until its run exists; from then on
        `record_run` alone records it."""
        try:
            prepared = await self.preparer.prepare(body, project)
            if body.background:
                await self.worker.enqueue(prepared)
                if keyed:
                    await self.idempotency.record(project, keyed, prepared.response)
                return prepared.response
            run = await self.runner.start(prepared, streamed=bool(body.stream))
        except APIError as error:
            if keyed:
                await self.idempotency.record_failure(project, keyed, error)
            raise
        except BaseException:  # the server's own failure: a retry runs again
            if keyed:
                await self.idempotency.release(project, keyed)
            raise
        if keyed:
            self.runner.run_detached(self.idempotency.record_run(project, keyed, run))
        return run

    async def _repeat(self, project: str, body: CreateResponseBody, keyed: KeyedRequest, earlier: Outcome) -> dict | Events:
        """The answer to a request whose key was seen before: the first one's Response, shown
        as this request's `include` asks, and streamed again if it asks for a stream."""
        response = await self.idempotency.earlier_answer(project, keyed, earlier)
        include = body.include or ()
        if not body.stream:
            return present(response, include)
        return present_events(self._stored_events(project, response, after=None, may_rebuild=True), include)

    # -- streaming again ---------------------------------------------------------------

    def _stored_events(self, project: str, response: dict, *, after: int | None, may_rebuild: bool) -> Events:
        """The events of a response already queued, running or ended, from after event `after`
        (from the start when None): the event log or rebuilt events, decided here alone.

        A background response keeps its event log, followed live from any process. No other
        response keeps its events, and rebuilt ones would not be numbered as the stream its
        client read, so `starting_after` could skip or repeat events: they are rebuilt only for
        a new stream (`may_rebuild`: an idempotent repeat's, numbered from 0, never resumed);
        streaming such a response by id is a 400."""
        if response["background"]:
            return follow(self.runner, project, response, -1 if after is None else after, self.poll_s)
        if not may_rebuild:
            raise invalid(
                "Only responses created with background=true can be streamed: this response's events were not kept. "
                "Retrieve it without stream=true.",
                param="stream",
            )
        return _rebuilt(response)


async def _result(run: ResponseRun, client_gone: ClientGone | None) -> dict:
    """The finished Response of a run not streamed. A client that leaves first is told to
    the run, which stops if its model says so (on_disconnect)."""
    if client_gone is None or not run.stops_without_client:
        return await run.result()
    gone = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait([run.task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not run.task.done():
        run.client_left()
    return await run.result()


async def _prepend(first: list[dict], rest: AsyncIterator[list[dict]]) -> Events:
    # What was passed on is not kept while the next events are awaited: a stream may wait minutes.
    yield first
    del first
    async with contextlib.aclosing(rest):
        async for batch in rest:
            yield batch
            del batch


async def _rebuilt(response: dict) -> Events:
    """A new stream of a finished response, rebuilt from what was stored (engine/replay.py)."""
    for event in replay_events(response):
        yield event

"""The Responses API: create, retrieve (or stream a background one), cancel, delete, input items, token counts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from threadline.api.auth import project
from threadline.api.idempotency import fingerprint, record_failure, record_run, repeat
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import InputTokens, ItemList, ResponseDeleted, answers
from threadline.api.openapi import Response as ResponseObject
from threadline.api.schemas import Order, include_values
from threadline.api.sse import event_stream
from threadline.backends.estimate import estimate_request_tokens
from threadline.engine.runner import ResponseRun
from threadline.errors import APIError, invalid
from threadline.jobs.follow import follow
from threadline.spec.request import INT64_MAX, CreateResponseBody
from threadline.spec.response import present, present_events, present_item

router = APIRouter(prefix="/v1/responses", tags=["Responses"], route_class=JSONRoute)

# How long a cancel waits for a response running in this process to stop.
CANCEL_WAIT_S = 2.0

Project = Annotated[str, Depends(project)]
Include = Annotated[list[str], Depends(include_values)]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A repeated request with the same key gets the first one's answer instead of running again.",
    ),
]


@router.post(
    "",
    summary="Create a model response",
    responses=answers(ResponseObject, 400, 404, 409, 413, 422, 429, stream=True, description="The Response, or its events when `stream` is true."),
)
async def create_response(body: CreateResponseBody, project: Project, request: Request, key: IdempotencyKey = None):
    state = request.app.state
    if not key:  # an empty header names no key
        return await start_response(request, body, project)
    request_fingerprint = fingerprint(await request.body())
    earlier = await state.idempotency.claim(project, key, request_fingerprint, owner=state.runner.owner)
    if earlier is not None:
        return await repeat(state, project, key, request_fingerprint, earlier, bool(body.stream))
    try:
        return await start_response(request, body, project, idempotency_key=key)
    except APIError as error:
        await record_failure(state, project, key, error)
        raise
    except Exception:  # the server's own failure: a retry runs again
        await state.idempotency.release(project, key)
        raise


async def start_response(request: Request, body: CreateResponseBody, project: str, idempotency_key: str | None = None):
    state = request.app.state
    prepared = await state.preparer.prepare(body, project)
    include = body.include or ()
    if body.background:
        await state.worker.enqueue(prepared)
        if idempotency_key:
            await state.idempotency.record(project, idempotency_key, 200, prepared.response)
        if body.stream:
            events = follow(state.runner, project, prepared.response["id"], -1, state.settings.workers.poll_s)
            return event_stream(present_events(events, include))
        return JSON(prepared.response)
    run = await state.runner.start(prepared, streamed=bool(body.stream))
    if idempotency_key:
        state.runner.keep(record_run(state, project, idempotency_key, run))
    if not body.stream:
        return JSON(present(await _result(request, run), include))
    batches = run.stream()
    # The first events go out once the response is recorded, without waiting for the model:
    # waiting for them keeps a response that cannot even be recorded a plain error.
    first = await anext(batches)
    return event_stream(present_events(_prepend(first, batches), include))


async def _prepend(first: list[dict], rest: AsyncIterator[list[dict]]) -> AsyncIterator[list[dict]]:
    yield first
    async with contextlib.aclosing(rest):
        async for batch in rest:
            yield batch


async def _result(request: Request, run: ResponseRun) -> dict:
    """The finished Response of a run not streamed. A client that disconnects first is told
    to the run, which stops if its model says so (on_disconnect)."""
    if not run.stops_without_client:
        return await run.result()
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait([run.task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not run.task.done():
        run.client_left()
    return await run.result()


async def _disconnected(request: Request) -> None:
    """Return once the client has gone: with the body read, that is all the server can hear."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post("/input_tokens", summary="Count a request's input tokens", responses=answers(InputTokens, 400, 404, 413, 429))
async def count_input_tokens(body: CreateResponseBody, project: Project, request: Request) -> JSON:
    prepared = await request.app.state.preparer.prepare(body, project)
    tokens = await prepared.backend.count_tokens(prepared.model_request)
    if tokens is None:
        tokens = estimate_request_tokens(prepared.model_request)
    return JSON({"object": "response.input_tokens", "input_tokens": tokens})


@router.get(
    "/{response_id}",
    summary="Retrieve a response, or stream a background response's events",
    responses=answers(ResponseObject, 400, 404, stream=True, description="The Response, or its events when `stream` is true."),
)
async def retrieve_response(
    response_id: str,
    project: Project,
    request: Request,
    include: Include,
    stream: bool = False,
    # Sequence numbers are stored as 64-bit integers: a larger one could not even be looked up.
    starting_after: Annotated[int, Query(ge=0, le=INT64_MAX)] | None = None,
):
    state = request.app.state
    stored = await state.responses.get(project, response_id)
    if not stream:
        if starting_after is not None:
            raise invalid("'starting_after' can only be used with stream=true.", param="starting_after")
        return JSON(present(stored, include))
    if not stored["background"]:
        # Only a background response keeps its events; rebuilt ones would not be numbered as
        # the stream its client read, so `starting_after` could skip or repeat events.
        raise invalid(
            "Only responses created with background=true can be streamed: this response's events were not kept. "
            "Retrieve it without stream=true.",
            param="stream",
        )
    after = -1 if starting_after is None else starting_after
    events = follow(state.runner, project, response_id, after, state.settings.workers.poll_s)
    return event_stream(present_events(events, include))


@router.post("/{response_id}/cancel", summary="Cancel a background response", responses=answers(ResponseObject, 400, 404))
async def cancel_response(response_id: str, project: Project, request: Request) -> JSON:
    state = request.app.state
    cancelled = await state.jobs.cancel(project, response_id)
    run = state.runner.runs.get(response_id)
    if run is not None and run.stop_reason is None:
        # Running here: stop it now and answer with what it had produced. Elsewhere, its
        # process notices at its next heartbeat.
        run.stop("cancelled")
        await asyncio.wait([run.task], timeout=CANCEL_WAIT_S)
        cancelled = await state.responses.get(project, response_id)
    return JSON(present(cancelled, ()))


@router.delete("/{response_id}", summary="Delete a response", responses=answers(ResponseDeleted, 404))
async def delete_response(response_id: str, project: Project, request: Request) -> JSON:
    await request.app.state.responses.delete(project, response_id)
    return JSON({"id": response_id, "object": "response", "deleted": True})


@router.get("/{response_id}/input_items", summary="List a response's input items", responses=answers(ItemList, 400, 404))
async def list_input_items(
    response_id: str,
    project: Project,
    request: Request,
    include: Include,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
) -> JSON:
    page = await request.app.state.responses.list_input_items(project, response_id, after=after, limit=limit, order=order)
    page.data = [present_item(item, include) for item in page.data]
    return JSON(page.list_object())

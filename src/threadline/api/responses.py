"""The Responses API over HTTP: create, retrieve (or stream a background one), cancel, delete, input items, token counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from threadline.api.auth import project
from threadline.api.direct import DirectRoute
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import CompactedResponse, InputTokens, ItemList, ResponseDeleted, answers
from threadline.api.openapi import Response as ResponseObject
from threadline.api.schemas import Order, include_values
from threadline.api.sse import event_stream
from threadline.errors import APIError, invalid
from threadline.services.idempotency import KeyedRequest
from threadline.services.responses import ResponsesService
from threadline.spec.compact import CompactBody
from threadline.spec.request import INT64_MAX, CreateResponseBody

router = APIRouter(prefix="/v1/responses", tags=["Responses"], route_class=JSONRoute)


async def service(request: Request) -> ResponsesService:
    return request.app.state.responses


Responses = Annotated[ResponsesService, Depends(service)]
Project = Annotated[str, Depends(project)]
Include = Annotated[list[str], Depends(include_values)]


IDEMPOTENCY_KEY_MAX = 255
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        description="A repeated request with the same key gets the first one's answer instead of running again.",
    ),
]


async def create_response(body: CreateResponseBody, project: Project, responses: Responses, request: Request, key: IdempotencyKey = None):
    # An empty header names no key.
    keyed = KeyedRequest.of(key, await request.body()) if key else None
    answer = await responses.create(project, body, keyed=keyed, client_gone=lambda: _disconnected(request))
    return JSON(answer) if isinstance(answer, dict) else event_stream(answer)


class CreateRoute(DirectRoute):
    """`POST /v1/responses`, every agent's turn: its arguments built without FastAPI's dependency solving."""

    async def arguments(self, request: Request, body: CreateResponseBody) -> dict | None:
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            return None
        try:
            caller = await project(request)
        except APIError:
            return None
        return {"body": body, "project": caller, "responses": await service(request), "request": request, "key": key}


router.add_api_route(
    "",
    create_response,
    methods=["POST"],
    route_class_override=CreateRoute,
    summary="Create a model response",
    responses=answers(ResponseObject, 400, 404, 409, 413, 422, 429, stream=True, description="The Response, or its events when `stream` is true."),
)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone: with the body read, that is all the server can hear."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post("/input_tokens", summary="Count a request's input tokens", responses=answers(InputTokens, 400, 404, 413, 429))
async def count_input_tokens(body: CreateResponseBody, project: Project, responses: Responses) -> JSON:
    return JSON({"object": "response.input_tokens", "input_tokens": await responses.count_input_tokens(project, body)})


@router.post("/compact", summary="Compact a context into one compaction item", responses=answers(CompactedResponse, 400, 404, 413, 429))
async def compact_context(body: CompactBody, project: Project, responses: Responses) -> JSON:
    return JSON(await responses.compact(project, body))


@router.get(
    "/{response_id}",
    summary="Retrieve a response, or stream a background response's events",
    responses=answers(ResponseObject, 400, 404, stream=True, description="The Response, or its events when `stream` is true."),
)
async def retrieve_response(
    response_id: str,
    project: Project,
    responses: Responses,
    include: Include,
    stream: bool = False,
    # Sequence numbers are stored as 64-bit integers: a larger one could not even be looked up.
    starting_after: Annotated[int, Query(ge=0, le=INT64_MAX)] | None = None,
):
    if stream:
        return event_stream(await responses.replay(project, response_id, starting_after=starting_after, include=include))
    response = await responses.retrieve(project, response_id, include)  # an unknown id is a 404 first
    if starting_after is not None:
        raise invalid("'starting_after' can only be used with stream=true.", param="starting_after")
    return JSON(response)


@router.post("/{response_id}/cancel", summary="Cancel a background response", responses=answers(ResponseObject, 400, 404))
async def cancel_response(response_id: str, project: Project, responses: Responses) -> JSON:
    return JSON(await responses.cancel(project, response_id))


@router.delete("/{response_id}", summary="Delete a response", responses=answers(ResponseDeleted, 404))
async def delete_response(response_id: str, project: Project, responses: Responses) -> JSON:
    await responses.delete(project, response_id)
    return JSON({"id": response_id, "object": "response", "deleted": True})


@router.get("/{response_id}/input_items", summary="List a response's input items", responses=answers(ItemList, 400, 404))
async def list_input_items(
    response_id: str,
    project: Project,
    responses: Responses,
    include: Include,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
) -> JSON:
    page = await responses.input_items(project, response_id, after=after, limit=limit, order=order, include=include)
    return JSON(page.list_object())

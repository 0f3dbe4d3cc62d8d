"""The responses of one WebSocket connection to /v1/responses (OpenAI's WebSocket mode).

Each `response.create` is a create request whose events stream back on the connection,
continuing, where it names one, from the response the connection remembers
(engine/connection_cache.py). Turning them into WebSocket messages is api/websocket.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from threadline.engine.connection_cache import ConnectionCache
from threadline.engine.prepare import PreparedResponse
from threadline.errors import APIError, invalid
from threadline.services.responses import Events, ResponsesService
from threadline.spec.events import TERMINAL_TYPES
from threadline.spec.request import CreateResponseBody
from threadline.spec.response import present_events
from threadline.spec.stream import ResponseEvents

# The statuses of a response that a later turn can continue from.
CONTINUABLE = ("completed", "incomplete")


class ResponseSocket:
    def __init__(self, service: ResponsesService, project: str) -> None:
        self.service = service
        self.project = project
        self.cache = ConnectionCache(service.responses, project)

    async def create(self, body: CreateResponseBody) -> Events:
        """The events of the response `body` asks for; a refusal is raised before any event
        (an APIError). `stream` is implied; `background` is refused, as OpenAI refuses it."""
        previous = body.previous_response_id
        try:
            if body.background:
                raise invalid("'background' is not supported in WebSocket mode: send the request over HTTP instead.", param="background")
            generate = (body.model_extra or {}).get("generate", True)
            if not isinstance(generate, bool):
                raise invalid(f"Invalid type for 'generate': expected a boolean, but got {type(generate).__name__} instead.", param="generate")
            body = body.model_copy(update={"stream": True})
            prepared = await self.service.preparer.prepare(body, self.project, self.cache)
            if not generate:
                return present_events(_once(await self._warm_up(prepared)), body.include or ())
            run = await self.service.runner.start(prepared, streamed=True)
            batches = run.stream()
            first = await anext(batches)
        except APIError:
            if previous:
                self.cache.evict(previous)
            raise
        return present_events(self._remembered(prepared, first, batches), body.include or ())

    async def _remembered(self, prepared: PreparedResponse, first: list[dict], rest: AsyncIterator[list[dict]]) -> Events:
        """The response's events, remembered by the connection as it ends well, before its
        terminal event goes out (the client may continue from it as soon as it reads that
        event); a response that fails evicts the one it continued."""
        async with contextlib.aclosing(rest):
            batch: list[dict] | None = first
            while batch is not None:
                ended = next((event["response"] for event in batch if event["type"] in TERMINAL_TYPES), None)
                if ended is not None:
                    self._ended(ended, prepared.input_items)
                yield batch
                batch = await anext(rest, None)

    def _ended(self, response: dict, input_items: list[dict]) -> None:
        if response["status"] in CONTINUABLE:
            self.cache.remember(response, input_items)
        elif response.get("previous_response_id"):
            self.cache.evict(response["previous_response_id"])

    async def _warm_up(self, prepared: PreparedResponse) -> list[dict]:
        """The events of a response with `generate: false`: the model is not called, and the
        response, with no output, is there to continue from (stored too unless `store` is false)."""
        events = ResponseEvents(prepared.response)
        ending = events.start() + events.end("completed")
        if prepared.store:
            runner = self.service.runner
            await runner.responses.complete(self.project, prepared.response, prepared.input_items, owner=runner.owner, begun=False)
        self._ended(prepared.response, prepared.input_items)
        return ending


async def _once(batch: list[dict]) -> Events:
    yield batch

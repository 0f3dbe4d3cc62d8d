"""Running a prepared response: the backend's events in, OpenAI's events out, stored at the end.

Each response runs in a task of its own and hands its events to the caller through a
queue, so a client that disconnects from a stream does not stop the work: the response
still completes and is stored as if the client had stayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from threadline.backends.base import BackendError, ContextLengthExceeded, Finish
from threadline.engine.events import ResponseEvents
from threadline.engine.prepare import PreparedResponse
from threadline.errors import APIError
from threadline.store.responses import ResponseStore

log = logging.getLogger("threadline")

# How a failed response is answered when the client did not stream.
FAILURE_STATUS = {"rate_limit_exceeded": 429}


class ResponseRun:
    def __init__(self, prepared: PreparedResponse, responses: ResponseStore) -> None:
        self.prepared = prepared
        self.responses = responses
        self.events = ResponseEvents(prepared.response)
        self._queue: asyncio.Queue[dict | APIError | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    @property
    def response(self) -> dict:
        return self.prepared.response

    async def stream(self) -> AsyncIterator[dict]:
        """The events as they are produced; raises APIError if the request fails before any."""
        while (event := await self._queue.get()) is not None:
            if isinstance(event, APIError):
                raise event
            yield event

    async def result(self) -> dict:
        """The finished Response; a failure of the model is raised in OpenAI's envelope."""
        await self.task
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, APIError):
                raise event
        response = self.response
        if response["status"] == "failed":
            error = response["error"]
            raise APIError(FAILURE_STATUS.get(error["code"], 500), error["message"], type="server_error" if error["code"] == "server_error" else "invalid_request_error", code=error["code"])
        return response

    async def _run(self) -> None:
        generator = self.prepared.backend.generate(self.prepared.model_request)
        try:
            await self._generate(generator)
        except APIError as error:
            self._queue.put_nowait(error)
        except Exception:
            # Storing failed: nothing more can be recorded, so say so loudly.
            log.exception("response %s could not be stored", self.response["id"])
            self._queue.put_nowait(APIError(500, "The server had an error while saving this response.", type="server_error"))
        finally:
            await generator.aclose()
            self._queue.put_nowait(None)

    async def _generate(self, generator) -> None:
        try:
            model_event = await anext(generator)
        except ContextLengthExceeded as error:
            raise APIError(400, error.message, param="input", code="context_length_exceeded") from error
        except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
            await self._fail(self.events.start(), error)
            return
        self._publish(self.events.start())
        try:
            while not isinstance(model_event, Finish):
                self._publish(self.events.feed(model_event))
                model_event = await anext(generator)
        except Exception as error:  # noqa: BLE001
            await self._fail([], error)
            return
        await self._finish(self.events.finish(model_event))

    async def _fail(self, events: list[dict], error: BaseException) -> None:
        if isinstance(error, StopAsyncIteration):
            code, message = "server_error", "The model stopped without finishing its answer."
        elif isinstance(error, BackendError):
            code, message = error.code, error.message
        else:
            log.error("response %s failed", self.response["id"], exc_info=error)
            code, message = "server_error", "The model failed while generating this response."
        await self._finish(events + self.events.fail(code, message))

    async def _finish(self, events: list[dict]) -> None:
        """Store the response, then let the terminal event out: what a client sees is saved."""
        if self.prepared.store:
            await self.responses.save(self.prepared.project, self.response, self.prepared.input_items)
        self._publish(events)

    def _publish(self, events: list[dict]) -> None:
        for event in events:
            self._queue.put_nowait(event)


class Runner:
    """Starts responses and keeps their tasks referenced until they are done."""

    def __init__(self, responses: ResponseStore) -> None:
        self.responses = responses
        self._runs: set[asyncio.Task] = set()

    def start(self, prepared: PreparedResponse) -> ResponseRun:
        run = ResponseRun(prepared, self.responses)
        self._runs.add(run.task)
        run.task.add_done_callback(self._runs.discard)
        return run

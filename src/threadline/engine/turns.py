"""The model's turns within one response.

A turn is one call to the backend: its events, held to the output bound, are fed into the
response's `ResponseEvents`, and the OpenAI events they make are handed on as they come. The
first turn starts the model at once, alongside the response's first write, so the first
events go out without waiting for the model.

The turns are a loop, not a single call, because a response whose model calls server-side
tools takes several: their items go through the same ResponseEvents, `end_turn` closes each
turn, and the model is asked again with their output. No such tool exists yet, so the first
turn is also the last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from threadline.backends.base import Backend, BackendError, ContextLengthExceeded, Finish, ModelEvent, ModelRequest
from threadline.engine.output_bound import bounded
from threadline.errors import APIError
from threadline.spec.stream import ResponseEvents

log = logging.getLogger("threadline")


class TurnLoop:
    """The model's turns of one response, fed into its ResponseEvents."""

    def __init__(
        self,
        backend: Backend,
        request: ModelRequest,
        events: ResponseEvents,
        publish: Callable[[list[dict]], None],
        open_response: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.request = request
        self.events = events
        self._publish = publish  # hands events on as they are made
        self._open = open_response  # lets the response's first events out, once

    async def run(self, recording: asyncio.Future | None, recorded_at_start: bool) -> list[dict]:
        """Run the response's turns; the events that end it, not yet handed on (the response
        is stored before they go out).

        `recording` is the response's first write, if it runs alongside the model's start;
        nothing goes out before it is done. A response `recorded_at_start` (as in progress,
        before it ran) opens as soon as it is recorded; any other opens with the model's
        first event. A model that refuses the request (400) before anyone saw the response
        raises APIError: the client's plain 400.
        """
        generator = self._model_events(self.request)
        try:
            finish = await self._turn(generator, await self._start(generator, recording, recorded_at_start))
        finally:
            await generator.aclose()
        if not isinstance(finish, Finish):
            return self._fail(finish)
        # Here a turn that called server-side tools will run them and go round again; there
        # are none yet, so the first turn is the last.
        return self.events.finish(finish)

    def _model_events(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The model's events for one turn, held to its output bound."""
        events = self.backend.generate(request)
        return events if request.max_output_tokens is None else bounded(events, request)

    async def _turn(self, generator: AsyncIterator[ModelEvent], model_event: ModelEvent | Exception) -> Finish | Exception:
        """A turn from its first event on: the events fed in and handed on; how the model
        finished, or the exception it failed with."""
        try:
            while not isinstance(model_event, Finish):
                if isinstance(model_event, Exception):
                    return model_event
                self._publish(self.events.feed(model_event))
                model_event = await anext(generator)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
            return error
        return model_event

    async def _start(
        self, generator: AsyncIterator[ModelEvent], recording: asyncio.Future | None, recorded_at_start: bool
    ) -> ModelEvent | Exception:
        """The model's first event, or the exception it failed with; the response opens meanwhile."""
        first = asyncio.ensure_future(_first_event(generator))
        try:
            if recording is not None:
                # Nothing about the response goes out before it is stored; shielded, as a stop
                # meanwhile still needs it.
                await asyncio.shield(recording)
            if recorded_at_start:
                self._open()
            model_event = await first
        except BaseException:
            first.cancel()
            await asyncio.wait([first])  # the model's generator is left before it is closed
            raise
        if isinstance(model_event, BackendError) and model_event.status == 400 and not recorded_at_start:
            param = "input" if isinstance(model_event, ContextLengthExceeded) else None
            raise APIError(400, model_event.message, param=param, code=model_event.code) from model_event
        self._open()
        return model_event

    def _fail(self, error: BaseException) -> list[dict]:
        if isinstance(error, StopAsyncIteration):
            code, message = "server_error", "The model stopped without finishing its answer."
        elif isinstance(error, BackendError):
            # A model that refuses the request once its stream began: the prompt's fault.
            code, message = ("invalid_prompt" if error.status == 400 else error.code), error.message
        else:
            log.error("response %s failed", self.events.response["id"], exc_info=error)
            code, message = "server_error", "The model failed while generating this response."
        return self.events.fail(code, message)


async def _first_event(generator: AsyncIterator[ModelEvent]) -> ModelEvent | Exception:
    """The model's first event, or the exception it failed with."""
    try:
        return await anext(generator)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
        return error

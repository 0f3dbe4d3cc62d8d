"""Running a prepared response: the backend's events in, OpenAI's events out, stored at the end.

Each response runs in a task of its own. A streamed foreground response hands its events to
the client through a `ClientStream`. A client that disconnects stops the work only where its
model says so (`on_disconnect = "stop"`): otherwise the response still completes and is
stored as if the client had stayed. A background response writes its events to the durable
event log instead, which any process can follow, and always runs to its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from threadline.backends.base import BackendError, ContextLengthExceeded, Finish, ModelEvent
from threadline.engine.client_stream import ClientStream
from threadline.engine.events import ResponseEvents, snapshot
from threadline.engine.output_bound import bounded
from threadline.engine.prepare import PreparedResponse
from threadline.errors import APIError, not_found
from threadline.spec.events import terminal_event
from threadline.store.jobs import JobStore
from threadline.store.responses import ResponseStore

log = logging.getLogger("threadline")

# How a failed response is answered when the client did not stream: every code but these
# two names a problem with the input.
FAILURE_STATUS = {"rate_limit_exceeded": 429, "server_error": 500}
FAILURE_TYPE = {"rate_limit_exceeded": "requests", "server_error": "server_error"}

# Background logs start with response.created and response.queued, written when queued.
QUEUED_EVENTS = 2
# How long a background response's events wait to be written together.
LOG_BATCH_S = 0.01

# Why a response stopped from outside failed (a cancelled one is `cancelled` instead).
STOP_MESSAGES = {
    "shutdown": "The server shut down before this response finished.",
    "disconnected": "The client disconnected before this response finished, and this model stops "
    'work nobody waits for (on_disconnect = "stop").',
    "conversation_deleted": "The conversation of this response was deleted while the response was in progress.",
}


class ResponseRun:
    def __init__(
        self,
        prepared: PreparedResponse,
        runner: Runner,
        *,
        background: bool = False,
        streamed: bool = False,
        recording: asyncio.Future | None = None,
    ) -> None:
        self.prepared = prepared
        self.runner = runner
        self.background = background
        # Stored as in progress before it ran (its id is out early), rather than only once it ends.
        self.begun = background or streamed
        self.recording = recording  # that first write, when it runs alongside the model's start
        self.events = ResponseEvents(prepared.response, sequence_number=QUEUED_EVENTS if background else 0)
        self.stop_reason: str | None = None  # a key of STOP_MESSAGES, or "cancelled", when stopped from outside
        self.error: APIError | None = None  # why the request was refused, if it was
        # The client reading the events as they come: a streamed foreground response's only.
        self._client = ClientStream(self.client_left) if streamed and not background else None
        self._opened = False  # its first events are out
        self._finishing = False  # storing the end: a stop now is seen by the store, not by cancelling
        self._unlogged: list[dict] = []  # a background response's events not yet in its log
        self._log_lock = asyncio.Lock()
        self._log_dirty = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    @property
    def response(self) -> dict:
        return self.prepared.response

    @property
    def response_id(self) -> str:
        return self.prepared.response["id"]

    @property
    def stops_without_client(self) -> bool:
        """Whether the client leaving stops this response: its model's on_disconnect is "stop"
        (background responses always go on)."""
        return not self.background and self.prepared.backend.settings.on_disconnect == "stop"

    def stream(self) -> AsyncIterator[list[dict]]:
        """The events of a streamed response as they are produced, in lists of those ready
        together (one write can carry them); raises APIError if the request fails before any."""
        return self._client.batches()

    def client_left(self) -> None:
        """The client waiting for this response went away: the response stops if its model
        says so (its stream, if any, keeps nothing more for it either way)."""
        if self.stops_without_client and self.stop_reason is None and not self.task.done():
            log.info("response %s stops: its client disconnected", self.response_id)
            self.stop("disconnected")

    async def result(self) -> dict:
        """The finished Response; a failure of the model is raised in OpenAI's envelope."""
        await asyncio.shield(self.task)
        if self.error is not None:
            raise self.error
        if self.stop_reason == "conversation_deleted" and self.response["status"] == "failed":
            # Answered as if the delete had come first.
            raise not_found("Conversation", self.prepared.response["conversation"]["id"], param="conversation")
        error = self.response.get("error")
        if self.response["status"] == "failed" and error:
            code = error["code"]
            raise APIError(FAILURE_STATUS.get(code, 400), error["message"], type=FAILURE_TYPE.get(code, "invalid_request_error"), code=code)
        return self.response

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        if not self._finishing:
            self.task.cancel()

    # -- the run ---------------------------------------------------------------------

    async def _run(self) -> None:
        flusher = asyncio.create_task(self._flush_log()) if self.background else None
        generator = self._model_events()
        try:
            await self._generate(generator)
        except APIError as error:
            self._refuse(error)
        except asyncio.CancelledError:
            await self._stopped()
        except Exception:
            # Storing failed: nothing more can be recorded, so say so loudly.
            log.exception("response %s could not be stored", self.response_id)
            self._refuse(APIError(500, "The server had an error while saving this response.", type="server_error"))
        finally:
            if flusher:
                flusher.cancel()
            await generator.aclose()
            if self._client is not None:
                self._client.put(None)

    def _model_events(self) -> AsyncIterator[ModelEvent]:
        """The model's events for this response, held to its output bound."""
        request = self.prepared.model_request
        events = self.prepared.backend.generate(request)
        return events if request.max_output_tokens is None else bounded(events, request)

    async def _generate(self, generator: AsyncIterator[ModelEvent]) -> None:
        model_event = await self._start(generator)
        if isinstance(model_event, Exception):
            await self._fail(model_event)
            return
        try:
            while not isinstance(model_event, Finish):
                self._publish(self.events.feed(model_event))
                model_event = await anext(generator)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001
            await self._fail(error)
            return
        await self._finish(self.events.finish(model_event))

    async def _start(self, generator: AsyncIterator[ModelEvent]):
        """The model's first event, or the exception it failed with.

        The model starts at once, alongside the recording of a streamed response; the first
        events go out as soon as the response is recorded, without waiting for the model."""
        first = asyncio.ensure_future(self._first_event(generator))
        try:
            if self.recording is not None:
                # Nothing about the response goes out before it is stored; shielded, as a stop
                # meanwhile still needs it.
                await asyncio.shield(self.recording)
            if self.begun:
                self._open()
            model_event = await first
        except BaseException:
            first.cancel()
            await asyncio.wait([first])  # the model's generator is left before it is closed
            raise
        if isinstance(model_event, BackendError) and model_event.status == 400 and not self.begun:
            # The model refused the request before anyone saw the response: the client's plain 400.
            param = "input" if isinstance(model_event, ContextLengthExceeded) else None
            raise APIError(400, model_event.message, param=param, code=model_event.code) from model_event
        self._open()
        return model_event

    @staticmethod
    async def _first_event(generator: AsyncIterator[ModelEvent]):
        """The model's first event, or the exception it failed with."""
        try:
            return await anext(generator)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
            return error

    def _refuse(self, error: APIError) -> None:
        self.error = error
        if self._client is not None:
            self._client.put(error)

    def _opening_events(self) -> list[dict]:
        """The events that begin the stream, unless they went out already."""
        if self._opened:
            return []
        self._opened = True
        return self.events.resume() if self.background else self.events.start()

    def _open(self) -> None:
        self._publish(self._opening_events())

    async def _fail(self, error: BaseException) -> None:
        if isinstance(error, StopAsyncIteration):
            code, message = "server_error", "The model stopped without finishing its answer."
        elif isinstance(error, BackendError):
            # A model that refuses the request once its stream began: the prompt's fault.
            code, message = ("invalid_prompt" if error.status == 400 else error.code), error.message
        else:
            log.error("response %s failed", self.response_id, exc_info=error)
            code, message = "server_error", "The model failed while generating this response."
        await self._finish(self.events.fail(code, message))

    async def _finish(self, events: list[dict]) -> None:
        """Store the response, then let the terminal event out: what a client sees is saved.

        A background response's last events go into its log in the same transaction."""
        if self.prepared.store:
            self._finishing = True
            async with self._log_lock:
                if self.background:
                    self._unlogged.extend(events)
                stored = await self._complete()
                if stored is None:
                    events = self._conversation_deleted(events)
                    stored = await self._complete()
                if stored:
                    self._unlogged.clear()
                else:
                    events = await self._ended_elsewhere(events)
        self._publish(events, logged=True)

    async def _complete(self) -> bool | None:
        """Store how the response ended (ResponseStore.complete); None, with nothing written,
        when the conversation it would be appended to is gone."""
        try:
            return await self.runner.responses.complete(
                self.prepared.project,
                self.response,
                self.prepared.input_items,
                owner=self.runner.owner,
                events=self._unlogged,
                begun=self.begun,
            )
        except APIError as error:
            if error.status != 404:
                raise
            return None

    def _conversation_deleted(self, events: list[dict]) -> list[dict]:
        """The conversation was deleted while the response ran: it ends failed, adding nothing."""
        log.info("response %s failed: its conversation was deleted", self.response_id)
        self.stop_reason = "conversation_deleted"
        error = {"code": "server_error", "message": STOP_MESSAGES["conversation_deleted"]}
        self.response.update(status="failed", completed_at=None, incomplete_details=None, error=error)
        ending = events[:-1] + [terminal_event(snapshot(self.response), events[-1]["sequence_number"])]
        if self.background:
            self._unlogged[-1] = ending[-1]
        return ending

    async def _ended_elsewhere(self, events: list[dict]) -> list[dict]:
        """The response was cancelled (or recovered) while it finished: end as it was stored.

        Called holding the log lock, so no flush can slip the abandoned ending into the log."""
        stored = await self.runner.responses.get(self.prepared.project, self.response_id)
        log.info("response %s was %s before it finished", self.response_id, stored["status"])
        if stored["status"] == "cancelled":
            stored = {**self.response, "status": "cancelled", "completed_at": None}
        ending = events[:-1] + [terminal_event(stored, events[-1]["sequence_number"])]
        if self.background and stored["status"] == "cancelled":
            self._unlogged[-1] = ending[-1]
            await self.runner.jobs.end_cancelled(stored, self.runner.owner, self._unlogged)
        self._unlogged.clear()
        self.events.response = self.prepared.response = stored
        return ending

    async def _stopped(self) -> None:
        """Stopped from outside: by a cancel, its client leaving (on_disconnect "stop"), its
        conversation's deletion, or a shutdown whose grace period ran out."""
        if self.recording is not None:
            await self.recording
        if self.stop_reason == "shutdown" and self.background and not self.response["output"]:
            if await self.runner.jobs.requeue(self.response_id, self.runner.owner, QUEUED_EVENTS):
                log.info("response %s handed back to the queue at shutdown", self.response_id)
                return
        events = self._opening_events() + self.events.close_all("incomplete")
        if self.stop_reason == "cancelled":
            events += self.events.end("cancelled")
            async with self._log_lock:
                self._unlogged.extend(events)
                await self.runner.jobs.end_cancelled(self.response, self.runner.owner, self._unlogged)
                self._unlogged.clear()
            self._publish(events, logged=True)
            return
        await self._finish(events + self.events.fail("server_error", STOP_MESSAGES[self.stop_reason]))

    # -- the event log of a background response --------------------------------------

    def _publish(self, events: list[dict], logged: bool = False) -> None:
        if self._client is not None:
            for event in events:
                self._client.put(event)
        if self.background:
            if logged:
                self.runner.notify(self.response_id)
            else:
                self._unlogged.extend(events)
                self._log_dirty.set()

    async def _flush_log(self) -> None:
        while True:
            await self._log_dirty.wait()
            # Gather the deltas of a few milliseconds into one write.
            await asyncio.sleep(LOG_BATCH_S)
            self._log_dirty.clear()
            async with self._log_lock:
                # Events keep arriving while this write waits: remove only the ones written.
                written = list(self._unlogged)
                if written:
                    await self.runner.jobs.append_events(self.response_id, written)
                    del self._unlogged[: len(written)]
            self.runner.notify(self.response_id)


class Runner:
    """This process's responses: started here, or claimed from the shared queue."""

    def __init__(self, responses: ResponseStore, jobs: JobStore, owner: str) -> None:
        self.responses = responses
        self.jobs = jobs
        self.owner = owner
        self.runs: dict[str, ResponseRun] = {}
        self._signals: dict[str, LogSignal] = {}  # responses followed in this process, while followed
        self._chores: set[asyncio.Task] = set()

    async def start(self, prepared: PreparedResponse, *, streamed: bool) -> ResponseRun:
        """Start a foreground response.

        A streamed response's id is out with its first event, so it is recorded as in
        progress before that (and a crash is noticed by its owner's lapsed lease), while the
        model starts. Nobody sees a non-streamed response's id before it ends, so it is
        written once, when it ends.
        """
        recording = None
        if prepared.store and streamed:
            recording = asyncio.ensure_future(
                self.responses.begin(prepared.project, prepared.response, prepared.input_items, owner=self.owner)
            )
        return self.track(ResponseRun(prepared, self, streamed=streamed, recording=recording))

    def track(self, run: ResponseRun) -> ResponseRun:
        self.runs[run.response_id] = run
        run.task.add_done_callback(lambda _task: self.runs.pop(run.response_id, None))
        return run

    def conversation_deleted(self, conversation_id: str) -> None:
        """Stop this process's responses in a conversation just deleted: they end failed."""
        for run in list(self.runs.values()):
            if (run.response.get("conversation") or {}).get("id") == conversation_id and run.stop_reason is None:
                run.stop("conversation_deleted")

    def keep(self, chore) -> None:
        """Run a coroutine to its end in the background, holding a reference until then."""
        task = asyncio.create_task(chore)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # -- followers of event logs ------------------------------------------------------

    def notify(self, response_id: str) -> None:
        """Wake this process's followers of the response: its log has new events."""
        signal = self._signals.get(response_id)
        if signal is not None:
            signal.set()

    def signal(self, response_id: str) -> LogSignal:
        """The response's log signal, shared by its followers in this process; each holds it
        with `with`, and it is dropped when the last one lets go."""
        signal = self._signals.get(response_id)
        if signal is None:
            signal = self._signals[response_id] = LogSignal(lambda: self._signals.pop(response_id, None))
        return signal


class LogSignal:
    """Wakes the followers of one response's event log each time events are logged."""

    def __init__(self, drop: Callable[[], None]) -> None:
        self.poll: asyncio.Task | None = None  # the followers' shared poll, for events another process logs
        self._drop = drop
        self._holders = 0
        self._next = asyncio.Event()

    def __enter__(self) -> LogSignal:
        self._holders += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._holders -= 1
        if not self._holders:
            if self.poll is not None:
                self.poll.cancel()
            self._drop()

    def mark(self) -> asyncio.Event:
        """Set the next time events are logged: taken before reading the log, so that nothing
        logged after the read goes unnoticed."""
        return self._next

    def set(self) -> None:
        self._next.set()
        self._next = asyncio.Event()

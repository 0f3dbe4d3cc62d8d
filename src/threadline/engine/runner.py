"""Running a prepared response: its lifecycle from start to the stored end.

Each response runs in a task of its own. Its turns of the model (engine/turns.py) feed one
`ResponseEvents`, whose events go to the run's sinks: a streamed foreground response's
client reads them from a `ClientStream`; a background response writes them to its durable
event log (`EventLogSink`), which any process can follow. A response is stored before its
terminal event goes out. It stops early only from outside: a cancel, a shutdown, its
conversation's deletion, or its client leaving where its model says so (`on_disconnect =
"stop"`; otherwise the response completes and is stored as if the client had stayed, and a
background response always runs to its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine

from threadline.engine.client_stream import ClientStream
from threadline.engine.event_log import EventLogSink, LogSignal
from threadline.engine.file_inputs import FileInputs
from threadline.engine.prepare import PreparedResponse
from threadline.engine.reasoning_items import reasoning_sealer
from threadline.engine.turns import TurnLoop
from threadline.errors import APIError, not_found
from threadline.ops import tracing
from threadline.ops.metrics import watch_run
from threadline.spec.stream import ResponseEvents
from threadline.store.files import FileStore
from threadline.store.jobs import JobStore, OwnedResponse
from threadline.store.responses import ResponseStore
from threadline.tools.toolbox import ToolServices

log = logging.getLogger("threadline")

# How a failed response is answered when the client did not stream: every code but these
# two names a problem with the input.
FAILURE_STATUS = {"rate_limit_exceeded": 429, "server_error": 500}
FAILURE_TYPE = {"rate_limit_exceeded": "requests", "server_error": "server_error"}

# Background logs start with response.created and response.queued, written when queued.
QUEUED_EVENTS = 2

# Why a response stopped from outside failed (a cancelled one is `cancelled` instead).
STOP_MESSAGES = {
    "shutdown": "The server shut down before this response finished.",
    "disconnected": "The client disconnected before this response finished, and this model stops "
    'work nobody waits for (on_disconnect = "stop").',
    "conversation_deleted": "The conversation of this response was deleted while the response was in progress.",
}
DELETED = "This response was deleted while it was in progress."
NOT_SAVED = "The server had an error while saving this response."


class ResponseRun:
    """One response running in this process, from its start to its stored end; its turns
    of the model are its TurnLoop's."""

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
        self.recorded_at_start = background or streamed
        self.begun = self.recorded_at_start  # stored as in progress: at its start, or before a tool ran
        self.recording = recording  # that first write, when it runs alongside the model's start
        self.events = ResponseEvents(prepared.response, sequence_number=QUEUED_EVENTS if background else 0)
        if prepared.model_request.encrypted_reasoning:
            self.events.seal_reasoning = reasoning_sealer(runner.tools.secrets)
        self.stop_reason: str | None = None  # a key of STOP_MESSAGES, or "cancelled", when stopped from outside
        self.error: APIError | None = None  # why the request was refused, if it was
        # The sinks: a streamed foreground response's client, a background response's log.
        self._client = ClientStream(self.client_left) if streamed and not background else None
        self._log = EventLogSink(self.response_id, runner.jobs, runner.notify) if background else None
        self._turns = TurnLoop(
            prepared.backend,
            prepared.model_request,
            self.events,
            self._publish,
            self._open,
            prepared.tools,
            runner.tools,
            self._checkpoint,
            self._claim_approval,
            prepared.project,
        )
        self._started = False  # its task took its first step: a stop now cancels it
        self._opened = False  # its first events are out
        self._finishing = False  # storing the end: a stop now is seen by the store, not by cancelling
        self.task = asyncio.create_task(tracing.response_span(self, self._run()))

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
            raise not_found("Conversation", self.response["conversation"]["id"], param="conversation")
        error = self.response.get("error")
        if self.response["status"] == "failed" and error:
            code = error["code"]
            raise APIError(FAILURE_STATUS.get(code, 400), error["message"], type=FAILURE_TYPE.get(code, "invalid_request_error"), code=code)
        return self.response

    def stop(self, reason: str) -> None:
        """Stop the response from outside, for `reason`; only the first stop counts."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        # A task cancelled before its first step never runs: it sees stop_reason when it starts.
        if self._started and not self._finishing:
            self.task.cancel()

    # -- the run ---------------------------------------------------------------------

    async def _run(self) -> None:
        self._started = True
        if self._log is not None:
            self._log.open()
        try:
            try:
                if self.stop_reason is not None:
                    raise asyncio.CancelledError  # stopped before it started
                if self.background and not await self._read_files():
                    return
                await self._finish(await self._turns.run(self.recording, self.recorded_at_start))
            except asyncio.CancelledError:
                self._finishing = True  # the stop is being stored: no second cancel cuts it
                await self._stopped()
        except Exception as error:
            if not isinstance(error, APIError) or self._opened:
                log.exception("response %s failed in the server", self.response_id)
            if self._opened:
                # Its stream began: it ends with a terminal event, never a cut.
                await self._finish(self.events.fail("server_error", NOT_SAVED))
            else:
                # Nobody saw the response: the request is refused, plainly.
                self._refuse(error if isinstance(error, APIError) else APIError(500, NOT_SAVED, type="server_error"))
        finally:
            if self._log is not None:
                await self._log.close()
            if self._client is not None:
                self._client.put(None)

    async def _read_files(self) -> bool:
        """Read the files a background response's input names by id, as it starts: its stored
        job keeps the ids, not the files (engine/prepare.py), which were checked when it was
        created. False if one can no longer be read as it was: the response ends failed."""
        if self.runner.files is None:
            return True
        request = self.prepared.model_request
        inputs = FileInputs.for_backend(self.runner.files, self.prepared.project, self.prepared.backend, max_bytes=self.runner.max_input_bytes)
        try:
            request.input = await inputs.resolve(request.input, param=None)
        except APIError as error:
            await self._finish(self._opening_events() + self.events.fail("invalid_prompt", error.message))
            return False
        return True

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

    def _publish(self, events: list[dict], *, written: bool = False) -> None:
        """Hand events to the sinks; `written` ones are in the log already, with the response's end."""
        if self._client is not None:
            for event in events:
                self._client.put(event)
        if self._log is not None:
            if written:
                self._log.written()
            else:
                self._log.put(events)

    def _held_log(self) -> contextlib.AbstractAsyncContextManager[list[dict]]:
        """The log's unwritten events, for the run to write with the response's end (a
        foreground response has no log: none)."""
        return self._log.held() if self._log is not None else contextlib.nullcontext([])

    async def _checkpoint(self) -> bool:
        """Store the response as it stands before a server-side tool runs, so that a crash
        from here on leaves it failed with the call unfinished, never run a second time.
        A response not yet stored is stored now, in progress under this process. False if
        it is no longer in progress here (cancelled or recovered meanwhile): nothing runs."""
        if not self.prepared.store:
            return True
        if self.begun:
            return await self.runner.responses.checkpoint(self.response, self.runner.owner)
        await self.runner.responses.begin(self.prepared.project, self.response, self.prepared.input_items, owner=self.runner.owner)
        self.begun = True
        return True

    async def _claim_approval(self, approval_request_id: str) -> bool:
        return await self.runner.responses.claim_approval(self.prepared.project, approval_request_id, self.response_id)

    # -- the end ---------------------------------------------------------------------

    async def _finish(self, ending: list[dict], store=None) -> None:
        """Store the response (with `store`, else `_store_end`), then let the terminal event
        out: what a client sees is saved. If storing fails, the response ends failed.

        A background response's last events go into its log in the same transaction."""
        if self.prepared.store:
            self._finishing = True
            try:
                async with self._held_log() as unwritten:
                    ending = await (store or self._store_end)(unwritten, ending)
            except Exception:
                log.exception("response %s could not be stored", self.response_id)
                ending = ending[:-1] + [await self._not_stored()]
        self._publish(ending, written=True)

    async def _not_stored(self) -> dict:
        """Storing the end failed: the terminal event that says so. A response recorded as
        running is ended by the owner-conditional update, so that nobody waits for it."""
        cancelled = self.stop_reason == "cancelled"
        terminal = self.events.ended_as(self.response) if cancelled else self.events.fail_instead("server_error", NOT_SAVED)
        self.prepared.response = self.events.response
        if self.begun:
            owned = OwnedResponse(self.response_id, self.runner.owner, "cancelled" if cancelled else "in_progress", self.response)
            try:
                await self.runner.jobs.end(owned, self.response)
            except Exception:
                log.exception("response %s could not be ended; its owner's lapsed lease will", self.response_id)
        return terminal

    async def _store_end(self, unwritten: list[dict], ending: list[dict]) -> list[dict]:
        """Store how the response ended; the events that end it, as they stand once stored."""
        stored = await self._complete(unwritten + ending if self.background else [])
        if stored is None:
            ending = ending[:-1] + [self._conversation_deleted()]
            stored = await self._complete(unwritten + ending if self.background else [])
        if not stored:
            ending = ending[:-1] + [await self._ended_elsewhere(unwritten, ending)]
        return ending

    async def _complete(self, events: list[dict]) -> bool | None:
        """Store how the response ended, with the last `events` of its log
        (ResponseStore.complete); None, with nothing written, when the conversation it would
        be appended to is gone."""
        try:
            return await self.runner.responses.complete(
                self.prepared.project,
                self.response,
                self.prepared.input_items,
                owner=self.runner.owner,
                events=events,
                begun=self.begun,
            )
        except APIError as error:
            if error.status != 404:
                raise
            return None

    def _conversation_deleted(self) -> dict:
        """The conversation was deleted while the response ran: it ends failed, adding
        nothing; the terminal event that says so."""
        log.info("response %s failed: its conversation was deleted", self.response_id)
        self.stop_reason = "conversation_deleted"
        return self.events.fail_instead("server_error", STOP_MESSAGES["conversation_deleted"])

    async def _ended_elsewhere(self, unwritten: list[dict], ending: list[dict]) -> dict:
        """The response was cancelled (or recovered) while it finished: it ends as it was
        stored; the terminal event that says so.

        Called holding the log, so no batch can slip the abandoned ending into it."""
        try:
            stored = await self.runner.responses.get(self.prepared.project, self.response_id)
        except APIError as error:
            if error.status != 404:
                raise
            log.info("response %s was deleted before it finished", self.response_id)
            terminal = self.events.fail_instead("server_error", DELETED)
            self.prepared.response = self.events.response
            return terminal
        log.info("response %s was %s before it finished", self.response_id, stored["status"])
        terminal = self.events.ended_as(stored)
        self.prepared.response = self.events.response
        if self.background and self.response["status"] == "cancelled":
            await self.runner.jobs.end_cancelled(self.response, self.runner.owner, unwritten + ending[:-1] + [terminal])
        return terminal

    async def _stopped(self) -> None:
        """Stopped from outside: by a cancel, its client leaving (on_disconnect "stop"), its
        conversation's deletion, or a shutdown whose grace period ran out."""
        if self.recording is not None:
            await self.recording
        if self.stop_reason == "shutdown" and self.background and not self.response["output"] and await self._requeue():
            return
        events = self._opening_events() + self.events.close_all("incomplete")
        if self.stop_reason == "cancelled":
            await self._finish(events + self.events.end("cancelled"), self._store_cancelled)
            return
        await self._finish(events + self.events.fail("server_error", STOP_MESSAGES[self.stop_reason]))

    async def _store_cancelled(self, unwritten: list[dict], ending: list[dict]) -> list[dict]:
        await self.runner.jobs.end_cancelled(self.response, self.runner.owner, unwritten + ending)
        return ending

    async def _requeue(self) -> bool:
        """Hand a background response that produced nothing back to the queue; False if it
        cannot be (it then fails, as any other stopped at shutdown)."""
        try:
            requeued = await self.runner.jobs.requeue(self.response_id, self.runner.owner, QUEUED_EVENTS)
        except Exception:
            log.exception("response %s could not be handed back to the queue", self.response_id)
            return False
        if requeued:
            log.info("response %s handed back to the queue at shutdown", self.response_id)
        return requeued


class Runner:
    """This process's responses: started here, or claimed from the shared queue."""

    def __init__(
        self,
        responses: ResponseStore,
        jobs: JobStore,
        owner: str,
        tools: ToolServices | None = None,
        files: FileStore | None = None,
        max_input_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.responses = responses
        self.jobs = jobs
        self.owner = owner
        self.tools = tools or ToolServices.unconfigured()
        self.files = files  # background responses' files named by id are read from here as they run
        self.max_input_bytes = max_input_bytes  # what those files may add to one response's input
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
        watch_run(run)
        run.task.add_done_callback(lambda _task: self.runs.pop(run.response_id, None))
        return run

    def conversation_deleted(self, conversation_id: str) -> None:
        """Stop this process's responses in a conversation just deleted: they end failed."""
        for run in list(self.runs.values()):
            if (run.response.get("conversation") or {}).get("id") == conversation_id and run.stop_reason is None:
                run.stop("conversation_deleted")

    def run_detached(self, chore: Coroutine) -> None:
        """Run a coroutine to its end whatever happens to its caller's request, holding a
        reference until then; a failure is logged."""
        task = asyncio.create_task(chore)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task) -> None:
        self._chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background chore failed", exc_info=task.exception())

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

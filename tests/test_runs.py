"""A run's lifecycle inside one process, where a stop or a database failure can be made to
come at the moment that matters: before the run's task took a step, twice over, or while the
run stores its end. Each run must end: its stream with exactly one terminal event, its
stored response no longer in progress, nothing raised into its caller but its answer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.helpers import script
from threadline.backends.registry import Models
from threadline.config import LimitsSettings, Settings
from threadline.engine.event_log import EventLogSink
from threadline.engine.prepare import Preparer
from threadline.engine.runner import ResponseRun, Runner
from threadline.jobs.follow import follow
from threadline.spec.events import TERMINAL_TYPES
from threadline.spec.request import CreateResponseBody
from threadline.spec.response import with_status
from threadline.spec.stream import ResponseEvents
from threadline.store.conversations import ConversationStore
from threadline.store.database import Database
from threadline.store.jobs import JobStore
from threadline.store.migrate import migrate
from threadline.store.responses import ResponseStore

SLOW = {"text": "one two three four", "chunks": 4, "chunk_delay": 0.05}


class FlakyJobs(JobStore):
    """A JobStore whose next `failures` calls of the named methods raise, as a database that
    went away for a moment."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.failing: dict[str, int] = {}

    def fail(self, method: str, times: int = 1) -> None:
        self.failing[method] = times

    def _maybe_fail(self, method: str) -> None:
        if self.failing.get(method):
            self.failing[method] -= 1
            raise ConnectionError(f"{method}: the database went away")

    async def append_events(self, response_id, events):
        self._maybe_fail("append_events")
        return await super().append_events(response_id, events)

    async def events_after(self, response_id, after, limit=500):
        self._maybe_fail("events_after")
        return await super().events_after(response_id, after, limit)


class FailingEnd(ResponseStore):
    """A ResponseStore that cannot store any response's end."""

    async def complete(self, *args, **kwargs):
        raise ConnectionError("complete: the database went away")


def run_scenario(database_url: str, scenario, responses_class=ResponseStore) -> None:
    async def main() -> None:
        database = Database(database_url)
        await migrate(database)
        models = Models(Settings(models=[{"id": "scripted", "provider": "scripted"}]))
        responses = responses_class(database)
        jobs = FlakyJobs(database)
        runner = Runner(responses, jobs, owner="proc_here")
        await jobs.heartbeat("proc_here", 60)
        preparer = Preparer(database, models, responses, ConversationStore(database), LimitsSettings())

        async def prepare(**body):
            return await preparer.prepare(CreateResponseBody(model="scripted", input=script(SLOW), **body), "p")

        try:
            await asyncio.wait_for(scenario(runner, prepare), 30)
        finally:
            await database.dispose()

    asyncio.run(main())


async def stream_of(run: ResponseRun) -> list[dict]:
    return [event async for batch in run.stream() for event in batch]


def assert_one_terminal(events: list[dict], last: str) -> None:
    assert [event["type"] for event in events if event["type"] in TERMINAL_TYPES] == [last]
    assert events[-1]["type"] == last
    assert [event["sequence_number"] for event in events] == list(range(events[0]["sequence_number"], events[-1]["sequence_number"] + 1))


def test_a_streamed_run_stopped_before_its_task_started_ends(fresh_database_url):
    async def scenario(runner, prepare):
        conversation = await ConversationStore(runner.responses.database).create("p", None, [])
        run = await runner.start(await prepare(stream=True, conversation=conversation["id"]), streamed=True)
        runner.conversation_deleted(conversation["id"])  # before the run's task took a step
        events = await stream_of(run)
        assert_one_terminal(events, "response.failed")
        assert "was deleted" in events[-1]["response"]["error"]["message"]
        assert (await runner.responses.get("p", run.response_id))["status"] == "failed"
        with pytest.raises(Exception) as raised:  # answered as if the delete came first, not a CancelledError
            await run.result()
        assert getattr(raised.value, "status", None) == 404

    run_scenario(fresh_database_url, scenario)


def test_a_shutdown_during_a_cancel_does_not_cut_it(fresh_database_url):
    async def scenario(runner, prepare):
        prepared = await prepare(background=True)
        queued = ResponseEvents(with_status(prepared.response, "queued")).queued()  # as a worker claimed it
        await runner.responses.begin("p", prepared.response, prepared.input_items, owner="proc_here", events=queued)
        run = runner.track(ResponseRun(prepared, runner, background=True))
        await asyncio.sleep(0.1)
        storing = asyncio.Event()
        end_cancelled = runner.jobs.end_cancelled

        async def slow_end_cancelled(*args):
            storing.set()
            await asyncio.sleep(0.2)
            await end_cancelled(*args)

        runner.jobs.end_cancelled = slow_end_cancelled
        assert await runner.jobs.cancel(with_status(prepared.response, "cancelled"), from_status="in_progress")
        run.stop("cancelled")
        await storing.wait()
        run.stop("shutdown")  # the server shuts down while the cancel is stored
        await asyncio.wait([run.task])
        assert not run.task.cancelled()
        events = [event async for event in follow(runner, "p", prepared.response, -1, 0.05)]
        assert_one_terminal(events, "response.failed")  # what OpenAI streams for a cancel
        assert events[-1]["response"]["status"] == "cancelled"
        assert await runner.jobs.log_complete("p", run.response_id)

    run_scenario(fresh_database_url, scenario)


def test_a_run_whose_end_cannot_be_stored_ends_failed(fresh_database_url, caplog):
    async def scenario(runner, prepare):
        run = await runner.start(await prepare(stream=True), streamed=True)
        events = await stream_of(run)
        assert_one_terminal(events, "response.failed")
        assert events[-1]["response"]["error"]["code"] == "server_error"
        # Not left in progress, owned by this live process: nobody waits for it forever.
        stored = await runner.responses.get("p", run.response_id)
        assert stored["status"] == "failed"
        assert await runner.jobs.log_complete("p", run.response_id)

    with caplog.at_level(logging.ERROR, logger="threadline"):
        run_scenario(fresh_database_url, scenario, FailingEnd)
    assert "could not be stored" in caplog.text


def test_a_stop_that_cannot_be_stored_ends_the_stream(fresh_database_url, caplog):
    async def scenario(runner, prepare):
        run = await runner.start(await prepare(stream=True), streamed=True)
        batches = run.stream()
        events = await anext(batches)
        run.stop("disconnected")
        events += [event async for batch in batches for event in batch]
        assert_one_terminal(events, "response.failed")
        assert (await runner.responses.get("p", run.response_id))["status"] == "failed"

    with caplog.at_level(logging.ERROR, logger="threadline"):
        run_scenario(fresh_database_url, scenario, FailingEnd)
    assert "could not be stored" in caplog.text


def test_the_event_log_and_its_followers_outlast_a_database_error(fresh_database_url, caplog):
    async def scenario(runner, prepare):
        prepared = await prepare(background=True)
        queued = ResponseEvents(with_status(prepared.response, "queued")).queued()  # as a worker claimed it
        await runner.responses.begin("p", prepared.response, prepared.input_items, owner="proc_here", events=queued)
        runner.jobs.fail("append_events")  # the writer's first batch
        runner.jobs.fail("events_after", 2)  # the follower's first read, then its poll's or its own
        follower = follow(runner, "p", prepared.response, -1, 0.05)
        run = runner.track(ResponseRun(prepared, runner, background=True))
        events = [event async for event in follower]
        await run.task
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"
        assert "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta") == SLOW["text"]

    with caplog.at_level(logging.WARNING, logger="threadline"):
        run_scenario(fresh_database_url, scenario)
    assert "could not be written" in caplog.text and "reading the event log" in caplog.text


def test_closing_the_event_log_waits_for_a_write_under_way(fresh_database_url):
    async def scenario(runner, prepare):
        prepared = await prepare(background=True)
        await runner.responses.begin("p", prepared.response, prepared.input_items, owner="proc_here")
        writing = asyncio.Event()
        append = runner.jobs.append_events

        async def slow_append(response_id, events):
            writing.set()
            await asyncio.sleep(0.2)
            await append(response_id, events)

        runner.jobs.append_events = slow_append
        sink = EventLogSink(prepared.response["id"], runner.jobs, runner.notify)
        sink.open()
        sink.put([{"type": "response.in_progress", "sequence_number": 0, "response": prepared.response}])
        await writing.wait()
        await sink.close()
        assert [event["sequence_number"] for event in await runner.jobs.events_after(prepared.response["id"], -1)] == [0]

    run_scenario(fresh_database_url, scenario)

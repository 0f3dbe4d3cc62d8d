"""Following a background response's event log, live, from any process.

A follower reads the log, and when it has read all there is, sleeps until more is logged.
Events written by this process wake its followers at once. Events written by another process
are seen by one poll per response in this process (`workers.poll_s`, 0.25 s by default),
shared by all its followers here, which wakes them when the log has grown: a hundred clients
waiting on a queued response cost one query per interval, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from threadline.engine.event_log import LogSignal
from threadline.engine.runner import Runner
from threadline.errors import APIError
from threadline.spec.events import TERMINAL_TYPES, terminal_event
from threadline.spec.response import with_status

log = logging.getLogger("threadline")

DELETED = "This response was deleted while it was in progress."


async def follow(runner: Runner, project: str, response: dict, after: int, poll_s: float) -> AsyncIterator[dict]:
    """Every logged event of `response` (as the caller knows it) after sequence number
    `after`, once each and in order, until the end. A response deleted meanwhile ends with
    response.failed; a database error is logged, and the log read again a poll later."""
    response_id = response["id"]
    with runner.signal(response_id) as signal:
        while True:
            logged = signal.mark()
            wait_s = None  # until more is logged
            try:
                # Shielded: a client that leaves mid-read must not leave a database connection half closed.
                events = await asyncio.shield(runner.jobs.events_after(response_id, after))
                progressed = False
                for event in events:
                    # The log is written in order, but a reader never skips a gap: it waits and re-reads.
                    if event["sequence_number"] != after + 1:
                        break
                    yield event
                    progressed = True
                    after = event["sequence_number"]
                    response = event.get("response", response)
                    if event["type"] in TERMINAL_TYPES:
                        return
                if progressed:
                    continue
                if events:
                    wait_s = poll_s  # after a gap, the missing event is read again on its own time
                ended = await asyncio.shield(runner.jobs.log_complete(project, response_id))
                if ended and not await asyncio.shield(runner.jobs.events_after(response_id, after, limit=1)):
                    return  # the log has ended, and `after` was at or past its end
            except APIError as error:
                if error.status != 404:
                    raise
                # Deleted with its log: the stream still ends with one terminal event.
                deleted = with_status(response, "failed", {"code": "server_error", "message": DELETED})
                yield terminal_event(deleted, after + 1)
                return
            except Exception:
                log.exception("reading the event log of response %s failed; reading it again", response_id)
                wait_s = poll_s
            if signal.poll is None or signal.poll.done():
                signal.poll = asyncio.create_task(_poll(runner, response_id, after, poll_s, signal))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await logged.wait()


async def _poll(runner: Runner, response_id: str, after: int, poll_s: float, signal: LogSignal) -> None:
    """Set `signal` whenever the log has grown past `after`, read by another process's writes,
    until it ends; while the response runs in this process, its run sets the signal instead.
    A failed read is logged and tried again."""
    while True:
        await asyncio.sleep(poll_s)
        if response_id in runner.runs:
            continue
        try:
            # Shielded: the poll is cancelled when its last follower leaves, perhaps mid-read.
            events = await asyncio.shield(runner.jobs.events_after(response_id, after))
        except Exception:
            log.exception("polling the event log of response %s failed", response_id)
            continue
        if events:
            after = events[-1]["sequence_number"]
            signal.set()
            if events[-1]["type"] in TERMINAL_TYPES:
                return

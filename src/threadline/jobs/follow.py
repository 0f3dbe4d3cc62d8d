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
from collections.abc import AsyncIterator

from threadline.engine.event_log import LogSignal
from threadline.engine.runner import Runner
from threadline.spec.events import TERMINAL_TYPES


async def follow(runner: Runner, project: str, response_id: str, after: int, poll_s: float) -> AsyncIterator[dict]:
    """Every logged event after sequence number `after`, once each and in order, until the end."""
    with runner.signal(response_id) as signal:
        while True:
            logged = signal.mark()
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
                if event["type"] in TERMINAL_TYPES:
                    return
            if progressed:
                continue
            ended = await asyncio.shield(runner.jobs.log_complete(project, response_id))
            if ended and not await asyncio.shield(runner.jobs.events_after(response_id, after, limit=1)):
                return  # the log has ended, and `after` was at or past its end
            if signal.poll is None:
                signal.poll = asyncio.create_task(_poll(runner, response_id, after, poll_s, signal))
            # After a gap, the missing event is read again on its own time, not only when more follows it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s if events else None):
                    await logged.wait()


async def _poll(runner: Runner, response_id: str, after: int, poll_s: float, signal: LogSignal) -> None:
    """Set `signal` whenever the log has grown past `after`, read by another process's writes,
    until it ends; while the response runs in this process, its run sets the signal instead."""
    while True:
        await asyncio.sleep(poll_s)
        if response_id in runner.runs:
            continue
        # Shielded: the poll is cancelled when its last follower leaves, perhaps mid-read.
        events = await asyncio.shield(runner.jobs.events_after(response_id, after))
        if events:
            after = events[-1]["sequence_number"]
            signal.set()
            if events[-1]["type"] in TERMINAL_TYPES:
                return

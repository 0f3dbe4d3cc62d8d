"""Following a background response's event log, live, from any process.

Events written by this process wake followers at once; events written by another process
are seen within one poll interval (`workers.poll_s`, 0.25 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from threadline.engine.events import TERMINAL_EVENTS
from threadline.engine.runner import Runner

TERMINAL_TYPES = set(TERMINAL_EVENTS.values())
# A safety net only: a response running in this process wakes its followers itself.
LOCAL_WAIT_S = 1.0


async def follow(runner: Runner, project: str, response_id: str, after: int, poll_s: float) -> AsyncIterator[dict]:
    """Every logged event after sequence number `after`, once each and in order, until the end."""
    while True:
        signal = runner.signal(response_id)
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
        # A response running here signals each write; one running elsewhere is polled for.
        wait_s = LOCAL_WAIT_S if response_id in runner.runs else poll_s
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout=wait_s)

"""The durable event log of a background response, which any process can follow.

`EventLogSink` writes a running response's events in batches of a few milliseconds; the last
ones go in with the response's end, in one transaction, which the run writes itself. Each
write wakes this process's followers of the log through its `LogSignal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from threadline.store.jobs import JobStore

log = logging.getLogger("threadline")

# How long a background response's events wait to be written together.
LOG_BATCH_S = 0.01
# How long a write that failed waits before it is tried again.
LOG_RETRY_S = 0.5


class EventLogSink:
    def __init__(self, response_id: str, jobs: JobStore, notify: Callable[[str], None]) -> None:
        self.response_id = response_id
        self._jobs = jobs
        self._notify = notify  # wakes the log's followers in this process
        self._unwritten: list[dict] = []
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._writer: asyncio.Task | None = None

    def open(self) -> None:
        self._writer = asyncio.create_task(self._write_batches())

    async def close(self) -> None:
        """Stop the batch writer, between writes: a write under way is never cut."""
        async with self._lock:
            self._writer.cancel()

    def put(self, events: list[dict]) -> None:
        """Events to write with the next batch."""
        self._unwritten.extend(events)
        self._dirty.set()

    def written(self) -> None:
        """Events were written with the response's end: wake the followers."""
        self._notify(self.response_id)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[list[dict]]:
        """The events not yet written, kept from the batch writer while the caller writes them
        itself (with the response's end); they count as written once the block ends without error."""
        async with self._lock:
            yield self._unwritten
            self._unwritten.clear()

    async def _write_batches(self) -> None:
        while True:
            await self._dirty.wait()
            # Gather the deltas of a few milliseconds into one write.
            await asyncio.sleep(LOG_BATCH_S)
            self._dirty.clear()
            async with self._lock:
                # Events keep arriving while this write waits: remove only the ones written.
                written = list(self._unwritten)
                try:
                    if written:
                        await self._jobs.append_events(self.response_id, written)
                        del self._unwritten[: len(written)]
                    failed = False
                except Exception:
                    if not await self._still_stored():
                        return  # deleted with its log: nothing more is written for it
                    # Kept, in order, for the next try (or the response's end, which writes them).
                    log.warning("the event log of response %s could not be written; trying again", self.response_id, exc_info=True)
                    failed = True
            if failed:
                self._dirty.set()
                await asyncio.sleep(LOG_RETRY_S)
                continue
            self._notify(self.response_id)


    async def _still_stored(self) -> bool:
        try:
            return await self._jobs.exists(self.response_id)
        except Exception:
            return True  # unknown: the database is failing, so write again later


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

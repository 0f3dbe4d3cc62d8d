"""The durable event log of a background response, which any process can follow.

`EventLogSink` writes a running response's events in batches of a few milliseconds; the last
ones go in with the response's end, in one transaction, which the run writes itself. Each
write wakes this process's followers of the log through its `LogSignal`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from threadline.store.jobs import JobStore

# How long a background response's events wait to be written together.
LOG_BATCH_S = 0.01


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

    def close(self) -> None:
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
                if written:
                    await self._jobs.append_events(self.response_id, written)
                    del self._unwritten[: len(written)]
            self._notify(self.response_id)


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
